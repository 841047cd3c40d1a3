/**
 * The control API: in-process (`RunningEmulator.control`) and over HTTP under `/__emulator/`. It never creates
 * sessions and is not counted as REST traffic. JSON in, JSON out; errors are `{"error": "..."}` with 400/404.
 *
 *   GET    stats | sessions | tables | row/{table}/{key}
 *   POST   reset | options | expire-sessions | occupy {count} | release-occupied | faults {queue}
 *          | mutate {table, update?, insert?, delete?, seed?, dates?: 'now'|'keep'} | row {table, key, set}
 *          | before-update {table, key, set} | churn {tables, rate, mix?, dates?, seed?}
 *   GET    changes?since=<seq>   (every change made here: mutate, row, before-update, churn)
 *   DELETE faults | churn
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EmulatorCore } from './core.js';
import type { WireValue } from './model.js';
import { OptionError } from './options.js';
import { allAttributes } from './render.js';
import type { Table } from './table.js';
import type { ChangeRecord, ChurnRequest, EmulatorControl, MutateRequest, MutateResult, QueuedFault, RenderedEntity, RuntimeOptionsPatch } from './types.js';
import { Rng } from './util/random.js';
import { applyAttributes, createRow, newKey, saveRow, type ChangeContext } from './update.js';

export class ControlError extends Error {
  override name = 'ControlError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const ERP_USERS = ['Müller', 'Schäfer', 'Tropp', 'König'];
const TEXT_FIELDS = ['Bezeichnung', 'Firma', 'Text', 'Name'];
const EDIT_MARK = / \(geändert \d+\)$/;

function nonNegInt(v: unknown, name: string): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ControlError(400, `${name} must be a non-negative integer`);
  return v;
}

/** Fields an ERP user would edit: a text field and a number field (not the key, not audit fields). */
function editableFields(table: Table): { text: number; num: number } {
  const candidates = table.attrs
    .map((a, i) => ({ a, i }))
    .filter(({ a, i }) => a.kind === 'storage' && i !== table.keyAttr && !/^(created|modified)_/.test(a.name) && !a.name.endsWith('_'));
  const text = candidates.find(({ a }) => a.type === 'string' && TEXT_FIELDS.includes(a.name)) ?? candidates.find(({ a }) => a.type === 'string');
  const num = candidates.find(({ a }) => a.type === 'number');
  return { text: text?.i ?? -1, num: num?.i ?? -1 };
}

/** `[attr, value]` of row `row`'s created_date/created_time/created_name (those the table has). */
function createdFields(table: Table, row: number): Array<[number, WireValue]> {
  return ['created_date', 'created_time', 'created_name']
    .map((name) => table.attr(name))
    .filter((a) => a >= 0)
    .map((a): [number, WireValue] => [a, table.get(row, a)]);
}

export class Control implements EmulatorControl {
  private mutations = 0;
  private edits = 0;
  private changeLog: ChangeRecord[] = [];
  private churn?: { timer: NodeJS.Timeout; made: number };

  constructor(private readonly core: EmulatorCore) {}

  private table(name: unknown): Table {
    const t = typeof name === 'string' ? this.core.store.table(name) : undefined;
    if (!t) throw new ControlError(404, `unknown table ${JSON.stringify(name)}`);
    return t;
  }

  private row(t: Table, key: unknown): number {
    const row = typeof key === 'string' || typeof key === 'number' ? t.indexOfKey(String(key)) : -1;
    if (row < 0) throw new ControlError(404, `no row ${JSON.stringify(key)} in ${t.name}`);
    return row;
  }

  private render(t: Table, row: number): RenderedEntity {
    return this.core.renderer.entity(t, row, allAttributes(t), { __entityModel: t.name });
  }

  stats() {
    return this.core.stats();
  }

  sessions() {
    return this.core.sessions.summaries();
  }

  reset(): void {
    this.stopChurn();
    this.core.reset();
    this.mutations = 0;
    this.edits = 0;
    this.changeLog = [];
  }

  private record(table: string, kind: ChangeRecord['kind'], keys: string[]): void {
    for (const key of keys) this.changeLog.push({ seq: this.changeLog.length + 1, at: Date.now(), table, kind, key });
  }

  changes(since = 0): ChangeRecord[] {
    return this.changeLog.slice(Math.max(0, since));
  }

  startChurn(req: ChurnRequest): void {
    if (!req || !Array.isArray(req.tables) || req.tables.length === 0) throw new ControlError(400, 'tables must be a non-empty array');
    const tables = req.tables.map((name) => this.table(name).name);
    const rate = Number(req.rate);
    if (!(rate > 0 && rate <= 1000)) throw new ControlError(400, 'rate must be a number of changes per second from 1 to 1000');
    const mix = { update: req.mix?.update ?? 0.6, insert: req.mix?.insert ?? 0.25, delete: req.mix?.delete ?? 0.15 };
    const total = mix.update + mix.insert + mix.delete;
    if (!(total > 0)) throw new ControlError(400, 'mix must have a positive share');
    this.stopChurn();
    const rng = new Rng(req.seed ?? this.core.initial.seed * 31 + 7);
    const started = Date.now();
    const churn = { made: 0, timer: undefined as unknown as NodeJS.Timeout };
    // A tick every 10 ms (or slower for low rates) makes the changes due by then: the rate holds even when ticks run late.
    churn.timer = setInterval(
      () => {
        const due = Math.floor(((Date.now() - started) / 1000) * rate) - churn.made;
        for (let n = 0; n < due; n++) {
          const table = tables[rng.int(tables.length)]!;
          const size = this.core.store.table(table)!.size;
          const r = (rng.int(1_000_000) / 1_000_000) * total;
          // Never empty a table: deletions become insertions below ten rows.
          const kind = r < mix.update && size > 0 ? 'update' : r < mix.update + mix.insert || size < 10 ? 'insert' : 'delete';
          this.mutate({ table, [kind]: 1, dates: req.dates, seed: rng.int(2 ** 30) });
          churn.made++;
        }
      },
      Math.max(10, Math.min(1000 / rate, 100)),
    );
    churn.timer.unref();
    this.churn = churn;
  }

  stopChurn(): number {
    if (!this.churn) return 0;
    clearInterval(this.churn.timer);
    const made = this.churn.made;
    this.churn = undefined;
    return made;
  }

  setOptions(patch: RuntimeOptionsPatch): void {
    try {
      this.core.setOptions(patch);
    } catch (e) {
      if (e instanceof OptionError) throw new ControlError(400, e.message);
      throw e;
    }
  }

  expireSessions(): number {
    return this.core.sessions.expireAll();
  }

  occupy(count: number): number {
    return this.core.occupy(nonNegInt(count, 'count'));
  }

  releaseOccupied(): number {
    return this.core.sessions.releaseOccupied();
  }

  queueFaults(queue: QueuedFault[]): number {
    try {
      return this.core.faults.enqueue(queue);
    } catch (e) {
      if (e instanceof OptionError) throw new ControlError(400, e.message);
      throw e;
    }
  }

  clearFaults(): void {
    this.core.faults.clear();
  }

  /**
   * Changes rows like ERP users would. Rows are picked with a seeded RNG (`seed`, else a counter), updates first,
   * deletions among the other rows, insertions last (copies of an existing row with a new key). `dates: 'keep'`
   * changes data behind the audit fields' back: updates keep `modified_*`, insertions carry the `created_*` of
   * the first live row (as picked before any change) and null `modified_*`. `__STAMP` and `__GlobalStamp` move
   * either way.
   */
  mutate(req: MutateRequest): MutateResult {
    if (!req || typeof req !== 'object') throw new ControlError(400, 'body must be an object');
    const t = this.table(req.table);
    const nUpdate = nonNegInt(req.update, 'update');
    const nInsert = nonNegInt(req.insert, 'insert');
    const nDelete = nonNegInt(req.delete, 'delete');
    const dates = req.dates ?? 'now';
    if (dates !== 'now' && dates !== 'keep') throw new ControlError(400, 'dates must be "now" or "keep"');
    if (nUpdate + nDelete > t.size) throw new ControlError(400, `${t.name} has only ${t.size} rows`);
    const seed = req.seed === undefined ? this.core.initial.seed * 7919 + ++this.mutations : nonNegInt(req.seed, 'seed');
    const rng = new Rng(seed);
    const live = t.all();
    const picked = new Set<number>();
    const pick = () => {
      for (;;) {
        const row = live.at(rng.int(live.size));
        if (!picked.has(row)) {
          picked.add(row);
          return row;
        }
      }
    };
    const now = Date.now();
    const ctx: ChangeContext = { now, userName: ERP_USERS[rng.int(ERP_USERS.length)]!, dates };
    const { text, num } = editableFields(t);
    const oldCreated = dates === 'keep' && live.size > 0 ? createdFields(t, live.at(0)) : [];
    const out: MutateResult = { updated: [], inserted: [], deleted: [] };
    const toUpdate = Array.from({ length: nUpdate }, pick);
    const toDelete = Array.from({ length: nDelete }, pick);
    for (const row of toUpdate) {
      const values = t.materialize(row).values;
      if (text >= 0) values[text] = `${String(values[text] ?? '').replace(EDIT_MARK, '')} (geändert ${++this.edits})`;
      if (num >= 0) values[num] = Math.round(((Number(values[num]) || 0) + 1 + rng.int(100) / 100) * 100) / 100;
      saveRow(t, row, values, ctx, true);
      out.updated.push(t.keyOf(row));
    }
    for (let k = 0; k < nInsert; k++) {
      const values: WireValue[] = t.size > 0 ? t.materialize(live.at(rng.int(live.size))).values : t.attrs.map(() => null);
      values[t.keyAttr] = newKey(t);
      for (const [a, v] of oldCreated) values[a] = v;
      out.inserted.push(t.keyOf(createRow(t, values, ctx)));
    }
    for (const row of toDelete) {
      out.deleted.push(t.keyOf(row));
      t.remove(row);
    }
    this.record(t.name, 'updated', out.updated);
    this.record(t.name, 'created', out.inserted);
    this.record(t.name, 'deleted', out.deleted);
    return out;
  }

  /** Validates `set` for row `row` and returns the values it would save. */
  private changed(t: Table, row: number, set: Record<string, unknown>): WireValue[] {
    if (!set || typeof set !== 'object' || Array.isArray(set)) throw new ControlError(400, '"set" must be an object');
    const values = t.materialize(row).values;
    const errors = applyAttributes(t, values, set);
    if (errors.length > 0) throw new ControlError(400, errors.map((e) => e.message).join('; '));
    if (t.normalizeKey(String(values[t.keyAttr])) !== t.normalizeKey(t.keyOf(row))) throw new ControlError(400, 'the key cannot change');
    return values;
  }

  /** Changes one row as another user would: always a save (stamp + 1, modified_* = now). */
  setRow(table: string, key: string, set: Record<string, unknown>): RenderedEntity {
    const t = this.table(table);
    const row = this.row(t, key);
    saveRow(t, row, this.changed(t, row, set), { now: Date.now(), userName: ERP_USERS[0]! }, true);
    this.record(t.name, 'updated', [t.keyOf(row)]);
    return this.render(t, row);
  }

  beforeUpdate(table: string, key: string, set: Record<string, unknown>): number {
    const t = this.table(table);
    this.changed(t, this.row(t, key), set); // validate now, apply later
    return this.core.addBeforeUpdate(t, String(key), () => {
      const row = t.indexOfKey(String(key));
      if (row >= 0) {
        saveRow(t, row, this.changed(t, row, set), { now: Date.now(), userName: ERP_USERS[0]! }, true);
        this.record(t.name, 'updated', [t.keyOf(row)]);
      }
    });
  }

  getRow(table: string, key: string): RenderedEntity | null {
    const t = this.table(table);
    const row = t.indexOfKey(String(key));
    return row < 0 ? null : this.render(t, row);
  }

  tables(): Array<{ name: string; count: number }> {
    return this.core.store.tables.map((t) => ({ name: t.name, count: t.size }));
  }
}

// ---- HTTP ------------------------------------------------------------------------------------------------------

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new ControlError(400, 'body is not valid JSON');
  }
}

function obj(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ControlError(400, 'body must be a JSON object');
  return body as Record<string, unknown>;
}

async function route(control: Control, req: IncomingMessage, path: string): Promise<unknown> {
  const m = req.method ?? 'GET';
  const query = new URL(req.url ?? '/', 'http://emulator').searchParams;
  const rowPath = /^row\/([^/]+)\/(.+)$/.exec(path);
  if (m === 'GET' && rowPath) {
    const [table, key] = [decodeURIComponent(rowPath[1]!), decodeURIComponent(rowPath[2]!)];
    const row = control.getRow(table, key);
    if (!row) throw new ControlError(404, `no row ${key} in ${table}`);
    return row;
  }
  const op = `${m} ${path}`;
  switch (op) {
    case 'GET stats':
      return control.stats();
    case 'GET sessions':
      return control.sessions();
    case 'GET tables':
      return control.tables();
    case 'GET changes':
      return control.changes(Number(query.get('since') ?? 0) || 0);
    case 'POST churn':
      control.startChurn(obj(await readJson(req)) as unknown as ChurnRequest);
      return { ok: true };
    case 'DELETE churn':
      return { made: control.stopChurn() };
    case 'POST reset':
      control.reset();
      return { ok: true };
    case 'POST options':
      control.setOptions(obj(await readJson(req)) as RuntimeOptionsPatch);
      return { ok: true };
    case 'POST expire-sessions':
      return { expired: control.expireSessions() };
    case 'POST occupy':
      return { occupied: control.occupy(obj(await readJson(req)).count as number) };
    case 'POST release-occupied':
      return { released: control.releaseOccupied() };
    case 'POST faults':
      return { queued: control.queueFaults(obj(await readJson(req)).queue as QueuedFault[]) };
    case 'DELETE faults':
      control.clearFaults();
      return { ok: true };
    case 'POST mutate':
      return control.mutate(obj(await readJson(req)) as unknown as MutateRequest);
    case 'POST row': {
      const b = obj(await readJson(req));
      return control.setRow(b.table as string, b.key as string, b.set as Record<string, unknown>);
    }
    case 'POST before-update': {
      const b = obj(await readJson(req));
      return { pending: control.beforeUpdate(b.table as string, b.key as string, b.set as Record<string, unknown>) };
    }
    default:
      throw new ControlError(404, `unknown control operation ${op}`);
  }
}

/** Serves `/__emulator/<path>`. */
export async function handleControlHttp(control: Control, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  let status = 200;
  let body: unknown;
  try {
    body = await route(control, req, path);
  } catch (e) {
    status = e instanceof ControlError ? e.status : 500;
    body = { error: (e as Error).message };
  }
  const buf = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': buf.length });
  res.end(buf);
}
