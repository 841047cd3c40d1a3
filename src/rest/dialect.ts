/**
 * What a 4D server really does with our requests, checked instead of trusted.
 *
 * - The filter canary: before the first filtered request of a run, a query that cannot match
 *   (`<text attribute> = :1` with an impossible value carrying every URL-special character) must
 *   count 0 rows of a non-empty table. A server that dropped or misread the filter counts the whole
 *   table, and the run stops (FilterNotAppliedError, exit 65) before anything is written. A good
 *   answer is cached per environment and server identity (`__UNIQID` of `$catalog`) for a day in
 *   `<config dir>/servers.json`, so warm runs send no extra request. A bad one is never cached.
 * - `legacy doctor --probe`: the whole dialect (URL decoding order, cookies, `$params`, entity
 *   sets and their recreation from `$savedfilter`, strict date comparison, session lifetime and
 *   version fields), stored in the same file and shown field by field.
 *
 * - The table names of the last catalog a run read, so shell completion can offer them without a
 *   request (app/complete.ts); written only when they changed.
 *
 * The file holds no secrets (no cookies, no credentials); it is written atomically under a lock.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withLock, writeFileAtomic } from '../fs/index.js';
import { BadDataError, EntitySetGoneError, FilterNotAppliedError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { RestPath, RestQuery } from '../protocol/url.js';
import { lifeTimeUnit, serverClock } from '../session/status.js';
import { type Cookies, generationOf, holdsId } from '../session/cookies.js';
import type { HttpRequest, HttpResponse } from '../transport/index.js';
import type { Attribute, DataClass, Envelope, PageQuery } from './types.js';

export const DIALECT_FILE_NAME = 'servers.json';
/** How long a good canary answer is trusted before it is asked again. */
export const CANARY_TTL_MS = 24 * 60 * 60 * 1000;
/** The same for a server whose catalog has no identity (`__UNIQID`): another server could sit at that URL. */
export const CANARY_TTL_ANONYMOUS_MS = 60 * 60 * 1000;

/** The canary's verdict on one server. */
export interface FilterCheck {
  /** The server applied a filter with `$params` (true), or answered with the unfiltered table (false). */
  honoured: boolean;
  table: string;
  attribute: string;
  /** Rows in the table, and rows the impossible value matched. */
  total: number;
  matched: number;
  checkedAt: string;
}

export type UrlDecoding = 'whole' | 'split' | 'unknown';
export type Recreation = 'with-params' | 'without-params' | 'fails' | 'not-supported' | 'unknown';

/** What `doctor --probe` found out (see the man page, DOCTOR PROBE, for each field). */
export interface ProbeResult {
  probedAt: string;
  baseUrl: string;
  identity: string | null;
  table: string | null;
  urlDecoding: UrlDecoding;
  cookies: string[];
  /** The 4D generation the session cookies point to (cookies.ts, generationOf). */
  generation?: string;
  loginRequired: boolean | null;
  loginMode?: LoginMode | null;
  paramsHonoured: boolean | null;
  entitySets: boolean | null;
  savedFilterRecreation: Recreation;
  strictDateCompare: boolean | null;
  lifeTime: { value: number; unit: 'minutes' | 'seconds'; seconds: number } | null;
  versions: Record<string, string | number | boolean>;
}

export interface ServerDialect {
  baseUrl: string;
  /** `__UNIQID` of the catalog ('' when the server sends none). */
  identity: string;
  filters?: FilterCheck;
  probe?: ProbeResult;
  /** Single answers asked by runs that needed them (the probe answers them all). */
  features?: { strictDateCompare?: boolean };
  /** The table names of the catalog the last run read (for shell completion, which sends nothing). */
  tables?: string[];
}

interface DialectFile {
  version: 1;
  servers: Record<string, ServerDialect>;
}

/** `<config dir>/servers.json`, one entry per environment and base URL. */
export class DialectCache {
  constructor(readonly path: string | undefined) {}

  static inDir(configDir: string): DialectCache {
    return new DialectCache(join(configDir, DIALECT_FILE_NAME));
  }

  private static key(env: string, baseUrl: string): string {
    return `${env} ${baseUrl}`;
  }

  private async read(): Promise<DialectFile> {
    if (!this.path) return { version: 1, servers: {} };
    try {
      const data = JSON.parse(await readFile(this.path, 'utf8')) as DialectFile;
      if (data && typeof data === 'object' && data.servers && typeof data.servers === 'object') return data;
    } catch {
      // Missing or damaged: it is only a cache; it is rewritten whole on the next save.
    }
    return { version: 1, servers: {} };
  }

  /** The file as this run read or wrote it last: one read per run however many lookups (updates re-read under the lock). */
  private memo?: Promise<DialectFile>;

  private current(): Promise<DialectFile> {
    this.memo ??= this.read();
    return this.memo;
  }

  /** The entry for this environment and server, if it was made for the same server identity. */
  async get(env: string, baseUrl: string, identity: string): Promise<ServerDialect | undefined> {
    const entry = (await this.current()).servers[DialectCache.key(env, baseUrl)];
    return entry && entry.identity === identity && entry.baseUrl === baseUrl ? entry : undefined;
  }

  /**
   * The table names last seen in this environment's catalog (that of `baseUrl` when several
   * servers were used under the name), sorted; none when no run read it yet.
   */
  async tableNames(env: string, baseUrl?: string): Promise<string[]> {
    const mine = Object.entries((await this.current()).servers)
      .filter(([key, e]) => e && key === DialectCache.key(env, e.baseUrl) && Array.isArray(e.tables))
      .map(([, e]) => e);
    const chosen = mine.find((e) => e.baseUrl === baseUrl) ?? (mine.length === 1 ? mine[0] : undefined);
    return (chosen?.tables ?? []).filter((t): t is string => typeof t === 'string').sort((a, b) => a.localeCompare(b));
  }

  /** Merge `patch` into the entry (a new identity starts a new entry). Failures only cost a re-check later. */
  async update(env: string, baseUrl: string, identity: string, patch: Partial<ServerDialect>, logger: Logger): Promise<void> {
    const path = this.path;
    if (!path) return;
    try {
      await withLock(
        path,
        async () => {
          const file = await this.read();
          const key = DialectCache.key(env, baseUrl);
          const old = file.servers[key];
          const base: ServerDialect = old && old.identity === identity ? old : { baseUrl, identity };
          file.servers[key] = { ...base, ...patch, baseUrl, identity };
          await writeFileAtomic(path, `${JSON.stringify(file, null, 2)}\n`, 'server dialect cache');
          this.memo = Promise.resolve(file);
        },
        { timeoutMs: 5_000, what: 'the server dialect cache' },
      );
    } catch (error) {
      logger.debug(`could not store what the server does: ${(error as Error).message}`);
    }
  }
}

/** The part of the REST client the checks need. */
export interface ProbeClient {
  page(table: string, query: PageQuery): Promise<Envelope>;
}

const TEXT_TYPES = new Set(['string', 'text']);
const NUMBER_TYPES = new Set(['long', 'long64', 'word', 'number', 'byte', 'integer', 'float']);

/** The attribute a canary filters on: a stored text field, else a number; none → no canary. */
export function canaryAttribute(dc: DataClass): Attribute | undefined {
  const stored = dc.attributes.filter((a) => a.kind === 'storage');
  return stored.find((a) => TEXT_TYPES.has(a.type)) ?? stored.find((a) => NUMBER_TYPES.has(a.type));
}

/** A value no row holds, carrying every character a URL decoder could misread. */
export function canaryValue(attr: Attribute): string | number {
  if (TEXT_TYPES.has(attr.type)) return `legacy-canary-${randomBytes(4).toString('hex')} '"&=+#%\\`;
  return -987654321.123;
}

/**
 * Ask the server to count a filter that cannot match. Returns undefined when the answer proves
 * nothing (an empty table, or no attribute to filter on).
 */
export async function runCanary(client: ProbeClient, dc: DataClass): Promise<FilterCheck | undefined> {
  const attr = canaryAttribute(dc);
  if (!attr) return undefined;
  const total = (await client.page(dc.name, { top: 1, skip: 0 })).__COUNT;
  if (!(total > 0)) return undefined;
  const matched = (await client.page(dc.name, { filter: `${attr.name} = :1`, params: [canaryValue(attr)], top: 1, skip: 0 })).__COUNT;
  return { honoured: matched === 0, table: dc.name, attribute: attr.name, total, matched, checkedAt: new Date().toISOString() };
}

/** The error for a server that did not apply the canary's filter. */
export function filterNotApplied(baseUrl: string, check: FilterCheck): FilterNotAppliedError {
  const what = check.matched === check.total ? `all ${check.total} rows` : `${check.matched} of ${check.total} rows`;
  return new FilterNotAppliedError(
    `the server at ${baseUrl} does not apply $filter: a query of ${check.table} that cannot match returned ${what}; nothing was read`,
    { hint: "run 'legacy doctor --probe' and report its output; an unfiltered export would be wrong data" },
  );
}

/** What `doctor --probe` needs of the REST client (kept narrow: no import of the client). */
export interface ProbeTarget extends ProbeClient {
  readonly baseUrl: string;
  send(request: HttpRequest): Promise<HttpResponse>;
  url(path: RestPath, query?: RestQuery): string;
  identity(): Promise<string>;
  dataClass(name: string): Promise<DataClass>;
  releaseEntitySet(table: string, id: string): Promise<void>;
}

/** The session as the probe sees it: its cookies and how it got its licence. */
export interface ProbeSession {
  cookieNames: string[];
  ours?: Cookies;
  loggedIn: boolean | null;
  /** 'open' (any request opens a session), 'directory' ($directory/login), 'authentify' (force login), or unknown. */
  loginMode: LoginMode | null;
}

export type LoginMode = 'open' | 'directory' | 'authentify';

const DATE_TYPES = new Set(['date']);

/** A table to probe with: rows, a text attribute, a date attribute if possible. */
async function probeTable(c: ProbeTarget): Promise<{ dc: DataClass; total: number; sample: Array<Record<string, unknown>> } | undefined> {
  const response = await c.send({ method: 'GET', url: c.url({ kind: 'catalog', all: true }), idempotent: true });
  const all = ((response.json as { dataClasses?: DataClass[] } | undefined)?.dataClasses ?? []).filter((dc) => Array.isArray(dc.attributes));
  const rank = (dc: DataClass) =>
    (canaryAttribute(dc) && TEXT_TYPES.has(canaryAttribute(dc)!.type) ? 2 : canaryAttribute(dc) ? 1 : 0) +
    (dc.attributes.some((a) => a.kind === 'storage' && DATE_TYPES.has(a.type)) ? 1 : 0);
  const candidates = all
    .filter((dc) => canaryAttribute(dc))
    .sort((a, b) => rank(b) - rank(a))
    .slice(0, 5);
  for (const dc of candidates) {
    const page = await c.page(dc.name, { top: 20, skip: 0 });
    if (page.__COUNT > 0) return { dc, total: page.__COUNT, sample: page.__ENTITIES };
  }
  return undefined;
}

/** The order in which the server decodes and splits URLs: `x%26%24skip%3D1` is a `$skip` only if it decodes first. */
async function probeDecoding(c: ProbeTarget, table: string): Promise<UrlDecoding> {
  const response = await c.send({
    method: 'GET',
    url: c.url({ kind: 'dataClass', dataClass: table }, { top: 1, raw: [['legacyprobe', 'x&$skip=1']] }),
    idempotent: true,
  });
  const first = (response.json as { __FIRST?: unknown } | undefined)?.__FIRST;
  return first === 1 ? 'whole' : first === 0 ? 'split' : 'unknown';
}

/** Ask what a request does and tell whether it was refused as a bad query (false) or failed otherwise (throws). */
export async function accepted(run: () => Promise<unknown>): Promise<boolean> {
  try {
    await run();
    return true;
  } catch (error) {
    if (error instanceof BadDataError && !(error instanceof EntitySetGoneError)) return false;
    throw error;
  }
}

/**
 * `doctor --probe`: find out the server's dialect with harmless reads of one table (at most about
 * a dozen requests; the two entity sets it makes are released). Never opens a session of its own.
 */
export async function probeServer(c: ProbeTarget, session: ProbeSession): Promise<{ probe: ProbeResult; filters?: FilterCheck }> {
  const result: ProbeResult = {
    probedAt: new Date().toISOString(),
    baseUrl: c.baseUrl,
    identity: (await c.identity()) || null,
    table: null,
    urlDecoding: 'unknown',
    cookies: session.cookieNames,
    generation: generationOf(session.cookieNames),
    loginRequired: session.loggedIn,
    loginMode: session.loginMode,
    paramsHonoured: null,
    entitySets: null,
    savedFilterRecreation: 'unknown',
    strictDateCompare: null,
    lifeTime: null,
    versions: {},
  };
  const info = await c.send({ method: 'GET', url: c.url({ kind: 'info' }), idempotent: true });
  const infoJson = (info.json ?? {}) as Record<string, unknown>;
  for (const [key, value] of Object.entries(infoJson)) {
    if (/version|build|release/i.test(key) && ['string', 'number', 'boolean'].includes(typeof value)) result.versions[key] = value as string | number | boolean;
  }
  const serverHeader = info.headers.server;
  if (serverHeader) result.versions['Server header'] = String(serverHeader);
  // `$info` may be refused (admin only when passwords are on): then the session life stays unknown.
  if (info.status === 200) result.lifeTime = lifeTimeOf(infoJson, session.ours, info.headers);

  const picked = await probeTable(c);
  if (!picked) return { probe: result };
  const { dc, sample } = picked;
  result.table = dc.name;
  result.urlDecoding = await probeDecoding(c, dc.name);

  const canary = await runCanary(c, dc);
  // A server that ignores filters answers every filtered question alike: nothing more to learn.
  if (canary && !canary.honoured) {
    result.paramsHonoured = false;
    return { probe: result, filters: canary };
  }
  const attr = canaryAttribute(dc)!;
  const value = sample.map((e) => e[attr.name]).find((v) => (typeof v === 'string' && v !== '' && !/[@*]/.test(v)) || typeof v === 'number');
  if (value === undefined) {
    result.paramsHonoured = canary ? canary.honoured : null;
    return { probe: result, filters: canary };
  }
  const filter = { filter: `${attr.name} = :1`, params: [value] };
  const matching = (await c.page(dc.name, { ...filter, top: 1, skip: 0 })).__COUNT;
  result.paramsHonoured = canary ? canary.honoured && matching >= 1 : matching >= 1 ? null : false;

  const date = dc.attributes.find((a) => a.kind === 'storage' && DATE_TYPES.has(a.type));
  if (date) result.strictDateCompare = await accepted(() => c.page(dc.name, { filter: `${date.name} > :1`, params: ['1900-01-01'], top: 1, skip: 0 }));

  const made = await c.page(dc.name, { ...filter, top: 1, skip: 0, entitySet: true, timeoutSeconds: 120 }).catch(() => undefined);
  const setId = /\$entityset\/([^/?]+)/.exec(made?.__ENTITYSET ?? '')?.[1];
  result.entitySets = made ? Boolean(setId) : null;
  if (setId) await c.releaseEntitySet(dc.name, decodeURIComponent(setId)).catch(() => undefined);

  // A set id the server never saw, with the filter to recreate it from: how does it come back?
  const lost = randomBytes(16).toString('hex').toUpperCase();
  try {
    const recreated = await c.page(dc.name, { ...filter, orderBy: undefined, fromEntitySet: lost, top: 1, skip: 0 });
    result.savedFilterRecreation = recreated.__COUNT === matching ? 'with-params' : 'without-params';
    await c.releaseEntitySet(dc.name, lost).catch(() => undefined);
  } catch (error) {
    if (error instanceof EntitySetGoneError) result.savedFilterRecreation = 'not-supported';
    else if (error instanceof BadDataError) result.savedFilterRecreation = 'fails';
    else throw error;
  }
  return { probe: result, filters: canary };
}

/** Our session's idle timeout from `$info`, in the unit the server really used. */
function lifeTimeOf(info: Record<string, unknown>, ours: Cookies | undefined, headers: Record<string, string | string[] | undefined>): ProbeResult['lifeTime'] {
  const list = Array.isArray(info.sessionInfo) ? (info.sessionInfo as Array<Record<string, unknown>>) : [];
  const mine = list.find((s) => holdsId(ours, String(s.sessionID ?? ''))) ?? list[0];
  if (!mine || typeof mine.lifeTime !== 'number') return null;
  const unit = lifeTimeUnit(list, ours, serverClock(headers));
  return { value: mine.lifeTime, unit, seconds: mine.lifeTime * (unit === 'minutes' ? 60 : 1) };
}
