/**
 * Rendering entities and selections in 4D's JSON shapes (v19-era, as the legacy server answers).
 *
 * Entity: `__KEY` (string), `__TIMESTAMP` (ISO UTC ms), `__STAMP`, then attributes in catalog order.
 * Relations and media are deferred: `{"__deferred":{"uri":"/rest/T[KEY]","__KEY":"KEY"}}`,
 * `{"__deferred":{"uri":"/rest/T[KEY]/attr?$expand=attr"}}`, images with `"image":true`.
 * Envelope key order: __ENTITYSET (stored sets only), __DATACLASS, __entityModel, __GlobalStamp, __COUNT,
 * __FIRST, __ENTITIES, __SENT. `__GlobalStamp` is the datastore's current global stamp with change tracking on
 * (for every dataclass), else 0; a tracked table's `__GlobalStamp` attribute renders like any other attribute.
 */
import type { DataStore } from './datastore.js';
import { E } from './errors.js';
import type { Selection, Table } from './table.js';
import { JsonWriter } from './util/jsonwriter.js';
import { isoTimestamp } from './wire.js';

/** Which attributes to render; `expand` renders a relatedEntity inline with those attributes. */
export type Projection = ReadonlyArray<{ attr: number; expand?: Projection }>;

const allCache = new WeakMap<Table, Projection>();

export function allAttributes(table: Table): Projection {
  let p = allCache.get(table);
  if (!p) {
    p = table.attrs.map((_, attr) => ({ attr }));
    allCache.set(table, p);
  }
  return p;
}

/**
 * `$attributes=a,b,rel.c,rel.*`: plain names, and relatedEntity paths rendered inline. Unknown names →
 * 404 with 1500 + 1804 (as a real server answered).
 */
export function parseAttributes(table: Table, store: DataStore, spec: string): Projection {
  const paths = spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (paths.length === 0 || paths.includes('*')) return allAttributes(table);
  return buildProjection(
    table,
    store,
    paths.map((p) => p.split('.')),
    table.name,
  );
}

function buildProjection(table: Table, store: DataStore, paths: string[][], top: string): Projection {
  const order: number[] = [];
  const subs = new Map<number, string[][] | null>();
  for (const [head, ...rest] of paths) {
    const a = table.attr(head!);
    if (a < 0) throw E.badAttributeList(head!, table.name);
    if (!subs.has(a)) {
      order.push(a);
      subs.set(a, null);
    }
    if (rest.length === 0) continue;
    const def = table.attrs[a]!;
    if (def.kind !== 'relatedEntity') throw E.badAttributeList(`${head}.${rest.join('.')}`, top);
    const list = subs.get(a) ?? [];
    list.push(rest);
    subs.set(a, list);
  }
  return order.map((attr) => {
    const list = subs.get(attr);
    if (!list) return { attr };
    const target = store.table(table.attrs[attr]!.related!)!;
    const expand = list.some((p) => p.length === 1 && p[0] === '*') ? allAttributes(target) : buildProjection(target, store, list, top);
    return { attr, expand };
  });
}

/**
 * Renders straight into a JsonWriter (no intermediate objects): a 1,000-row page of Artikel must take well
 * under 20 ms. `entity()` parses the output back for the low-volume callers that need an object.
 */
export class Renderer {
  /** Per table: `,"<name>":` for every attribute. */
  private readonly names = new WeakMap<Table, string[]>();

  constructor(
    private readonly store: DataStore,
    /** The v17 quirk: `__TIMESTAMP` as a string with embedded quotes. */
    private readonly quotedTimestamps: () => boolean = () => false,
    /** Deferred URIs name entities `T[key]` (v19+), or `T(key)` (v17/v18, where brackets do not exist). */
    private readonly parenKeys: () => boolean = () => false,
  ) {}

  /** `/rest/T[key]`, or `/rest/T(key)` under v18. */
  ref(table: string, key: string): string {
    return this.parenKeys() ? `/rest/${table}(${key})` : `/rest/${table}[${key}]`;
  }

  private nameTexts(table: Table): string[] {
    let n = this.names.get(table);
    if (!n) {
      n = table.attrs.map((a) => `,${JSON.stringify(a.name)}:`);
      this.names.set(table, n);
    }
    return n;
  }

  /** Writes one entity; `head` is written first (e.g. `"__entityModel":"T",`, ASCII-safe JSON text). */
  writeEntity(w: JsonWriter, table: Table, row: number, proj: Projection, head = ''): void {
    const key = table.keyOf(row);
    const names = this.nameTexts(table);
    w.raw('{').raw(head).raw('"__KEY":').string(key);
    const ts = isoTimestamp(table.timestamp(row));
    w.raw(this.quotedTimestamps() ? `,"__TIMESTAMP":"\\"${ts}\\""` : `,"__TIMESTAMP":"${ts}"`);
    w.raw(',"__STAMP":').number(table.stamp(row));
    for (const { attr, expand } of proj) {
      const def = table.attrs[attr]!;
      w.raw(names[attr]!);
      if (def.kind === 'relatedEntities') {
        w.raw('{"__deferred":{"uri":')
          .string(`${this.ref(table.name, key)}/${def.name}?$expand=${def.name}`)
          .raw('}}');
        continue;
      }
      const v = table.get(row, attr);
      if (v === null) w.raw('null');
      else if (def.kind === 'relatedEntity') {
        const rk = String(v);
        const target = expand ? this.store.table(def.related!)! : null;
        const r = target ? target.indexOfKey(rk) : -1;
        if (target && r >= 0) this.writeEntity(w, target, r, expand!);
        else if (target) w.raw('null');
        else w.raw('{"__deferred":{"uri":').string(this.ref(def.related!, rk)).raw(',"__KEY":').string(rk).raw('}}');
      } else if (def.type === 'image') {
        w.raw('{"__deferred":{"uri":')
          .string(`${this.ref(table.name, key)}/${def.name}?$imageformat=best&$version=1&$expand=${def.name}`)
          .raw(',"image":true}}');
      } else if (def.type === 'blob') {
        w.raw('{"__deferred":{"uri":')
          .string(`${this.ref(table.name, key)}/${def.name}?$binary=true&$expand=${def.name}`)
          .raw('}}');
      } else w.value(v);
    }
    w.raw('}');
  }

  /** One entity as JSON bytes, `__entityModel` first (single-entity GET). */
  entityBytes(table: Table, row: number, proj: Projection): Buffer {
    const w = new JsonWriter(4096);
    this.writeEntity(w, table, row, proj, `"__entityModel":${JSON.stringify(table.name)},`);
    return w.bytes();
  }

  /** One entity as an object (`head` keys first). */
  entity(table: Table, row: number, proj: Projection, head?: Record<string, unknown>): Record<string, unknown> {
    const w = new JsonWriter(4096);
    const h = head
      ? Object.entries(head)
          .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)},`)
          .join('')
      : '';
    this.writeEntity(w, table, row, proj, h);
    return JSON.parse(w.toString()) as Record<string, unknown>;
  }

  /** A page of a selection. Rows deleted since a stored set was made render as `{"__KEY","__STAMP":0}`. */
  page(table: Table, sel: Selection, opts: { skip: number; top: number; proj: Projection; entitySetUri?: string }): Buffer {
    const count = sel.size;
    const first = Math.max(0, opts.skip);
    const end = opts.top < 0 ? count : Math.min(count, first + opts.top);
    const w = new JsonWriter(Math.min(64 * 1024 * 1024, Math.max(4096, (end - first) * 1536)));
    w.raw('{');
    if (opts.entitySetUri) w.raw('"__ENTITYSET":').string(opts.entitySetUri).raw(',');
    w.raw('"__DATACLASS":').string(table.name).raw(',"__entityModel":').string(table.name);
    w.raw(',"__GlobalStamp":')
      .number(this.store.clock?.current ?? 0)
      .raw(',"__COUNT":')
      .number(count)
      .raw(',"__FIRST":')
      .number(first)
      .raw(',"__ENTITIES":[');
    for (let p = first; p < end; p++) {
      if (p > first) w.raw(',');
      const row = sel.at(p);
      if (table.isLive(row)) this.writeEntity(w, table, row, opts.proj);
      else w.raw('{"__KEY":').string(table.keyOf(row)).raw(',"__STAMP":0}');
    }
    w.raw('],"__SENT":')
      .number(Math.max(0, end - first))
      .raw('}');
    return w.bytes();
  }
}
