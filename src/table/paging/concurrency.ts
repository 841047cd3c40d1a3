/**
 * How many pages an export keeps in flight.
 *
 * `--concurrency n` (or `concurrency` in the config) pins it. Otherwise it starts at 3 and adapts
 * to the server, one round at a time (a round: as many pages as are in flight, at least 8):
 * - it grows while the round trips say that fewer than two pages wait at the server (TCP Vegas'
 *   estimate: in flight x (1 - fastest round trip / this round's)) and the last growth made the
 *   export at least 5% faster: it doubles while under one page waits (a slow start, so that a
 *   distant server gets its pages in flight within a few rounds), else adds one; a growth that did
 *   not pay is taken back, and the next try waits eight rounds;
 * - on trouble (a page that needed a retry: a reset, a timeout, an HTTP 5xx; or a wait for a
 *   licence, HTTP 402) it halves at once and holds for three rounds; it also gives pages back when
 *   more than four wait at the server;
 * - the ceiling is MAX_PAGES_IN_FLIGHT, and fewer when pages are large: at most INFLIGHT_BYTES of
 *   page bodies in flight (the largest page seen so far counts).
 * Every page still goes through the one shared session, and pages are written strictly in order.
 */

export const DEFAULT_PAGES_IN_FLIGHT = 3;
export const MAX_PAGES_IN_FLIGHT = 8;
export const INFLIGHT_BYTES = 32 * 1024 * 1024;
/** How many pages get-table and sync keep in flight, in words: `pinned` by the config, or not. */
export function describePagesInFlight(pinned: number | undefined): string {
  if (pinned !== undefined) return `${pinned} pages in flight (pinned by concurrency in the config)`;
  return `adaptive: get-table and sync from ${DEFAULT_PAGES_IN_FLIGHT} up to ${MAX_PAGES_IN_FLIGHT} pages in flight`;
}

/** Pages per round at least, so that a round's rate is not a few pages' noise. */
const MIN_ROUND = 8;

export class PagesInFlight {
  limit: number;
  private minRtt = Infinity;
  private largest = 0;
  private round: { pages: number; rttSum: number; started: number };
  private lastRate = 0;
  private grew = false;
  /** The limit before the last growth (what a growth that did not pay goes back to). */
  private beforeGrowth = 0;
  private hold = 0;

  constructor(
    start: number,
    /** False: pinned at `start`. */
    readonly adaptive: boolean,
    private readonly log: (message: string) => void = () => undefined,
    now = performance.now(),
  ) {
    this.limit = Math.max(1, start);
    this.round = { pages: 0, rttSum: 0, started: now };
  }

  /** A page came back after `rttMs` with `bytes` of body; `trouble`: it needed a retry or a licence wait. */
  observe(rttMs: number, bytes: number, trouble: boolean, now = performance.now()): void {
    if (!this.adaptive) return;
    this.largest = Math.max(this.largest, bytes);
    this.minRtt = Math.min(this.minRtt, rttMs);
    const round = this.round;
    round.pages += 1;
    round.rttSum += rttMs;
    if (!trouble && round.pages < Math.max(this.limit, MIN_ROUND)) return;
    const rate = round.pages / Math.max(1, now - round.started);
    const rtt = round.rttSum / round.pages;
    const before = this.limit;
    const ceiling = Math.max(1, Math.min(MAX_PAGES_IN_FLIGHT, Math.floor(INFLIGHT_BYTES / Math.max(1, this.largest))));
    let why = '';
    if (trouble) {
      this.limit = Math.max(1, Math.floor(this.limit / 2));
      this.hold = 3;
      this.grew = false;
      why = 'a retry or a licence wait';
    } else if (this.hold > 0) {
      this.hold -= 1;
    } else if (this.grew && rate < this.lastRate * 1.05) {
      this.limit = this.beforeGrowth;
      this.hold = 8;
      this.grew = false;
      why = 'the last growth did not make it faster';
    } else {
      const queued = this.limit * (1 - this.minRtt / rtt);
      this.grew = false;
      if (queued < 2 && this.limit < ceiling) {
        this.beforeGrowth = this.limit;
        this.limit = queued < 1 ? Math.min(ceiling, this.limit * 2) : this.limit + 1;
        this.grew = true;
        why = `${queued < 1 ? 'under one page waits' : 'under two pages wait'} at the server (round trip ${Math.round(rtt)} ms, fastest ${Math.round(this.minRtt)} ms)`;
      } else if (queued > 4 && this.limit > DEFAULT_PAGES_IN_FLIGHT) {
        this.limit -= 1;
        why = `about ${Math.round(queued)} pages wait at the server`;
      }
    }
    if (this.limit > ceiling) {
      this.limit = ceiling;
      why ||= `pages of ${Math.round(this.largest / 1024)} KB: at most ${INFLIGHT_BYTES / 1024 / 1024} MB in flight`;
    }
    if (this.limit !== before) this.log(`pages in flight ${before} → ${this.limit}: ${why}`);
    this.lastRate = rate;
    this.round = { pages: 0, rttSum: 0, started: now };
  }
}
