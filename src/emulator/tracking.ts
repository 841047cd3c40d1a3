/**
 * Data change tracking: 4D's global modification stamp (`docs/ORDA/global-stamp.md`), option `changeTracking`.
 *
 * Invariants:
 * - One counter per datastore (`GlobalClock.current`, the envelope's `__GlobalStamp`): the value the next change
 *   takes. It only grows; an `$atomic` rollback restores the rows (and their old `__GlobalStamp`) but a value
 *   once handed out is never handed out again, as in 4D.
 * - A tracked table has a `__GlobalStamp` storage attribute (long64, indexed, fieldPos after the other storage
 *   attributes, placed right after the last of them). `Table.write`/`Table.insert` set it to `clock.take()`, so
 *   every save, creation and control-API change takes the next stamp; a save that changes nothing never writes.
 * - `Table.remove` on a tracked table adds a `__DeletedRecords` entity (`__PrimaryKey` = key as text, `__Stamp` =
 *   `clock.take()`, `__TableName`, `__TableNumber`). `__DeletedRecords` (key `ID`, long64, numbered 1, 2, …) is
 *   the last dataclass of the catalog whenever a table is tracked, and is not tracked itself.
 * - Initial stamps are distinct, 1..N over all tracked tables, and the counter starts at N+1. Generated rows get
 *   theirs from their index (`interleavedStamps`, nothing is materialised); fixture rows by `__TIMESTAMP`.
 */
import type { AttributeDef, DataClassDef } from './model.js';
import { OptionError } from './options.js';
import { Table, type ChangeClock } from './table.js';

export const GLOBAL_STAMP = '__GlobalStamp';
export const DELETED_RECORDS = '__DeletedRecords';

/** The `__GlobalStamp` attribute of a tracked table (fieldPos filled in by `withGlobalStamp`). */
export function globalStampAttribute(fieldPos: number): AttributeDef {
  return { name: GLOBAL_STAMP, kind: 'storage', type: 'long64', indexed: true, fieldPos };
}

/** Where `__GlobalStamp` goes in an attribute list: right after the last storage attribute (no `kind` = storage). */
export function globalStampPosition(attributes: readonly object[]): number {
  let last = -1;
  attributes.forEach((a, i) => {
    const kind = (a as { kind?: unknown }).kind;
    if (kind === undefined || kind === 'storage') last = i;
  });
  return last + 1;
}

/** `attributes` plus `__GlobalStamp` (a new array). */
export function withGlobalStamp(attributes: readonly AttributeDef[]): AttributeDef[] {
  const fieldPos = attributes.reduce((m, a) => Math.max(m, a.fieldPos ?? 0), 0) + 1;
  const out = [...attributes];
  out.splice(globalStampPosition(attributes), 0, globalStampAttribute(fieldPos));
  return out;
}

/**
 * The tables `spec` tracks among `available` (option `changeTracking`, resolved: 'all', a list, or null = off).
 * Unknown names are option errors.
 */
export function trackedTables(spec: 'all' | readonly string[] | null, available: readonly string[]): Set<string> {
  if (spec === null) return new Set();
  if (spec === 'all') return new Set(available);
  for (const name of spec) {
    if (name === DELETED_RECORDS) throw new OptionError(`changeTracking: ${DELETED_RECORDS} is never tracked itself`);
    if (!available.includes(name)) throw new OptionError(`changeTracking: unknown table "${name}" (known: ${available.join(', ')})`);
  }
  return new Set(spec);
}

/**
 * Initial stamps of generated rows, from the row index alone. Tables are merged by creation order as the demo
 * generates it (row i of a table of n rows was created at about i/n of the data's history; ties go to the
 * lower table number), and the stamp is 1 + the row's rank in that merged order: a bijection onto 1..Σn.
 * `counts[k]` is the row count of the k-th tracked table (in table-number order). O(tables) per row.
 */
export function interleavedStamps(counts: readonly number[]): Array<(i: number) => number> {
  return counts.map((n, t) => (i: number) => {
    let rank = i;
    for (let u = 0; u < counts.length; u++) {
      if (u === t) continue;
      const m = counts[u]!;
      const x = i * m; // rows j of table u with j/m < i/n are those with j*n < i*m
      let before = Math.ceil(x / n);
      if (u < t && x % n === 0) before++; // j/m == i/n: the lower table number first
      rank += Math.min(m, before);
    }
    return rank + 1;
  });
}

/** The datastore's global stamp and its `__DeletedRecords` table. */
export class GlobalClock implements ChangeClock {
  private readonly attrs: { key: number; primaryKey: number; stamp: number; tableName: number; tableNumber: number };

  constructor(
    /** The current global stamp: the value the next change takes. */
    public current: number,
    readonly deletedRecords: Table,
  ) {
    const d = deletedRecords;
    this.attrs = {
      key: d.keyAttr,
      primaryKey: d.attr('__PrimaryKey'),
      stamp: d.attr('__Stamp'),
      tableName: d.attr('__TableName'),
      tableNumber: d.attr('__TableNumber'),
    };
  }

  /** The current global stamp; the counter moves on. */
  take(): number {
    return this.current++;
  }

  deleted(table: Table, key: string): void {
    const d = this.deletedRecords;
    const a = this.attrs;
    const values = d.attrs.map(() => null) as Array<string | number | null>;
    values[a.key] = d.nextNumericKey();
    values[a.primaryKey] = key;
    values[a.stamp] = this.take();
    values[a.tableName] = table.name;
    values[a.tableNumber] = table.def.tableNumber;
    d.insert({ values, stamp: 1, ts: Date.now() });
  }
}

function deletedRecordsTable(tableNumber: number): Table {
  const def: DataClassDef = {
    name: DELETED_RECORDS,
    tableNumber,
    keyName: 'ID',
    attributes: [
      { name: 'ID', kind: 'storage', type: 'long64', indexed: true, fieldPos: 1 },
      { name: '__PrimaryKey', kind: 'storage', type: 'string', fieldPos: 2 },
      { name: '__Stamp', kind: 'storage', type: 'long64', indexed: true, fieldPos: 3 },
      { name: '__TableName', kind: 'storage', type: 'string', fieldPos: 4 },
      { name: '__TableNumber', kind: 'storage', type: 'long', fieldPos: 5 },
    ],
  };
  return new Table(def, null);
}

/**
 * Switches tracking on for `tracked` (tables that already carry `__GlobalStamp` with their initial stamps):
 * adds `__DeletedRecords` after the other tables and starts the counter at `firstStamp`. Returns the tables
 * (with `__DeletedRecords`) and the clock; with nothing tracked, the tables unchanged and no clock.
 */
export function enableTracking(tables: readonly Table[], tracked: ReadonlySet<string>, firstStamp: number): { tables: Table[]; clock: GlobalClock | null } {
  if (tracked.size === 0) return { tables: [...tables], clock: null };
  const deleted = deletedRecordsTable(tables.reduce((m, t) => Math.max(m, t.def.tableNumber), 0) + 1);
  const clock = new GlobalClock(firstStamp, deleted);
  for (const t of tables) if (tracked.has(t.name)) t.track(clock);
  return { tables: [...tables, deleted], clock };
}

/**
 * Initial stamps of materialised rows (fixtures): 1..N over the live rows of `tables`, by `__TIMESTAMP`, then
 * table number, then index. Call before `enableTracking` (the writes must not take clock values). Returns N+1.
 */
export function stampByTimestamp(tables: readonly Table[]): number {
  const rows: Array<{ t: Table; i: number; ts: number }> = [];
  for (const t of tables) {
    const all = t.all();
    for (let p = 0; p < all.size; p++) rows.push({ t, i: all.at(p), ts: t.timestamp(all.at(p)) });
  }
  rows.sort((a, b) => a.ts - b.ts || a.t.def.tableNumber - b.t.def.tableNumber || a.i - b.i);
  rows.forEach(({ t, i }, n) => {
    const row = t.materialize(i);
    row.values[t.attr(GLOBAL_STAMP)] = n + 1;
    t.write(i, row);
  });
  return rows.length + 1;
}
