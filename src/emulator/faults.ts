/**
 * Fault injection on data requests (`/rest/{dataClass}...`): one-shot queued faults first, then random faults
 * drawn from a seeded RNG, so a run with the same seed and the same request sequence fails the same way.
 */
import { OptionError, type RuntimeOptions } from './options.js';
import { FAULT_KINDS, type FaultKind, type QueuedFault } from './types.js';
import { Rng } from './util/random.js';

export type RequestClass = 'read' | 'update';

interface QueueEntry {
  kind: FaultKind;
  match: 'read' | 'update' | 'any';
  remaining: number;
}

/** 'reset-after-update' only makes sense for updates; every other kind applies to both. */
const applicable = (kind: FaultKind, cls: RequestClass) => kind !== 'reset-after-update' || cls === 'update';

export class FaultInjector {
  private rng: Rng;
  private queue: QueueEntry[] = [];
  private dataRequests = 0;

  constructor(private readonly opts: () => RuntimeOptions) {
    this.rng = new Rng(opts().faults.seed);
  }

  /** Restarts the random sequence and the expireEvery counter (after a faults option change or reset). */
  restart(): void {
    this.rng = new Rng(this.opts().faults.seed);
    this.dataRequests = 0;
  }

  enqueue(entries: QueuedFault[]): number {
    if (!Array.isArray(entries)) throw new OptionError('queue must be an array');
    const parsed = entries.map((e): QueueEntry => {
      if (!e || !FAULT_KINDS.includes(e.kind)) throw new OptionError(`fault kind must be one of ${FAULT_KINDS.join(', ')}`);
      const match = e.match ?? 'any';
      if (!['read', 'update', 'any'].includes(match)) throw new OptionError('match must be read, update or any');
      const count = e.count ?? 1;
      if (!Number.isInteger(count) || count < 1) throw new OptionError('count must be a positive integer');
      return { kind: e.kind, match, remaining: count };
    });
    this.queue.push(...parsed);
    return this.queue.length;
  }

  clear(): void {
    this.queue = [];
  }

  /** Counts a data request; true when this one must force-expire the requesting session (expireEvery). */
  countDataRequest(): boolean {
    this.dataRequests++;
    const n = this.opts().faults.expireEvery;
    return n > 0 && this.dataRequests % n === 0;
  }

  /** The fault for this data request, if any. */
  pick(cls: RequestClass): FaultKind | null {
    const q = this.queue.findIndex((e) => applicable(e.kind, cls) && (e.match === 'any' || e.match === cls));
    if (q >= 0) {
      const e = this.queue[q]!;
      if (--e.remaining === 0) this.queue.splice(q, 1);
      return e.kind;
    }
    const f = this.opts().faults;
    if (f.rate <= 0) return null;
    // always draw two numbers so the sequence does not depend on which kinds apply
    const fire = this.rng.next() < f.rate;
    const which = this.rng.next();
    if (!fire) return null;
    const kinds = f.kinds.filter((k) => applicable(k, cls));
    return kinds.length === 0 ? null : kinds[Math.floor(which * kinds.length)]!;
  }
}
