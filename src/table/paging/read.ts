/**
 * Reading a whole table, page by page, in order, with bounded memory.
 *
 * Stable paging: the selection is stored on the server as an entity set (a snapshot: rows are
 * neither skipped nor duplicated while the table changes) ordered by the primary key (or
 * --order-by plus the key as tie-breaker). Pages of the set are fetched with bounded concurrency
 * and handed out strictly in order. Every page request repeats the filter and order as
 * $savedfilter/$savedorderby, so when the set is gone (expired, or the server replaced our
 * session) 4D recreates it under the same id and the export carries on from the page it was on.
 * A server that does not return an entity set is paged with $skip/$top over the same order.
 */
import { FilterNotAppliedError, PageNotAsAskedError, SelectionChangedError } from '../../errors/index.js';
import { EntitySetGoneError, envelopeOf, type RestClient } from '../../rest/index.js';
import type { Entity, Envelope, PageQuery } from '../../rest/types.js';
import type { Logger } from '../../log/index.js';
import { serverMessage } from '../../protocol/errors.js';
import { parseExactJson, roundedJson } from '../../transport/json.js';
import { integerValue } from '../convert.js';
import type { EncodedRows, PageEncoder } from '../output/writer.js';
import { rowTranscoder } from '../output/transcode.js';
import type { ExportPlan } from '../plan/plan.js';
import { describeValues, type RawRow } from '../verify.js';
import { PagesInFlight } from './concurrency.js';
import { PagePool, ScanLayout, ScannedPage, scanPage } from './scan.js';

export interface ExportProgress {
  rows: number;
  total?: number;
}

export interface ExportSummary {
  rows: number;
  /** __COUNT at the start (rows in the selection, before --skip/--limit). */
  serverCount: number;
  /** Rows we expected to write given skip/limit. */
  expected: number;
  /** Rows deleted on the server during the export (placeholders in the entity set). */
  vanished: number;
  /** Rows the server sent that the filter excludes (only with onMismatch 'count'). */
  outsideFilter: number;
  /** The envelope's `__GlobalStamp` on the first page (4D data change tracking; 0 when off). */
  globalStamp: number;
  usedEntitySet: boolean;
  /** `__KEY` of the last row written (set before the page's rows are handed out). */
  lastKey?: string;
  /** Rows the file already held from an interrupted run this one resumed (../output/resume.ts). */
  resumed?: number;
}

function isPlaceholder(entity: Entity): boolean {
  // A row deleted after the entity set was made comes back as {__KEY, __STAMP: 0}.
  return entity.__STAMP === 0 && Object.keys(entity).every((k) => k.startsWith('__'));
}

/** One entity as a row of the plan's columns, converted. */
export function toRow(plan: ExportPlan, entity: Entity): unknown[] {
  // Own attributes only: an absent `toString` or `constructor` is absent, not Object.prototype's.
  // Integer attributes keep a long64 beyond 2^53 exact (a bigint of parseExactJson); any other value
  // is what JSON.parse reads, as the page transcoder writes it.
  return plan.columns.map((c) => {
    const value = Object.hasOwn(entity, c.name) ? entity[c.name] : undefined;
    return c.convert(c.convert === integerValue ? value : roundedJson(value));
  });
}

/** Rows an export of `count` matching rows writes, after --skip and --limit. */
function rowsAfterSkipLimit(count: number, options: ExportPlan['options']): number {
  const available = Math.max(0, count - options.skip);
  return options.limit !== undefined ? Math.min(options.limit, available) : available;
}

export interface ExportHooks {
  logger: Logger;
  onStart?: (total: number) => void;
  onPage?: (p: ExportProgress) => void;
  summary?: Partial<ExportSummary>;
}

/** What the paging loop needs of a page, however it was read. */
interface PageView {
  readonly envelope: Pick<Envelope, '__COUNT' | '__ENTITYSET' | '__GlobalStamp' | '__FIRST'> & { __ERROR?: unknown };
  readonly size: number;
  isPlaceholder(i: number): boolean;
  /** The entity's wire values (at least those a row check reads). */
  raw(i: number): RawRow;
  /** The entity's `__KEY` as text. */
  key(i: number): string | undefined;
}

/** A page read with JSON.parse: the reference path. */
class ObjectPage implements PageView {
  constructor(readonly envelope: Envelope) {}

  get size(): number {
    return this.envelope.__ENTITIES.length;
  }

  isPlaceholder(i: number): boolean {
    return isPlaceholder(this.envelope.__ENTITIES[i]!);
  }

  raw(i: number): Entity {
    return this.envelope.__ENTITIES[i]!;
  }

  key(i: number): string | undefined {
    const key = this.envelope.__ENTITIES[i]!.__KEY;
    return key === undefined || key === null ? undefined : String(key);
  }
}

/** A page as read, with what the answer took: its body's bytes and the retries it needed. */
interface Read<P extends PageView> {
  page: P;
  bytes: number;
  retries: number;
}

type ReadPage<P extends PageView> = (table: string, query: PageQuery) => Promise<Read<P>>;

/**
 * Pages read as bytes into a pool and scanned (./scan.ts) instead of parsed; a page the scanner
 * leaves alone is parsed with JSON.parse as before (an ObjectPage). `done` logs how many were which.
 */
function scannedPages(client: RestClient, plan: ExportPlan, logger: Logger) {
  const layout = new ScanLayout(
    plan.columns.map((c) => c.name),
    [...(plan.query.check?.fields ?? []), '__KEY'],
  );
  const pool = new PagePool();
  const body = {
    decode: (bytes: Buffer) => scanPage(bytes, layout, pool) ?? parseExactJson(bytes.toString()),
    bodyBuffer: (length: number) => pool.body(length),
  };
  let scanned = 0;
  let parsed = 0;
  const read: ReadPage<ObjectPage | ScannedPage> = async (table, query) => {
    const response = await client.pageWith(table, query, body);
    const json = response.json;
    return { page: json instanceof ScannedPage ? json : new ObjectPage(envelopeOf(json, table, query)), bytes: response.bytes, retries: response.retries };
  };
  /** The page's written entities, by `fast` from its bytes, or by `reference` from its parsed entities. */
  const each = (page: ObjectPage | ScannedPage, taken: number[], fast: (page: ScannedPage, i: number) => void, reference: (row: unknown[]) => void) => {
    if (page instanceof ScannedPage) {
      scanned++;
      for (const i of taken) fast(page, i);
      page.release();
    } else {
      parsed++;
      for (const i of taken) reference(toRow(plan, page.raw(i)));
    }
  };
  const done = () => logger.debug(`${scanned} page(s) encoded from their bytes, ${parsed} parsed with JSON.parse`);
  return { read, each, done };
}

/**
 * Rows in order, one page at a time (each yielded array is one page). The rows are built from the
 * page bytes (../output/transcode.ts rowTranscoder); `reference` parses each page with JSON.parse instead.
 */
export async function* exportRows(client: RestClient, plan: ExportPlan, hooks: ExportHooks, { reference = false } = {}): AsyncGenerator<unknown[][]> {
  if (reference) {
    const read: ReadPage<ObjectPage> = async (table, query) => {
      const response = await client.pageWith(table, query, { decode: (bytes: Buffer) => parseExactJson(bytes.toString()) });
      return { page: new ObjectPage(envelopeOf(response.json, table, query)), bytes: response.bytes, retries: response.retries };
    };
    yield* exportPages(client, plan, hooks, read, (page, taken) => taken.map((i) => toRow(plan, page.raw(i))));
    return;
  }
  const pages = scannedPages(client, plan, hooks.logger);
  const rowOf = rowTranscoder(plan.columns);
  yield* exportPages(client, plan, hooks, pages.read, (page, taken) => {
    const rows: unknown[][] = [];
    pages.each(
      page,
      taken,
      (p, i) => rows.push(rowOf(p, i)),
      (row) => rows.push(row),
    );
    return rows;
  });
  pages.done();
}

/**
 * The same rows, encoded for the output by `encoder` (one chunk per page) straight from the page
 * bytes (../output/transcode.ts); a page the scanner leaves alone is encoded row by row from its values.
 */
export async function* exportEncoded(client: RestClient, plan: ExportPlan, encoder: PageEncoder, hooks: ExportHooks): AsyncGenerator<EncodedRows> {
  const pages = scannedPages(client, plan, hooks.logger);
  yield* exportPages(client, plan, hooks, pages.read, (page, taken) => {
    pages.each(
      page,
      taken,
      (p, i) => encoder.entity(p, i),
      (row) => encoder.row(row),
    );
    return encoder.take();
  });
  pages.done();
}

/** Pages in order; `collect` makes what is yielded of the entities of a page that are written. */
async function* exportPages<P extends PageView, T>(
  client: RestClient,
  plan: ExportPlan,
  hooks: ExportHooks,
  read: ReadPage<P>,
  collect: (page: P, taken: number[]) => T,
): AsyncGenerator<T> {
  const { options, query } = plan;
  const table = plan.dataClass.name;
  const pageSize = options.pageSize;
  const base: PageQuery = { filter: query.filter, params: query.params, orderBy: query.orderBy, attributes: query.attributes };
  let useSet = options.entitySet !== false;
  // A server that ignores $filter must not turn into an unfiltered export (checked once per server).
  if (query.filter) await client.ensureFiltersApplied(plan.dataClass, query.rowsChecked === true && plan.query.check !== undefined);

  // First page: creates the entity set (when supported) and tells us the count.
  const firstTop = options.limit !== undefined ? Math.min(pageSize, options.limit) : pageSize;
  const readFirst = (entitySet: boolean) =>
    read(table, { ...base, skip: options.skip, top: firstTop, entitySet }).then((r) => asAsked(r, table, options.skip, firstTop));
  let { page: first } = await readFirst(useSet && options.entitySet !== 'auto');
  if (options.entitySet === 'auto') {
    // Everything came in the first page (as many rows as the same answer counts): no set needed.
    // Else, or when the server sent fewer than it counted, start over in a set, whose pages are
    // checked against its count: never a silently short read.
    const rest = first.envelope.__COUNT - (options.skip ?? 0);
    if (rest <= firstTop && first.size >= rest) useSet = false;
    else ({ page: first } = await readFirst(true));
  }
  const count = first.envelope.__COUNT;
  let setId = useSet ? entitySetId(first.envelope) : undefined;
  if (useSet && !setId)
    hooks.logger.info(`the server returned no entity set for ${table}; paging with $skip/$top ordered by ${query.orderBy ?? 'natural order'}`);
  const expected = rowsAfterSkipLimit(count, options);
  hooks.onStart?.(expected);
  const summary = hooks.summary ?? {};
  Object.assign(summary, {
    serverCount: count,
    expected,
    rows: 0,
    vanished: 0,
    outsideFilter: 0,
    globalStamp: Number(first.envelope.__GlobalStamp ?? 0) || 0,
    usedEntitySet: Boolean(setId),
  });

  const check = query.check;
  let written = 0;
  /** The entities of a page to write: placeholders of deleted rows left out, every row checked. */
  const emit = (page: P, room: number): number[] => {
    const taken: number[] = [];
    for (let i = 0; i < page.size; i++) {
      if (taken.length >= room) break;
      if (page.isPlaceholder(i)) {
        summary.vanished = (summary.vanished ?? 0) + 1;
        continue;
      }
      if (check) {
        const entity = page.raw(i);
        if (check.test(entity) === false) {
          if (query.onMismatch === 'count') {
            summary.outsideFilter = (summary.outsideFilter ?? 0) + 1;
          } else {
            throw new FilterNotAppliedError(
              `the server did not apply the filter ${check.text}: it sent a row of ${table} with ${describeValues(check, entity)}; stopped before writing it`,
              { hint: "run 'legacy doctor --probe' and report its output; an unfiltered export would be wrong data" },
            );
          }
        }
      }
      taken.push(i);
    }
    return taken;
  };

  // A stored set keeps its __COUNT (deleted rows stay as placeholders). Another count means the
  // server lost the set and rebuilt a different selection: positions no longer line up.
  const sameSelection = (page: P, how: string): P => {
    if (page.envelope.__COUNT !== count) {
      throw new SelectionChangedError(
        `the server lost the stored selection of ${table} during the export and ${how} one of ${page.envelope.__COUNT} rows instead of ${count}; carrying on could skip or repeat rows`,
        { hint: 'run the export again' },
      );
    }
    return page;
  };

  // Pages by position in the selection; the first one is already here.
  const offsets = [0];
  for (let pos = firstTop; pos < expected; pos += pageSize) offsets.push(pos);

  // Pages in flight: pinned by --concurrency, else adapted to the server (./concurrency.ts).
  const flight = new PagesInFlight(options.concurrency, options.adaptive === true, (message) => hooks.logger.debug(message));
  const licenceWaits = () => client.session.events.licenceWaits;

  const fetchPage = async (pos: number): Promise<P> => {
    const top = Math.min(pageSize, expected - pos);
    const skip = options.skip + pos;
    const started = performance.now();
    const waits = licenceWaits();
    for (let attempt = 0; ; attempt++) {
      try {
        const got = asAsked(
          setId ? await read(table, { ...base, fromEntitySet: setId, skip, top }) : await read(table, { ...base, skip, top }),
          table,
          skip,
          top,
        );
        flight.observe(performance.now() - started, got.bytes, got.retries > 0 || attempt > 0 || licenceWaits() > waits);
        return setId ? sameSelection(got.page, 'recreated') : got.page;
      } catch (error) {
        if (!(error instanceof EntitySetGoneError) || attempt > 0) throw error;
        // The server could not recreate the set from $savedfilter: make a new one and carry on if
        // it holds as many rows as the lost one.
        hooks.logger.warn(`the server lost the entity set for ${table}; making a new one`);
        const fresh = sameSelection((await read(table, { ...base, skip: 0, top: 1, entitySet: true })).page, 'made a new');
        setId = entitySetId(fresh.envelope);
      }
    }
  };

  const inflight = new Map<number, Promise<P>>([[0, Promise.resolve(first)]]);
  let next = 1;
  // A read that stops early (Ctrl-C, SIGTERM, an error, a consumer that stops) releases its entity
  // set on the way out, within a short bound and never in a new session; the set would otherwise
  // hold the selection in the server's memory until it expires (2 h by default).
  let released = false;
  /** Keep the pages in flight that the limit allows (also while a page is being written). */
  const topUp = () => {
    while (next < offsets.length && inflight.size < flight.limit) {
      const promise = fetchPage(offsets[next]!);
      promise.catch(() => undefined); // observed when its turn comes
      inflight.set(next, promise);
      next++;
    }
  };
  try {
    try {
      for (let i = 0; i < offsets.length; i++) {
        topUp();
        const page = await inflight.get(i)!;
        inflight.delete(i);
        topUp();
        const taken = emit(page, expected - written);
        // Before collect(): a scanned page's bytes go back to the pool there.
        if (taken.length) summary.lastKey = page.key(taken[taken.length - 1]!);
        const out = taken.length ? collect(page, taken) : undefined;
        written += taken.length;
        summary.rows = written;
        if (out !== undefined) yield out;
        hooks.onPage?.({ rows: written, total: expected });
        if (page.size === 0 && !setId) break; // the table shrank under plain paging
      }
    } finally {
      inflight.clear();
    }
    // A stored selection keeps every position (deleted rows as placeholders): every row it holds was
    // either written or seen deleted. Fewer means pages came back short, and rows would be missing.
    if (setId && written + (summary.vanished ?? 0) < expected) {
      throw new PageNotAsAskedError(
        `the server's stored selection of ${table} holds ${expected} rows but its pages gave ${written + (summary.vanished ?? 0)}; the export would be missing rows`,
        { hint: 'run the export again; if it happens again, run it with --no-entityset and report it' },
      );
    }
    if (setId) {
      // Free the server's memory early (best effort; it would expire by itself).
      released = true;
      await client.releaseEntitySet(table, setId).catch(() => undefined);
    }
  } finally {
    if (setId && !released) {
      const freed = await client.releaseEntitySetAfterStop(table, setId, RELEASE_AFTER_STOP_MS);
      hooks.logger.debug(`${freed ? 'released' : 'could not release'} the entity set of the stopped read of ${table}`);
    }
  }
}

/** How long a read that stopped waits for the server to release its entity set (Ctrl-C must stay quick). */
const RELEASE_AFTER_STOP_MS = 2000;

/**
 * The page answers what was asked: no more rows than `$top`, starting where `$skip` said (`__FIRST`,
 * when the server sends it), and no `__ERROR` beside the rows. A server that ignored `$top` or
 * `$skip` would make the pages overlap or leave gaps: repeated or missing rows, exit 0.
 */
function asAsked<P extends PageView>(read: Read<P>, table: string, skip: number, top: number): Read<P> {
  const { page } = read;
  const first = page.envelope.__FIRST;
  const problem =
    page.envelope.__ERROR !== undefined
      ? `answered with an error beside its rows (${serverMessage(page.envelope, 'no message')})`
      : page.size > top
        ? `sent ${page.size} rows where at most ${top} were asked ($top)`
        : // An empty page (past the end of a table that shrank) cannot repeat rows, whatever it says.
          page.size > 0 && first !== undefined && Number(first) !== skip
          ? `started the page at row ${first} where row ${skip} was asked ($skip)`
          : undefined;
  if (problem) {
    throw new PageNotAsAskedError(`the server ${problem} for ${table}; stopped before writing the page, which could repeat or skip rows`, {
      hint: "run 'legacy doctor --probe' and report its output",
    });
  }
  return read;
}

function entitySetId(envelope: PageView['envelope']): string | undefined {
  const uri = envelope.__ENTITYSET;
  if (!uri) return undefined;
  const m = /\$entityset\/([^/?]+)/.exec(uri);
  return m ? decodeURIComponent(m[1]!) : undefined;
}

/** `--count`: rows matching the filter. */
export async function countRows(client: RestClient, plan: ExportPlan): Promise<number> {
  // A count has no rows to check: the canary is asked whatever the cache says.
  if (plan.query.filter) await client.ensureFiltersApplied(plan.dataClass, false);
  const total = await client.count(plan.dataClass.name, { filter: plan.query.filter, params: plan.query.params });
  return rowsAfterSkipLimit(total, plan.options);
}
