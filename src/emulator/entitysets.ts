/**
 * Stored entity sets (`$method=entityset`). A set is a snapshot of row indexes: rows changed later show their
 * current values, rows deleted later render as `{"__KEY","__STAMP":0}` and `__COUNT` does not change.
 * Sets belong to the session that made them (scalable sessions): another session does not see them, so the
 * store is keyed by (session, id). The timeout slides on every use.
 */
import type { Selection, Table } from './table.js';
import { randomHexId } from './util/random.js';

export const DEFAULT_SET_TIMEOUT_MS = 2 * 60 * 60 * 1000;
/** Lifetime of a set recreated through `$savedfilter` when no `$timeout` is given (4D docs: 10 minutes). */
export const RECREATED_SET_TIMEOUT_MS = 10 * 60 * 1000;

export interface EntitySet {
  id: string;
  owner: string;
  table: Table;
  sel: Selection;
  sorted: boolean;
  timeoutMs: number;
  createdAt: number;
  lastUsedAt: number;
}

export class EntitySetStore {
  private readonly sets = new Map<string, EntitySet>();

  private static slot(owner: string, id: string): string {
    return `${owner}/${id}`;
  }

  create(owner: string, table: Table, sel: Selection, sorted: boolean, timeoutMs: number, id = randomHexId(), now = Date.now()): EntitySet {
    const set: EntitySet = { id, owner, table, sel, sorted, timeoutMs, createdAt: now, lastUsedAt: now };
    this.sets.set(EntitySetStore.slot(owner, id), set);
    return set;
  }

  /** The live set `id` of session `owner` (touching it), or undefined. */
  use(owner: string, id: string, now = Date.now()): EntitySet | undefined {
    const slot = EntitySetStore.slot(owner, id);
    const set = this.sets.get(slot);
    if (!set) return undefined;
    if (set.lastUsedAt + set.timeoutMs <= now) {
      this.sets.delete(slot);
      return undefined;
    }
    set.lastUsedAt = now;
    return set;
  }

  release(owner: string, id: string): boolean {
    return this.sets.delete(EntitySetStore.slot(owner, id));
  }

  dropOwner(owner: string): void {
    for (const [slot, set] of this.sets) if (set.owner === owner) this.sets.delete(slot);
  }

  live(now = Date.now()): EntitySet[] {
    for (const [slot, set] of this.sets) if (set.lastUsedAt + set.timeoutMs <= now) this.sets.delete(slot);
    return [...this.sets.values()];
  }

  clear(): void {
    this.sets.clear();
  }
}
