/**
 * The emulated datastore: the demo tables or the tables of a JSON fixture.
 *
 * Fixture format:
 * {"appName"?: string, "dataClasses": [{"name": "T", "key": "ID",
 *   "attributes": [{"name", "type", "kind"?, "related"?, "path"?, "indexed"?}],
 *   "rows": [{attr: value-in-4D-wire-encoding, "__STAMP"?: n, "__TIMESTAMP"?: iso}]}]}
 * Relations in rows are the related key (string). `__STAMP` defaults to 1 and `__TIMESTAMP` to a fixed instant
 * derived from the seed, so output is reproducible. `__GlobalStamp` in a row is ignored (the emulator assigns it).
 *
 * Change tracking (option `changeTracking`, tracking.ts): tracked tables carry `__GlobalStamp`, the store holds
 * the global clock and a `__DeletedRecords` table after the others. A fixture must not define either name itself
 * for a tracked table.
 */
import { readFileSync } from 'node:fs';
import { buildDemoTables, DEMO_DEFAULT_ROWS } from './demo.js';
import type { AttributeDef, DataClassDef, StorageType, WireValue } from './model.js';
import { STORAGE_TYPES } from './model.js';
import { OptionError } from './options.js';
import { Table } from './table.js';
import { DELETED_RECORDS, enableTracking, GLOBAL_STAMP, type GlobalClock, stampByTimestamp, trackedTables, withGlobalStamp } from './tracking.js';
import { hashString, mix32, Rng } from './util/random.js';
import { coerceInput } from './values.js';

export class FixtureError extends Error {
  override name = 'FixtureError';
}

export class DataStore {
  private readonly byName = new Map<string, Table>();
  constructor(
    readonly tables: readonly Table[],
    readonly appName: string | null,
    /** The global modification stamp (null: change tracking off; the envelope then says 0). */
    readonly clock: GlobalClock | null = null,
  ) {
    for (const t of tables) this.byName.set(t.name, t);
  }
  table(name: string): Table | undefined {
    return this.byName.get(name);
  }
}

/**
 * Returns a factory that rebuilds the datastore in its seed state (used at start and by `reset`; the global
 * stamp starts over too). `changeTracking`: 'all', a list of tables, or null (off); unknown names throw.
 */
export function dataStoreFactory(
  data: string,
  seed: number,
  rows: Record<string, number>,
  changeTracking: 'all' | readonly string[] | null = null,
): () => DataStore {
  if (data === 'demo') {
    const tracked = trackedTables(changeTracking, Object.keys(DEMO_DEFAULT_ROWS));
    return () => {
      const tables = buildDemoTables(seed, rows, tracked);
      const n = tables.reduce((sum, t) => sum + (tracked.has(t.name) ? t.size : 0), 0);
      const on = enableTracking(tables, tracked, n + 1);
      return new DataStore(on.tables, null, on.clock);
    };
  }
  if (Object.keys(rows).length > 0) throw new OptionError('rows only applies to the demo data');
  const fixture = readFixture(data);
  const tracked = trackedTables(
    changeTracking,
    fixture.dataClasses.map((dc) => dc?.name).filter((n): n is string => typeof n === 'string'),
  );
  return () => buildFixtureStore(fixture, seed, tracked);
}

interface FixtureAttribute {
  name: string;
  type?: string;
  kind?: string;
  related?: string;
  path?: string;
  indexed?: boolean;
}
interface FixtureClass {
  name: string;
  key: string;
  attributes: FixtureAttribute[];
  rows?: Array<Record<string, unknown>>;
}
interface Fixture {
  appName?: string;
  dataClasses: FixtureClass[];
}

function readFixture(path: string): Fixture {
  const text = readFileSync(path, 'utf8'); // ENOENT etc. propagate as system errors
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FixtureError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const f = json as Fixture;
  if (!f || typeof f !== 'object' || !Array.isArray(f.dataClasses)) throw new FixtureError(`${path}: "dataClasses" array missing`);
  if (f.appName !== undefined && typeof f.appName !== 'string') throw new FixtureError(`${path}: appName must be a string`);
  return f;
}

function buildFixtureStore(f: Fixture, seed: number, tracked: ReadonlySet<string>): DataStore {
  const names = new Set<string>();
  for (const dc of f.dataClasses) {
    if (!dc || typeof dc.name !== 'string' || dc.name === '') throw new FixtureError('every dataClass needs a name');
    if (names.has(dc.name)) throw new FixtureError(`dataClass ${dc.name} is defined twice`);
    names.add(dc.name);
  }
  if (tracked.size > 0 && names.has(DELETED_RECORDS)) {
    throw new FixtureError(`dataClass ${DELETED_RECORDS} is made by the emulator when changeTracking is on`);
  }
  const defs = f.dataClasses.map((dc, n) => fixtureDef(dc, n + 1, f.dataClasses, tracked.has(dc.name)));
  const tables = defs.map((def, n) => {
    const t = new Table(def, null);
    loadRows(t, f.dataClasses[n]!.rows ?? [], seed);
    return t;
  });
  const first = stampByTimestamp(tables.filter((t) => tracked.has(t.name)));
  const on = enableTracking(tables, tracked, first);
  return new DataStore(on.tables, f.appName ?? null, on.clock);
}

function fixtureDef(dc: FixtureClass, tableNumber: number, all: FixtureClass[], tracked: boolean): DataClassDef {
  if (typeof dc.key !== 'string') throw new FixtureError(`${dc.name}: "key" (the primary key attribute name) is required`);
  if (!Array.isArray(dc.attributes)) throw new FixtureError(`${dc.name}: "attributes" array missing`);
  let fieldPos = 0;
  const attributes = dc.attributes.map((a): AttributeDef => {
    if (!a || typeof a.name !== 'string' || a.name === '') throw new FixtureError(`${dc.name}: attribute without a name`);
    const kind = a.kind ?? 'storage';
    if (kind === 'relatedEntity' || kind === 'relatedEntities') {
      const related = a.related ?? a.type;
      const target = all.find((x) => x.name === related);
      if (!target) throw new FixtureError(`${dc.name}.${a.name}: related dataClass "${String(related)}" is not defined`);
      if (kind === 'relatedEntity') return { name: a.name, kind, type: 'string', related: target.name };
      const path = a.path ?? target.attributes.find((x) => x.kind === 'relatedEntity' && (x.related ?? x.type) === dc.name)?.name;
      if (!path) throw new FixtureError(`${dc.name}.${a.name}: no relatedEntity in ${target.name} points back; give "path"`);
      return { name: a.name, kind, type: 'string', related: target.name, path };
    }
    if (kind !== 'storage') throw new FixtureError(`${dc.name}.${a.name}: unknown kind "${kind}"`);
    if (!(STORAGE_TYPES as readonly string[]).includes(a.type ?? '')) {
      throw new FixtureError(`${dc.name}.${a.name}: unknown type "${String(a.type)}" (one of ${STORAGE_TYPES.join(', ')})`);
    }
    return { name: a.name, kind: 'storage', type: a.type as StorageType, indexed: a.indexed || a.name === dc.key || undefined, fieldPos: ++fieldPos };
  });
  const key = attributes.find((a) => a.name === dc.key);
  if (key?.kind !== 'storage') throw new FixtureError(`${dc.name}: key "${dc.key}" is not a storage attribute`);
  if (!tracked) return { name: dc.name, tableNumber, keyName: dc.key, attributes };
  if (attributes.some((a) => a.name === GLOBAL_STAMP)) {
    throw new FixtureError(`${dc.name}: attribute ${GLOBAL_STAMP} is made by the emulator when changeTracking is on`);
  }
  return { name: dc.name, tableNumber, keyName: dc.key, attributes: withGlobalStamp(attributes) };
}

function loadRows(t: Table, rows: Array<Record<string, unknown>>, seed: number): void {
  if (!Array.isArray(rows)) throw new FixtureError(`${t.name}: "rows" must be an array`);
  const rng = new Rng(seed ^ hashString(t.name));
  const baseTs = Date.UTC(2024, 0, 15, 8, 0, 0) + (mix32(seed) % 1000);
  rows.forEach((row, n) => {
    if (!row || typeof row !== 'object' || Array.isArray(row)) throw new FixtureError(`${t.name}: row ${n} is not an object`);
    const values: WireValue[] = t.attrs.map(() => null);
    for (const [name, v] of Object.entries(row)) {
      if (name === '__STAMP' || name === '__TIMESTAMP' || name === '__KEY' || name === GLOBAL_STAMP) continue;
      const a = t.attr(name);
      if (a < 0) throw new FixtureError(`${t.name}: row ${n}: unknown attribute "${name}"`);
      const c = coerceInput(t.attrs[a]!, v);
      if (!c.ok) throw new FixtureError(`${t.name}: row ${n}: ${c.reason}`);
      values[a] = c.value;
    }
    let key = values[t.keyAttr];
    if (key === null || key === undefined) key = row.__KEY === undefined ? null : String(row.__KEY);
    if (key === null) key = t.numericKey ? t.nextNumericKey() : rng.hex32();
    if (t.indexOfKey(String(key)) >= 0) throw new FixtureError(`${t.name}: duplicate key ${String(key)}`);
    values[t.keyAttr] = key;
    const stamp = row.__STAMP === undefined ? 1 : Number(row.__STAMP);
    if (!Number.isInteger(stamp) || stamp < 0) throw new FixtureError(`${t.name}: row ${n}: bad __STAMP`);
    const ts = row.__TIMESTAMP === undefined ? baseTs + n * 60_000 : Date.parse(String(row.__TIMESTAMP));
    if (Number.isNaN(ts)) throw new FixtureError(`${t.name}: row ${n}: bad __TIMESTAMP`);
    t.insert({ values, stamp, ts });
  });
}
