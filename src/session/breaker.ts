/**
 * A circuit breaker per environment, kept in the session store every run already shares (the file
 * store on one host, Redis for a fleet), so that it works for many short runs on many hosts, not
 * only inside one process as opossum or cockatiel do.
 *
 * - **Closed**: runs go to the server. A run whose request finally fails the way a down server
 *   fails (no answer, 502/503/504 or a transient 500 after the transport's retries; Exchange.
 *   unavailable) counts once, at that moment. `failures` such runs within `windowMs` open it.
 *   A 402 (licences in use), any other 4xx, a refusal or bad data is an answer: the server is up.
 * - **Open**: every run fails at once with exit 69 and one line (since when, how many failures,
 *   when the next probe is due) without sending anything.
 * - **Half-open** (the cool-down is over): exactly one run takes the probe slot, atomically (a
 *   lease written under the file lock, or SET NX PX in Redis), and sends its first request once,
 *   without retries. An answer closes the breaker at once; a failure opens it again for a cool-down
 *   twice as long (up to maxCoolDownMs). Every other run keeps failing fast meanwhile.
 * - A run that ends with answers and no unavailable failure, after failures were counted (one
 *   that started before the breaker opened and succeeds in the middle of an outage), closes it too
 *   at its end, unless a failure newer than its last answer was counted since. A run counts as
 *   unavailable once, at its first such failure, whatever answers it got besides.
 *
 * The state holds no cookie, password or server text: the environment, the base URL, times, counts
 * and what the last failure was (`no answer (ECONNREFUSED)`, `HTTP 503`). A damaged state never stops
 * a run: it is treated as closed, with one warning; so is a store that cannot be read or written.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BreakerSettings } from '../config/settings.js';
import { BreakerOpenError, oneLine } from '../errors/index.js';
import { ensurePrivateDir, quarantine, withLock, writeFileAtomic } from '../fs/index.js';
import type { Logger } from '../log/index.js';
import type { Exchange, ExchangeObserver } from '../transport/index.js';

/** Which breaker: one per environment and the server it points at. */
export interface BreakerKey {
  env: string;
  baseUrl: string;
}

/** What is stored per breaker (times in ms since the epoch). */
export interface BreakerRecord {
  env: string;
  baseUrl: string;
  state: 'closed' | 'open';
  /** When the counted unavailable runs failed, oldest first (closed: those within the window). */
  failures: number[];
  openedAt?: number;
  /** When the cool-down ends and one run may probe. */
  nextProbeAt?: number;
  /** The cool-down now in force (it grows after a failed probe). */
  coolDownMs?: number;
  lastFailureAt?: number;
  /** What the last failure was, in a few words of our own (never the server's text). */
  lastError?: string;
  lastSuccessAt?: number;
  /** File store only: the probe slot, held by the run with this token until `until`. */
  probe?: { token: string; until: number };
}

/** Where breakers live: implemented by the file store (below) and the Redis store (redis.ts). */
export interface BreakerStore {
  /** Where, for messages. */
  readonly location: string;
  /** The stored record; damage is warned about once and reads as none. */
  read(key: BreakerKey): Promise<BreakerRecord | undefined>;
  list(): Promise<BreakerRecord[]>;
  /** Change one record atomically; `change` returns the new record or undefined to leave it. Returns what is stored after. */
  update(key: BreakerKey, change: (stored: BreakerRecord | undefined) => BreakerRecord | undefined): Promise<BreakerRecord | undefined>;
  /** Take the probe slot for `leaseMs` if the breaker is open, due and nobody holds the slot. */
  takeProbe(key: BreakerKey, token: string, leaseMs: number): Promise<boolean>;
  releaseProbe(key: BreakerKey, token: string): Promise<void>;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

/** What `session status`, `doctor` and the metrics show of a breaker. */
export interface BreakerView {
  env: string;
  baseUrl: string;
  enabled: boolean;
  state: BreakerState;
  /** Failures counted: within the window while closed, since it opened while open. */
  failures: number;
  threshold: number;
  windowMs: number;
  openedAt?: string;
  nextProbeAt?: string;
  coolDownMs?: number;
  lastFailureAt?: string;
  lastError?: string;
}

/** What a run tells the metrics file about its environment's breaker. */
export interface BreakerReport {
  /** 0 closed, 1 open, 2 half-open. */
  state: number;
  failures: number;
  /** When it opened (Unix seconds); 0 when closed. */
  openedAtSeconds: number;
  /** 1 when this run was refused without touching the server. */
  fastFailures: number;
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
const MAX_KEPT_FAILURES = 1000;

export function isBreakerRecord(value: unknown): value is BreakerRecord {
  if (!value || typeof value !== 'object') return false;
  const r = value as Record<string, unknown>;
  const optionalNumber = (k: string) => r[k] === undefined || (typeof r[k] === 'number' && Number.isFinite(r[k]));
  return (
    typeof r.env === 'string' &&
    typeof r.baseUrl === 'string' &&
    (r.state === 'closed' || r.state === 'open') &&
    Array.isArray(r.failures) &&
    r.failures.every((t) => typeof t === 'number' && Number.isFinite(t)) &&
    ['openedAt', 'nextProbeAt', 'coolDownMs', 'lastFailureAt', 'lastSuccessAt'].every(optionalNumber) &&
    (r.state === 'closed' || (typeof r.openedAt === 'number' && typeof r.nextProbeAt === 'number'))
  );
}

export function breakerKeyString(key: BreakerKey): string {
  return JSON.stringify([key.env, key.baseUrl]);
}

/** Clocks of hosts differ by this much without being taken as wrong. */
const CLOCK_SLACK_MS = 5_000;

/**
 * The state as seen at `now`: open turns half-open when its cool-down is over. A next probe further
 * away than the cool-down itself was written by a clock that ran ahead (another host's, or this one's
 * before it was set): taken as due, so that no clock keeps the breaker open for longer than one cool-down
 * (at worst one probe comes early; the probe slot still lets only one run send).
 */
export function stateAt(record: BreakerRecord | undefined, now: number): BreakerState {
  if (!record || record.state === 'closed') return 'closed';
  const next = record.nextProbeAt ?? 0;
  return now >= next || next - now > (record.coolDownMs ?? 0) + CLOCK_SLACK_MS ? 'half-open' : 'open';
}

/** Failures that count at `now`: within the window while closed, all since it opened while open. */
export function failuresAt(record: BreakerRecord | undefined, now: number, settings: Pick<BreakerSettings, 'windowMs'>): number {
  if (!record) return 0;
  if (record.state === 'open') return record.failures.length;
  return record.failures.filter((t) => t > now - settings.windowMs).length;
}

/** A run found the server unavailable at `now`; `probe`: it was the half-open probe. */
export function recordFailure(
  stored: BreakerRecord | undefined,
  key: BreakerKey,
  now: number,
  settings: BreakerSettings,
  what: string,
  probe: boolean,
): BreakerRecord {
  const base: BreakerRecord = stored ?? { env: key.env, baseUrl: key.baseUrl, state: 'closed', failures: [] };
  const record: BreakerRecord = { ...base, lastFailureAt: now, lastError: what };
  if (base.state === 'closed') {
    record.failures = [...base.failures.filter((t) => t > now - settings.windowMs), now].slice(-MAX_KEPT_FAILURES);
    if (record.failures.length >= settings.failures) {
      record.state = 'open';
      record.openedAt = now;
      record.coolDownMs = settings.coolDownMs;
      record.nextProbeAt = now + settings.coolDownMs;
      record.probe = undefined;
    }
    return record;
  }
  record.failures = [...base.failures, now].slice(-MAX_KEPT_FAILURES);
  if (probe) {
    const coolDownMs = Math.min(settings.maxCoolDownMs, Math.max(settings.coolDownMs, (base.coolDownMs ?? settings.coolDownMs) * 2));
    record.coolDownMs = coolDownMs;
    record.nextProbeAt = now + coolDownMs;
    record.probe = undefined;
  }
  return record;
}

/**
 * A run got an answer at `answeredAt`. Closes the breaker unless a failure newer than the answer
 * was counted (a probe's answer closes it whatever came in between). Undefined: nothing to change.
 */
export function recordSuccess(stored: BreakerRecord | undefined, answeredAt: number, now: number, probe: boolean): BreakerRecord | undefined {
  if (!stored || (stored.state === 'closed' && stored.failures.length === 0)) return undefined;
  if (!probe && (stored.lastFailureAt ?? 0) > answeredAt) return undefined;
  return { env: stored.env, baseUrl: stored.baseUrl, state: 'closed', failures: [], lastSuccessAt: now };
}

/**
 * `session clear --breaker`: close the breakers `match` selects, by hand (a person knows the server is
 * back, or wants the next run to try it now). Returns the ones that were not closed before.
 */
export async function resetBreakers(store: BreakerStore, match: (record: BreakerRecord) => boolean): Promise<BreakerRecord[]> {
  const reset: BreakerRecord[] = [];
  for (const record of (await store.list()).filter(match)) {
    if (record.state === 'closed' && record.failures.length === 0) continue;
    await store.update(record, (stored) =>
      stored
        ? { env: stored.env, baseUrl: stored.baseUrl, state: 'closed', failures: [], ...(stored.lastSuccessAt ? { lastSuccessAt: stored.lastSuccessAt } : {}) }
        : undefined,
    );
    reset.push(record);
  }
  return reset;
}

export function viewOf(record: BreakerRecord | undefined, key: BreakerKey, settings: BreakerSettings, now = Date.now()): BreakerView {
  const state = stateAt(record, now);
  return {
    env: key.env,
    baseUrl: key.baseUrl,
    enabled: settings.enabled,
    state,
    failures: failuresAt(record, now, settings),
    threshold: settings.failures,
    windowMs: settings.windowMs,
    ...(record && record.state === 'open' ? { openedAt: iso(record.openedAt), nextProbeAt: iso(record.nextProbeAt), coolDownMs: record.coolDownMs } : {}),
    ...(record?.lastFailureAt !== undefined ? { lastFailureAt: iso(record.lastFailureAt), lastError: record.lastError } : {}),
  };
}

const STATE_NUMBER: Record<BreakerState, number> = { closed: 0, open: 1, 'half-open': 2 };

function seconds(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}

/** One line for a person: `open since …: 5 failures …; next probe due … (in 12 s)`. */
export function describeBreaker(view: BreakerView, now = Date.now()): string {
  if (!view.enabled) return 'off (breaker: false, LEGACY_BREAKER=0 or --no-breaker)';
  if (view.state === 'closed') {
    return view.failures > 0
      ? `closed (${view.failures} of ${view.threshold} failures within ${seconds(view.windowMs)}; last: ${view.lastError ?? 'unknown'})`
      : 'closed';
  }
  const next = view.nextProbeAt ? Date.parse(view.nextProbeAt) : now;
  const when = view.state === 'half-open' ? `a probe is due now (since ${view.nextProbeAt})` : `next probe due ${view.nextProbeAt} (in ${seconds(next - now)})`;
  return `${view.state} since ${view.openedAt}: ${view.failures} failure(s) (last: ${view.lastError ?? 'unknown'}); ${when}`;
}

/** What the last failure of a run was, in our own words (the server's text may quote anything). */
function failureWords(exchange: Exchange): string {
  if (exchange.status === 0) return `no answer (${exchange.error && /^[A-Z0-9_]{2,40}$/.test(exchange.error) ? exchange.error : 'network error'})`;
  return `HTTP ${exchange.status}`;
}

export interface CircuitBreakerOptions {
  store: BreakerStore;
  key: BreakerKey;
  settings: BreakerSettings;
  logger: Logger;
  /** How long the probe slot is held at most (a killed probe's slot frees itself after this). */
  probeLeaseMs: number;
}

/**
 * One run's view of its environment's breaker: `admit` before the run's first request, the
 * outcome of every request's last try (as an exchange observer), `close` at the end of the run.
 * Every failure of the breaker's own store is a warning: the run goes on as if it were closed.
 */
export class CircuitBreaker implements ExchangeObserver {
  private admission?: Promise<{ probe: boolean }>;
  private probeToken?: string;
  private failed = false;
  private answeredAt?: number;
  private closedByUs = false;
  private fastFailed = false;
  private last?: BreakerRecord;
  private consulted = false;
  private warned = false;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly options: CircuitBreakerOptions) {}

  get enabled(): boolean {
    return this.options.settings.enabled;
  }

  /** Is this run the half-open probe (its first request goes once, without retries)? */
  get probing(): boolean {
    return this.probeToken !== undefined;
  }

  private warn(error: unknown): void {
    if (this.warned) return;
    this.warned = true;
    this.options.logger.warn(
      `circuit breaker state in ${this.options.store.location} cannot be used (${oneLine((error as Error)?.message ?? String(error))}); this run ignores it`,
    );
  }

  /** Before the run's first request: go, go as the probe, or BreakerOpenError (exit 69) without touching the server. */
  admit(): Promise<{ probe: boolean }> {
    this.admission ??= this.admitOnce();
    return this.admission;
  }

  private async admitOnce(): Promise<{ probe: boolean }> {
    if (!this.enabled) return { probe: false };
    const { store, key, settings, probeLeaseMs } = this.options;
    let record: BreakerRecord | undefined;
    try {
      record = await store.read(key);
      this.consulted = true;
      this.last = record;
      if (stateAt(record, Date.now()) === 'half-open') {
        const token = randomBytes(16).toString('hex');
        if (await store.takeProbe(key, token, probeLeaseMs)) {
          this.probeToken = token;
          this.options.logger.info(`circuit breaker of ${key.env} is half-open: this run probes ${key.baseUrl}`);
          return { probe: true };
        }
        record = await store.read(key); // closed meanwhile by another run's answer, or another run probes
        this.last = record;
      }
    } catch (error) {
      this.warn(error);
      return { probe: false };
    }
    const state = stateAt(record, Date.now());
    if (state === 'closed') return { probe: false };
    this.fastFailed = true;
    const view = viewOf(record, key, settings);
    const next = view.nextProbeAt ? Date.parse(view.nextProbeAt) : Date.now();
    const when = state === 'half-open' ? 'another run is probing it now' : `next probe due ${view.nextProbeAt} (in ${seconds(next - Date.now())})`;
    throw new BreakerOpenError(
      `${key.baseUrl} is unavailable (circuit breaker of ${key.env} open since ${view.openedAt}, ${view.failures} failure(s), last: ${view.lastError ?? 'unknown'}); ${when}; nothing was sent`,
      { hint: 'runs fail fast until a probe gets an answer; --no-breaker sends anyway' },
    );
  }

  /** Every try the transport made; only a request's last try says how it ended. */
  onExchange(exchange: Exchange): void {
    if (!this.enabled || exchange.willRetry) return;
    // No answer, yet not the server's absence either (a TLS failure: our side's trust): neither counts.
    if (!exchange.unavailable && exchange.status === 0) return;
    const now = Date.now();
    if (exchange.unavailable) {
      if (this.failed) return; // a run counts once
      this.failed = true;
      this.track(this.recordFailure(failureWords(exchange), now));
      return;
    }
    this.answeredAt = now;
    // The probe's answer closes it at once, so that the runs waiting on it may go; any other run
    // reports its outcome at its end (an answer to its catalog request does not make a run whose
    // data requests then fail with 503 a success).
    if (this.probing && !this.closedByUs && !this.failed) {
      this.closedByUs = true;
      this.track(this.recordSuccess(now));
    }
  }

  private track(work: Promise<unknown>): void {
    this.pending.add(work);
    work.finally(() => this.pending.delete(work)).catch(() => undefined);
  }

  private async recordFailure(what: string, now: number): Promise<void> {
    const { store, key, settings, logger } = this.options;
    const probe = this.probing;
    try {
      const after = await store.update(key, (stored) => recordFailure(stored, key, now, settings, what, probe));
      this.consulted = true;
      this.last = after;
      if (probe) await this.releaseProbe();
      if (after?.state === 'open' && (probe || after.openedAt === now)) {
        logger.warn(
          `${probe ? 'the probe found the server still unavailable: the' : 'the'} circuit breaker of ${key.env} is open after ${after.failures.length} failure(s): runs fail fast without touching ${key.baseUrl} until ${iso(after.nextProbeAt)}, then one run probes it`,
        );
      }
    } catch (error) {
      this.warn(error);
    }
  }

  private async recordSuccess(answeredAt: number): Promise<void> {
    const { store, key, logger } = this.options;
    const probe = this.probing;
    try {
      const before = this.last;
      const after = await store.update(key, (stored) => recordSuccess(stored, answeredAt, Date.now(), probe));
      this.consulted = true;
      this.last = after;
      if (probe) await this.releaseProbe();
      if (before?.state === 'open' && after?.state === 'closed') logger.info(`circuit breaker of ${key.env} closed: ${key.baseUrl} answered`);
    } catch (error) {
      this.warn(error);
    }
  }

  private async releaseProbe(): Promise<void> {
    const token = this.probeToken;
    if (!token) return;
    this.probeToken = undefined;
    await this.options.store.releaseProbe(this.options.key, token).catch((error) => this.warn(error));
  }

  /**
   * The end of the run: wait for the records under way; an answer newer than the run's last
   * failure closes a breaker others left unclean meanwhile; a probe slot still held is freed.
   */
  async close(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    if (!this.enabled || !this.consulted) return;
    try {
      const answered = this.answeredAt;
      if (answered !== undefined && !this.failed && !this.fastFailed) {
        const stored = await this.options.store.read(this.options.key);
        this.last = stored;
        if (recordSuccess(stored, answered, Date.now(), false)) await this.recordSuccess(answered);
      }
    } catch (error) {
      this.warn(error);
    }
    await this.releaseProbe();
  }

  /**
   * A follower's next poll (watch, sync --follow): the poll before is reported as a run's end would
   * be, and the next request asks the breaker again, so a long-running process neither stays refused
   * after the breaker closed nor keeps sending while it is open, and may be the probe.
   */
  async nextRound(): Promise<void> {
    if (!this.enabled) return;
    await this.close();
    this.admission = undefined;
    this.failed = false;
    this.answeredAt = undefined;
    this.fastFailed = false;
    this.closedByUs = false;
  }

  /** The breaker as this run last saw it (after its own records). */
  view(): BreakerView {
    return viewOf(this.last, this.options.key, this.options.settings);
  }

  /** For the metrics file; undefined when the run never looked at the breaker (off, or no request). */
  report(): BreakerReport | undefined {
    if (!this.enabled || !this.consulted) return undefined;
    const now = Date.now();
    const state = stateAt(this.last, now);
    return {
      state: STATE_NUMBER[state],
      failures: failuresAt(this.last, now, this.options.settings),
      openedAtSeconds: state === 'closed' ? 0 : (this.last?.openedAt ?? 0) / 1000,
      fastFailures: this.fastFailed ? 1 : 0,
    };
  }
}

interface BreakerFile {
  version: 1;
  breakers: BreakerRecord[];
}

/**
 * The file store's breakers: `<config dir>/breakers.json` (0600), beside sessions.json but apart
 * from it (it never holds a cookie). Reads take no lock; every change is made under the file's lock
 * (re-read, change, atomic replace), the probe slot included.
 */
export class FileBreakerStore implements BreakerStore {
  readonly location: string;
  private warnedDamage = false;

  constructor(
    private readonly configDir: string,
    private readonly logger: Logger,
    private readonly lockTimeoutMs = 10_000,
  ) {
    this.location = join(configDir, 'breakers.json');
  }

  private damaged(problem: string): void {
    if (this.warnedDamage) return;
    this.warnedDamage = true;
    this.logger.warn(`circuit breaker state ${this.location} is damaged (${problem}); treating it as closed`);
  }

  private async load(): Promise<{ file: BreakerFile; problem?: string }> {
    let text: string;
    try {
      text = await readFile(this.location, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { file: { version: 1, breakers: [] } };
      throw error;
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      return { file: { version: 1, breakers: [] }, problem: 'not valid JSON' };
    }
    if (!data || typeof data !== 'object' || !Array.isArray((data as BreakerFile).breakers)) {
      return { file: { version: 1, breakers: [] }, problem: 'not a breaker state (wrong shape)' };
    }
    const breakers = (data as BreakerFile).breakers.filter(isBreakerRecord);
    const dropped = (data as BreakerFile).breakers.length - breakers.length;
    return { file: { version: 1, breakers }, problem: dropped ? `${dropped} malformed entr${dropped === 1 ? 'y' : 'ies'}` : undefined };
  }

  private async readAll(): Promise<BreakerRecord[]> {
    const { file, problem } = await this.load();
    if (problem) this.damaged(problem);
    return file.breakers;
  }

  async read(key: BreakerKey): Promise<BreakerRecord | undefined> {
    return (await this.readAll()).find((b) => b.env === key.env && b.baseUrl === key.baseUrl);
  }

  list(): Promise<BreakerRecord[]> {
    return this.readAll();
  }

  private change<T>(fn: (file: BreakerFile) => { write: boolean; result: T }): Promise<T> {
    ensurePrivateDir(this.configDir, 'config directory');
    return withLock(
      this.location,
      async () => {
        const { file, problem } = await this.load();
        if (problem) {
          this.damaged(problem);
          if (file.breakers.length === 0) await quarantine(this.location).catch(() => undefined);
        }
        const { write, result } = fn(file);
        if (write) await writeFileAtomic(this.location, `${JSON.stringify(file, null, 2)}\n`, 'circuit breaker state');
        return result;
      },
      { what: `circuit breaker state ${this.location}`, timeoutMs: this.lockTimeoutMs },
    );
  }

  update(key: BreakerKey, change: (stored: BreakerRecord | undefined) => BreakerRecord | undefined): Promise<BreakerRecord | undefined> {
    return this.change((file) => {
      const index = file.breakers.findIndex((b) => b.env === key.env && b.baseUrl === key.baseUrl);
      const stored = index >= 0 ? file.breakers[index] : undefined;
      const next = change(stored);
      if (!next) return { write: false, result: stored };
      if (index >= 0) file.breakers[index] = next;
      else file.breakers.push(next);
      return { write: true, result: next };
    });
  }

  takeProbe(key: BreakerKey, token: string, leaseMs: number): Promise<boolean> {
    return this.change((file) => {
      const stored = file.breakers.find((b) => b.env === key.env && b.baseUrl === key.baseUrl);
      const now = Date.now();
      if (!stored || stateAt(stored, now) !== 'half-open' || (stored.probe && stored.probe.until > now)) return { write: false, result: false };
      stored.probe = { token, until: now + leaseMs };
      return { write: true, result: true };
    });
  }

  releaseProbe(key: BreakerKey, token: string): Promise<void> {
    return this.change((file) => {
      const stored = file.breakers.find((b) => b.env === key.env && b.baseUrl === key.baseUrl);
      if (stored?.probe?.token !== token) return { write: false, result: undefined };
      stored.probe = undefined;
      return { write: true, result: undefined };
    });
  }
}
