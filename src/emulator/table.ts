/**
 * A table of the emulated datastore.
 *
 * Rows `0 .. generator.count-1` are computed on demand by a deterministic generator (demo data), so a
 * million-row table costs nothing until it is read. Rows that were changed or inserted live in an overlay of
 * materialised rows; deletions are a set of indexes. Rows are addressed by a stable index that never changes
 * (inserted rows get the next index), and the natural order of the table is index order.
 *
 * Change tracking (tracking.ts): once `track(clock)` is called, every `write` and `insert` sets the row's
 * `__GlobalStamp` to the datastore's next global stamp and every `remove` is logged to `__DeletedRecords`, so no
 * change can bypass the counter. A rollback restores the old rows, stamps included; the counter never goes back.
 */
import type { AttributeDef, DataClassDef, WireValue } from './model.js';
import { NUMERIC_TYPES } from './model.js';

export interface RowGenerator {
  readonly count: number;
  /** One function per attribute of the dataclass, aligned with `def.attributes`. */
  readonly columns: ReadonlyArray<(i: number) => WireValue>;
  /** Key string of row i. Numeric keys must increase with i. */
  key(i: number): string;
  /** Inverse of `key` (-1 when the string is not a generated key). */
  indexOfKey(key: string): number;
  stamp(i: number): number;
  timestamp(i: number): number;
}

export interface StoredRow {
  values: WireValue[];
  stamp: number;
  /** `__TIMESTAMP` in ms since epoch. */
  ts: number;
}

/** The datastore's global modification stamp as a tracked table uses it (GlobalClock in tracking.ts). */
export interface ChangeClock {
  /** The current global stamp; the counter moves on. */
  take(): number;
  /** Logs the deletion of `key` from `table` (a `__DeletedRecords` entity taking the current stamp). */
  deleted(table: Table, key: string): void;
}

/** An ordered list of row indexes (a query result, an entity set). Immutable once made. */
export interface Selection {
  readonly size: number;
  at(pos: number): number;
}

export class RangeSelection implements Selection {
  constructor(readonly size: number) {}
  at(pos: number): number {
    return pos;
  }
}

export class ArraySelection implements Selection {
  readonly size: number;
  constructor(readonly items: Int32Array) {
    this.size = items.length;
  }
  at(pos: number): number {
    return this.items[pos]!;
  }
}

type UndoEntry = { kind: 'write'; i: number; prev: StoredRow | undefined } | { kind: 'insert'; i: number; key: string } | { kind: 'remove'; i: number };

const NUMERIC_KEY = /^[+-]?\d+(\.\d+)?$/;
const WHOLE_KEY = /^[+-]?\d+$/;

/** A normalized numeric key as stored: a number, or a bigint beyond 2^53 (a long64 key, exact). */
function numericKeyValue(key: string): number | bigint {
  const n = Number(key);
  return Number.isSafeInteger(n) || !WHOLE_KEY.test(key) ? n : BigInt(key);
}

export class Table {
  readonly name: string;
  readonly attrs: readonly AttributeDef[];
  readonly keyAttr: number;
  readonly numericKey: boolean;
  /** Bumped on every change; caches key on it. */
  version = 0;

  private readonly attrIndex = new Map<string, number>();
  private readonly gen: RowGenerator | null;
  private readonly base: number;
  private readonly overlay = new Map<number, StoredRow>();
  private readonly insertedKeys = new Map<string, number>();
  private readonly deleted = new Set<number>();
  private total: number;
  private maxNumKey: number;
  private allCache: { version: number; sel: Selection } | null = null;
  private undo: UndoEntry[] | null = null;
  /** Change tracking: the `__GlobalStamp` attribute and the datastore's clock (null = not tracked). */
  private tracking: { attr: number; clock: ChangeClock } | null = null;

  constructor(
    readonly def: DataClassDef,
    gen: RowGenerator | null,
  ) {
    this.name = def.name;
    this.attrs = def.attributes;
    for (const [i, a] of def.attributes.entries()) this.attrIndex.set(a.name, i);
    const k = this.attrIndex.get(def.keyName);
    if (k === undefined) throw new Error(`dataclass ${def.name}: key attribute ${def.keyName} is not defined`);
    this.keyAttr = k;
    this.numericKey = NUMERIC_TYPES.has(def.attributes[k]!.type);
    this.gen = gen;
    this.base = gen ? gen.count : 0;
    this.total = this.base;
    this.maxNumKey = this.numericKey && gen && gen.count > 0 ? Number(gen.key(gen.count - 1)) : 0;
  }

  /** Switches change tracking on; the table must have a `__GlobalStamp` attribute. */
  track(clock: ChangeClock): void {
    const attr = this.attr('__GlobalStamp');
    if (attr < 0) throw new Error(`dataclass ${this.name}: no __GlobalStamp attribute to track changes in`);
    this.tracking = { attr, clock };
  }

  get tracked(): boolean {
    return this.tracking !== null;
  }

  /** Attribute index by name, -1 if unknown (names are case-sensitive, as in 4D). */
  attr(name: string): number {
    return this.attrIndex.get(name) ?? -1;
  }

  /** Number of live rows. */
  get size(): number {
    return this.total - this.deleted.size;
  }

  isLive(i: number): boolean {
    return i >= 0 && i < this.total && !this.deleted.has(i);
  }

  /** Canonical key string (numeric keys: `007` → `7`; a whole number beyond 2^53 keeps its exact digits, a long64 key). */
  normalizeKey(key: string): string {
    if (this.numericKey && NUMERIC_KEY.test(key)) {
      const n = Number(key);
      return Number.isSafeInteger(n) || !WHOLE_KEY.test(key) ? String(n) : BigInt(key).toString();
    }
    return key;
  }

  /** Row index of a live row with that key, or -1. */
  indexOfKey(rawKey: string): number {
    const key = this.normalizeKey(rawKey);
    const ins = this.insertedKeys.get(key);
    if (ins !== undefined) return this.deleted.has(ins) ? -1 : ins;
    if (!this.gen) return -1;
    const i = this.gen.indexOfKey(key);
    return i >= 0 && i < this.base && !this.deleted.has(i) ? i : -1;
  }

  keyOf(i: number): string {
    const o = this.overlay.get(i);
    if (o) return String(o.values[this.keyAttr]);
    return this.gen!.key(i);
  }

  get(i: number, attr: number): WireValue {
    const o = this.overlay.get(i);
    if (o) return o.values[attr]!;
    return this.gen!.columns[attr]!(i);
  }

  stamp(i: number): number {
    const o = this.overlay.get(i);
    return o ? o.stamp : this.gen!.stamp(i);
  }

  timestamp(i: number): number {
    const o = this.overlay.get(i);
    return o ? o.ts : this.gen!.timestamp(i);
  }

  /** A copy of row i (values array is fresh; object values are shared). */
  materialize(i: number): StoredRow {
    const o = this.overlay.get(i);
    if (o) return { values: [...o.values], stamp: o.stamp, ts: o.ts };
    const cols = this.gen!.columns;
    const values = new Array<WireValue>(cols.length);
    for (let a = 0; a < cols.length; a++) values[a] = cols[a]!(i);
    return { values, stamp: this.gen!.stamp(i), ts: this.gen!.timestamp(i) };
  }

  /** All live rows in natural (index) order; cached until the next change. */
  all(): Selection {
    if (this.allCache && this.allCache.version === this.version) return this.allCache.sel;
    let sel: Selection;
    if (this.deleted.size === 0) sel = new RangeSelection(this.total);
    else {
      const items = new Int32Array(this.size);
      let n = 0;
      for (let i = 0; i < this.total; i++) if (!this.deleted.has(i)) items[n++] = i;
      sel = new ArraySelection(items);
    }
    this.allCache = { version: this.version, sel };
    return sel;
  }

  /** Next automatic key for a numeric-key table. */
  nextNumericKey(): string {
    return String(this.maxNumKey + 1);
  }

  // ---- changes -------------------------------------------------------------------------------------------

  /** Replaces row i (which must be live; its key must not change). Tracked: takes the next global stamp. */
  write(i: number, row: StoredRow): void {
    if (this.tracking) row.values[this.tracking.attr] = this.tracking.clock.take();
    this.undo?.push({ kind: 'write', i, prev: this.overlay.get(i) });
    this.overlay.set(i, row);
    this.version++;
  }

  /** Appends a row; its key must be unique (see indexOfKey). Returns its index. Tracked: takes the next global stamp. */
  insert(row: StoredRow): number {
    if (this.tracking) row.values[this.tracking.attr] = this.tracking.clock.take();
    const i = this.total++;
    const key = this.normalizeKey(String(row.values[this.keyAttr]));
    row.values[this.keyAttr] = this.numericKey ? numericKeyValue(key) : key;
    this.overlay.set(i, row);
    this.insertedKeys.set(key, i);
    if (this.numericKey) this.maxNumKey = Math.max(this.maxNumKey, Number(key));
    this.undo?.push({ kind: 'insert', i, key });
    this.version++;
    return i;
  }

  /** Deletes live row i. Tracked: logged to `__DeletedRecords` (not undone by a rollback; only updates use one). */
  remove(i: number): void {
    if (!this.isLive(i)) return;
    if (this.tracking) this.tracking.clock.deleted(this, this.keyOf(i));
    this.deleted.add(i);
    this.undo?.push({ kind: 'remove', i });
    this.version++;
  }

  /** Starts recording changes so they can be rolled back ($atomic). */
  begin(): void {
    this.undo = [];
  }

  commit(): void {
    this.undo = null;
  }

  rollback(): void {
    const log = this.undo ?? [];
    this.undo = null;
    for (let n = log.length - 1; n >= 0; n--) {
      const e = log[n]!;
      if (e.kind === 'write') {
        if (e.prev) this.overlay.set(e.i, e.prev);
        else this.overlay.delete(e.i);
      } else if (e.kind === 'insert') {
        this.overlay.delete(e.i);
        this.insertedKeys.delete(e.key);
        this.total--;
      } else this.deleted.delete(e.i);
    }
    this.version++;
  }
}
