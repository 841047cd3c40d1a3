/**
 * Writing entities: `POST /rest/{dataClass}?$method=update` and the save primitives the control API shares.
 *
 * Every save behaves like the ERP's save trigger: `__STAMP` + 1, `__TIMESTAMP` = now, and the table's
 * `modified_date`/`modified_time`/`modified_name` = now / the session's user (server local time = UTC).
 * A save that changes nothing is skipped (stamp unchanged), as 4D does. `dates: 'keep'` (control API mutate)
 * leaves the audit fields alone. In a tracked table every save and creation also takes the next global stamp
 * (`__GlobalStamp`, set by Table.write/insert; `__`-names are never taken from input).
 */
import { E, fourD, type FourDError } from './errors.js';
import type { WireValue } from './model.js';
import { allAttributes, type Renderer } from './render.js';
import type { Table } from './table.js';
import { randomHexId } from './util/random.js';
import { coerceInput, sameValue } from './values.js';
import { dateTimeParts } from './wire.js';

export interface ChangeContext {
  now: number;
  userName: string;
  /**
   * 'now' (default): saves set `modified_*` = now/user, creations `created_*`. 'keep': saves leave `modified_*`
   * and creations leave `created_*` as given (a script or import bypassing the audit fields).
   */
  dates?: 'now' | 'keep';
}

function setIfPresent(table: Table, values: WireValue[], name: string, v: WireValue): void {
  const a = table.attr(name);
  if (a >= 0) values[a] = v;
}

/**
 * Saves `values` as row `row`. Returns false (and saves nothing) when nothing changed, unless `force`
 * (another user's save of the same values still bumps the stamp).
 */
export function saveRow(table: Table, row: number, values: WireValue[], ctx: ChangeContext, force = false): boolean {
  const current = table.materialize(row);
  if (!force && values.every((v, a) => sameValue(v, current.values[a]!))) return false;
  if (ctx.dates !== 'keep') {
    const { date, time } = dateTimeParts(ctx.now);
    setIfPresent(table, values, 'modified_date', date);
    setIfPresent(table, values, 'modified_time', time);
    setIfPresent(table, values, 'modified_name', ctx.userName);
  }
  table.write(row, { values, stamp: current.stamp + 1, ts: ctx.now });
  return true;
}

/**
 * Inserts a new row (stamp 1, created_* = now unless dates 'keep', modified_* = null). The key must be set and
 * unique.
 */
export function createRow(table: Table, values: WireValue[], ctx: ChangeContext): number {
  if (ctx.dates !== 'keep') {
    const { date, time } = dateTimeParts(ctx.now);
    setIfPresent(table, values, 'created_date', date);
    setIfPresent(table, values, 'created_time', time);
    setIfPresent(table, values, 'created_name', ctx.userName);
  }
  setIfPresent(table, values, 'modified_date', null);
  setIfPresent(table, values, 'modified_time', null);
  setIfPresent(table, values, 'modified_name', null);
  return table.insert({ values, stamp: 1, ts: ctx.now });
}

/** A fresh key: max + 1 for numeric keys, a random 32-hex UUID otherwise. */
export function newKey(table: Table): string {
  return table.numericKey ? table.nextNumericKey() : randomHexId();
}

/**
 * Applies `{attr: value}` (wire encoding) onto `values`. Unknown attributes → 1500, unusable values → 1280;
 * relatedEntities attributes are read-only and ignored. Returns the errors (empty = fine).
 */
export function applyAttributes(table: Table, values: WireValue[], input: Record<string, unknown>): FourDError[] {
  const errors: FourDError[] = [];
  for (const [name, v] of Object.entries(input)) {
    if (name.startsWith('__') || name === 'uri') continue; // __KEY, __STAMP, __TIMESTAMP... are not attributes
    const a = table.attr(name);
    if (a < 0) {
      errors.push(fourD(1500, `The "${name}" attribute cannot be found in the "${table.name}" dataclass`));
      continue;
    }
    if (table.attrs[a]!.kind === 'relatedEntities') continue;
    const c = coerceInput(table.attrs[a]!, v);
    if (!c.ok) errors.push(fourD(1280, c.reason));
    else values[a] = c.value;
  }
  return errors;
}

// ---- $method=update --------------------------------------------------------------------------------------------

export interface UpdateOutcome {
  status: number;
  body: unknown;
  /** Entities saved (created or changed). */
  saved: number;
  conflicts: number;
}

type ItemResult =
  | { ok: true; out: Record<string, unknown>; saved: boolean; row: number; created: boolean }
  | { ok: false; out: Record<string, unknown>; conflict: boolean; row: number | null };

const status = (code: number, text: string) => ({ status: code, statusText: text, success: false });

export class Updater {
  constructor(
    private readonly renderer: Renderer,
    private readonly databaseName: string,
    /** Called before an item with a `__KEY` is processed (the control API's before-update hooks). */
    private readonly beforeItem: (table: Table, key: string) => void = () => {},
  ) {}

  private rendered(table: Table, row: number): Record<string, unknown> {
    return this.renderer.entity(table, row, allAttributes(table));
  }

  private withUri(table: Table, row: number): Record<string, unknown> {
    const e = this.rendered(table, row);
    return { __KEY: e.__KEY, __TIMESTAMP: e.__TIMESTAMP, __STAMP: e.__STAMP, uri: this.renderer.ref(table.name, String(e.__KEY)), ...e };
  }

  private failed(table: Table, row: number | null, code: ReturnType<typeof status>, errors: FourDError[], conflict = false): ItemResult {
    const entity = row === null ? {} : this.rendered(table, row);
    return { ok: false, out: { __STATUS: code, ...entity, __ERROR: errors }, conflict, row };
  }

  private item(table: Table, input: unknown, ctx: ChangeContext): ItemResult {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      return this.failed(table, null, status(4, 'Other error'), [fourD(1517, 'The entity cannot be saved: each item must be a JSON object')]);
    }
    const o = input as Record<string, unknown>;
    if (o.__KEY === undefined || o.__KEY === null) return this.create(table, o, ctx);
    const key = String(o.__KEY);
    const row = table.indexOfKey(key);
    if (row < 0) {
      return {
        ok: false,
        conflict: false,
        row: null,
        out: {
          __KEY: key,
          __STATUS: status(5, 'Entity does not exist anymore'),
          __ERROR: [fourD(1542, `Cannot find entity with "${key}" key in the "${table.name}" dataclass`)],
        },
      };
    }
    // [SRC] a __KEY without __STAMP is checked as stamp 1
    const given = o.__STAMP === undefined ? 1 : Number(o.__STAMP);
    if (given !== table.stamp(row)) {
      return this.failed(
        table,
        row,
        status(2, 'Stamp has changed'),
        [
          fourD(1263, `Given stamp does not match current one for record# ${row} of table ${table.name}`),
          fourD(1046, `Cannot save record ${row} in table ${table.name} of database ${this.databaseName}`),
          fourD(1517, `The entity# ${key} in the "${table.name}" dataclass cannot be saved`),
        ],
        true,
      );
    }
    const values = table.materialize(row).values;
    const errors = applyAttributes(table, values, o);
    if (errors.length === 0 && table.normalizeKey(String(values[table.keyAttr])) !== table.normalizeKey(key)) {
      errors.push(fourD(1517, `The entity# ${key} in the "${table.name}" dataclass cannot be saved: its primary key cannot change`));
    }
    if (errors.length > 0) {
      return this.failed(table, row, status(4, 'Other error'), [...errors, fourD(1517, `The entity# ${key} in the "${table.name}" dataclass cannot be saved`)]);
    }
    const saved = saveRow(table, row, values, ctx);
    return { ok: true, out: this.withUri(table, row), saved, row, created: false };
  }

  private create(table: Table, o: Record<string, unknown>, ctx: ChangeContext): ItemResult {
    const values: WireValue[] = table.attrs.map(() => null);
    const errors = applyAttributes(table, values, o);
    const cannotCreate = fourD(1534, `The new entity in the "${table.name}" dataclass cannot be saved`);
    if (errors.length > 0) return this.failed(table, null, status(4, 'Other error'), [...errors, cannotCreate]);
    if (values[table.keyAttr] === null) values[table.keyAttr] = newKey(table);
    const key = String(values[table.keyAttr]);
    if (table.indexOfKey(key) >= 0) {
      return this.failed(table, null, status(4, 'Other error'), [fourD(1545, `Primary key ${key} already exists`), cannotCreate]);
    }
    const row = createRow(table, values, ctx);
    return { ok: true, out: this.withUri(table, row), saved: true, row, created: true };
  }

  /**
   * Processes an update request body (raw text). One object → the entity; an array → `{"__ENTITIES":[...]}`.
   * HTTP 200 when every item succeeded, 500 otherwise (the body still has every item). With `$atomic=true`
   * any failure rolls everything back; the other items then carry a 1517 error and `__STATUS` 4.
   */
  process(table: Table, rawBody: string, atomic: boolean, ctx: ChangeContext): UpdateOutcome {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawBody);
    } catch (e) {
      throw E.badJsonBody((e as Error).message);
    }
    const items = Array.isArray(parsed) ? parsed : [parsed];
    // other users' changes land first (and outside an $atomic transaction)
    for (const it of items) {
      const k = (it as { __KEY?: unknown } | null)?.__KEY;
      if (k !== undefined && k !== null) this.beforeItem(table, String(k));
    }
    if (atomic) table.begin();
    let results = items.map((it) => this.item(table, it, ctx));
    const allOk = results.every((r) => r.ok);
    if (atomic) {
      if (allOk) table.commit();
      else {
        table.rollback();
        results = results.map((r) => {
          if (!r.ok) return r;
          const rolledBack = fourD(1517, `The entity in the "${table.name}" dataclass was not saved: the atomic request was rolled back`);
          return this.failed(table, r.created ? null : r.row, status(4, 'Other error'), [rolledBack]);
        });
      }
    }
    const saved = results.filter((r) => r.ok && r.saved).length;
    const conflicts = results.filter((r) => !r.ok && r.conflict).length;
    const outs = results.map((r) => r.out);
    return {
      status: allOk ? 200 : 500,
      body: Array.isArray(parsed) ? { __ENTITIES: outs } : outs[0],
      saved,
      conflicts,
    };
  }
}
