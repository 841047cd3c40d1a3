/**
 * Routing and answering `/rest/...` requests once the session is settled (see server.ts for sessions, faults
 * and the HTTP side).
 *
 * Server variants (runtime options): `ignoreFilters` drops `$filter`/`$params` on every selection read and
 * `$savedfilter` on recreation (`$orderby`/`$savedorderby` still apply); `savedFilterWithoutParams` recreates a
 * lost set from `$savedfilter` without `$params`, so an unfilled placeholder matches every row.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { catalogList, dataClassInfo } from './catalog.js';
import type { EmulatorCore, SelectQuery } from './core.js';
import type { RuntimeOptions } from './options.js';
import { DEFAULT_SET_TIMEOUT_MS, RECREATED_SET_TIMEOUT_MS, type EntitySet } from './entitysets.js';
import { E, type PermissionAction, RestError } from './errors.js';
import { allAttributes, parseAttributes, type Projection } from './render.js';
import { credentialsOk, requestedLifetimeMs, requestUser, type Session } from './sessions.js';
import type { Selection, Table } from './table.js';
import { ArraySelection } from './table.js';
import { parseEntityRef, type ParsedUrl } from './url.js';

export interface RestResponse {
  status: number;
  contentType: string;
  body: string | Buffer;
}

export interface RestRequest {
  method: string;
  url: ParsedUrl;
  headers: IncomingHttpHeaders;
  body: string;
  session: Session;
}

export const JSON_TYPE = 'application/json; charset=UTF-8';
const json = (body: unknown, status = 200): RestResponse => ({ status, contentType: JSON_TYPE, body: JSON.stringify(body) });
const OK = () => json({ ok: true });

const KNOWN_METHODS = new Set(['update', 'delete', 'entityset', 'release', 'subentityset', 'validate']);
/** Documented `$method` values the emulator does not implement (v18 `$method.md`). */
const UNIMPLEMENTED_METHODS = new Set(['subentityset', 'validate']);
/**
 * Documented query keywords the emulator does not implement: answered 400/1811, never with an ordinary page
 * (`$lock`, `$compute`, `$distinct`, `$asArray`, `$queryplan`, `$querypath`, `$format`, `$clean`, `$upload`,
 * `$subOrderby`, `$catalog/$singleton`...). Names are lower-cased by the URL parser.
 */
const UNIMPLEMENTED_KEYWORDS = ['$lock', '$compute', '$distinct', '$asarray', '$queryplan', '$querypath', '$format', '$clean', '$upload', '$suborderby'];
/** Keywords of a deferred media/relation URI (`/rest/T(k)/attr?$expand=attr`): served there, refused elsewhere. */
const MEDIA_KEYWORDS = ['$expand', '$imageformat', '$version', '$binary'];
const DEFAULT_TOP = 100;

/** A 1×1 transparent PNG, served for every picture. */
const PNG_1X1 = Buffer.from(
  '89504e470d0a1a0a0000000d4948445200000001000000010806000000' + '1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082',
  'hex',
);

/** Integer query parameter; absent or unparsable → fallback. */
function intParam(q: Map<string, string>, name: string, fallback: number): number {
  const v = q.get(name);
  if (v === undefined || v.trim() === '') return fallback;
  const n = Number.parseInt(v, 10);
  return Number.isNaN(n) ? fallback : n;
}

/** `$timeout` in seconds → ms (absent or not positive → fallback). */
function timeoutMs(q: Map<string, string>, fallbackMs: number): number {
  const s = intParam(q, '$timeout', 0);
  return s > 0 ? s * 1000 : fallbackMs;
}

/** The option `brokenPaging`: a server that does not page as asked (for the client's page checks). */
function brokenPaging(mode: RuntimeOptions['brokenPaging'], { skip, top }: { skip: number; top: number }): { skip: number; top: number } {
  if (mode === 'ignore-top') return { skip, top: -1 };
  if (mode === 'ignore-skip') return { skip: 0, top };
  if (mode === 'short' && top > 1) return { skip, top: top - 1 };
  return { skip, top };
}

/** Paging parameters: `$top`/`$limit` (default 100; negative = all), `$skip`. */
function paging(q: Map<string, string>): { skip: number; top: number } {
  const top = intParam(q, '$top', intParam(q, '$limit', DEFAULT_TOP));
  return { skip: Math.max(0, intParam(q, '$skip', 0)), top };
}

function projection(core: EmulatorCore, table: Table, q: Map<string, string>, pathList?: string): Projection {
  const spec = pathList ?? q.get('$attributes');
  return spec === undefined ? allAttributes(table) : parseAttributes(table, core.store, spec);
}

function setUri(set: EntitySet): string {
  return `/rest/${set.table.name}/$entityset/${set.id}`;
}

export function handleRest(core: EmulatorCore, req: RestRequest): RestResponse {
  const { segments, query } = req.url;
  const method = query.get('$method');
  if (method !== undefined && !KNOWN_METHODS.has(method)) throw E.unknownMethod(method);
  if (method !== undefined && UNIMPLEMENTED_METHODS.has(method)) throw E.notImplemented(`$method=${method}`);
  for (const k of UNIMPLEMENTED_KEYWORDS) if (query.has(k)) throw E.notImplemented(k);
  const head = segments[0];
  if (head === undefined) throw E.dataClassNotFound('');
  const media = MEDIA_KEYWORDS.find((k) => query.has(k));
  if (media !== undefined && head.startsWith('$')) throw E.notImplemented(media); // data requests only
  if (head === '$info') return json(info(core, req.session));
  if (head === '$catalog') {
    if (segments[1] === 'authentify' && segments.length === 2 && req.method === 'POST' && core.opts.generation !== 'v18') return authentify(core, req);
    return catalog(core, segments.slice(1));
  }
  if (head === '$directory') return directory(core, req, segments[1] ?? '');
  if (head === '$getWebForm' || head === '$singleton') throw E.notImplemented(head);
  if (head.startsWith('$')) throw E.dataClassNotFound(head);
  return dataClass(core, req, method);
}

// ---- $info / $catalog / $directory ------------------------------------------------------------------------------

function info(core: EmulatorCore, session: Session): Record<string, unknown> {
  const now = Date.now();
  const sets = core.sets.live(now);
  const out: Record<string, unknown> = {
    cacheSize: 419_430_400,
    usedCache: Math.min(419_430_400, process.memoryUsage().heapUsed),
    entitySetCount: sets.length,
  };
  if (sets.length > 0) {
    out.entitySet = sets.map((s) => ({
      id: s.id,
      dataClass: s.table.name,
      tableName: s.table.name,
      selectionSize: s.sel.size,
      sorted: s.sorted,
      refreshed: new Date(s.lastUsedAt).toISOString(),
      expires: new Date(s.lastUsedAt + s.timeoutMs).toISOString(),
    }));
  }
  out.ProgressInfo = [
    { UserInfo: 'indexProgressIndicator', SessionCount: 0, Title: '', CanInterrupt: true },
    { UserInfo: 'flushProgressIndicator', SessionCount: 0, Title: '', CanInterrupt: false },
  ];
  // lifeTime in seconds by default, as the docs say (real v16/v17 servers answered minutes: lifeTimeUnit)
  const unitMs = core.opts.lifeTimeUnit === 'seconds' ? 1000 : 60_000;
  // licensed sessions only (guest sessions hold no licence)
  out.sessionInfo = core.sessions.licensedSessions().map((s) => {
    const exp = core.sessions.expiresAt(s);
    return {
      sessionID: s.id,
      userName: s.userName,
      lifeTime: Math.round(core.sessions.lifetimeOf(s) / unitMs),
      expiration: new Date(Number.isFinite(exp) ? exp : now + core.opts.sessionTimeoutMs).toISOString(),
    };
  });
  out.HTTPConnections = [];
  // 20 R6+ (`$info.md` of 20 R7: "privileges: an object with a privileges property"): only v21 says so here; the
  // privilege name is the emulator's own. $info has no version field in any generation.
  if (core.opts.generation === 'v21') out.privileges = { privileges: session.guest ? [] : [{ privilege: 'emulator' }] };
  return out;
}

/**
 * The app's exposed `authentify()` datastore function (`REST/authUsers.md`, force login): the body is a JSON array
 * of parameters; like the docs' example it takes one credentials object, reads the user from
 * `authentifyUserField` ('name' in the docs, 'identifier' from a real web front end) and `password`, and checks
 * them against `auth` (null: any non-empty user). Success = `Session.setPrivileges()`: the same session takes a
 * licence (402/1823 when none is free; it stays a guest) and the function returns true. Failure: the function's
 * return value, as in the docs' example ("Wrong user" / "Wrong password"), HTTP 200, nothing opened.
 */
function authentify(core: EmulatorCore, req: RestRequest): RestResponse {
  core.counters.authentifyCalls++;
  let params: unknown;
  try {
    params = JSON.parse(req.body.trim() === '' ? '[]' : req.body);
  } catch (e) {
    throw E.badJsonBody((e as Error).message);
  }
  if (!Array.isArray(params)) throw E.badJsonBody('function parameters must be a JSON array');
  const first = params[0];
  const credentials = first !== null && typeof first === 'object' && !Array.isArray(first) ? (first as Record<string, unknown>) : {};
  const user = credentials[core.opts.authentifyUserField];
  const auth = core.opts.auth;
  let refused: string | null = null;
  if (typeof user !== 'string' || user === '' || (auth !== null && user !== auth.user)) refused = 'Wrong user';
  else if (auth !== null && credentials.password !== auth.password) refused = 'Wrong password';
  if (refused !== null) {
    core.counters.authentifyFailures++;
    return json({ result: refused });
  }
  const wasGuest = req.session.guest;
  if (!core.sessions.promote(req.session, user as string)) {
    core.counters.authentifyFailures++;
    core.counters.rejected402++;
    throw E.maxSessions();
  }
  if (wasGuest) core.noteSessionCreated();
  return json({ result: true });
}

function catalog(core: EmulatorCore, rest: string[]): RestResponse {
  const what = rest[0];
  if (what === undefined) return json(catalogList(core.store, core.uniqId));
  if (what === '$all') return json({ dataClasses: core.store.tables.map(dataClassInfo) });
  const tables = what.split(',').map((name) => {
    const t = core.store.table(name.trim());
    if (!t) throw E.dataClassNotFound(name.trim());
    return t;
  });
  return json(tables.length === 1 ? dataClassInfo(tables[0]!) : { dataClasses: tables.map(dataClassInfo) });
}

function directory(core: EmulatorCore, req: RestRequest, action: string): RestResponse {
  const s = req.session;
  switch (action) {
    case 'login': {
      // The session was created (or reused) before dispatch. With auth on, credentials sent here are checked
      // even when a session already exists.
      const user = requestUser(req.headers, core.opts.headerDecoding);
      if (user !== undefined && !credentialsOk(core.opts.auth, req.headers, core.opts.headerDecoding)) {
        core.counters.authFailures++;
        if (core.opts.loginRefusal === 'result-false') return json({ result: false }); // the session stays as it was
        throw E.loginFailed();
      }
      s.lifetimeMs = requestedLifetimeMs(req.headers) ?? s.lifetimeMs;
      if (user !== undefined && core.opts.auth) s.userName = user;
      core.counters.logins++;
      return json({ result: true });
    }
    case 'logout':
      // server.ts answers a logout without a live session without creating one
      if (core.sessions.end(s.id)) core.counters.logouts++;
      return json({ result: true });
    case 'currentUser':
      return json({ result: s.userName ? { userName: s.userName, fullName: s.userName, ID: s.id } : null });
    default:
      throw E.dataClassNotFound(`$directory/${action}`);
  }
}

// ---- data ----------------------------------------------------------------------------------------------------

function dataClass(core: EmulatorCore, req: RestRequest, method: string | undefined): RestResponse {
  const { segments, query } = req.url;
  const ref = parseEntityRef(segments[0]!, core.opts.generation !== 'v18');
  const table = core.store.table(ref.name);
  if (!table) throw E.dataClassNotFound(ref.name);
  const media = MEDIA_KEYWORDS.find((k) => query.has(k));
  if (media !== undefined) {
    // only the deferred URI form: /rest/T(key)/attr?$expand=attr (pictures: $imageformat, $version; BLOBs: $binary)
    const attr = ref.key !== null && segments.length === 2 ? segments[1]! : undefined;
    const expand = query.get('$expand');
    if (attr === undefined || (expand !== undefined && expand !== '' && expand !== attr)) throw E.notImplemented(media);
  }

  if (req.method === 'POST' && core.readOnly(table)) {
    const actions = method === 'delete' ? (['delete'] as const) : method === 'entityset' ? [] : writeActions(req.body);
    if (actions.length > 0) {
      core.counters.permissionRefusals++;
      throw E.noPermission(core.opts.refusalStatus, table.name, [...actions]);
    }
  }

  if (req.method === 'POST') {
    if (method === undefined || method === 'update') {
      const atomic = /^(true|1)$/i.test(query.get('$atomic') ?? query.get('$atonce') ?? '');
      const out = core.updater.process(table, req.body, atomic, { now: Date.now(), userName: req.session.userName || 'REST' });
      core.counters.updateRequests++;
      core.counters.updates += out.saved;
      core.counters.conflicts += out.conflicts;
      return json(out.body, out.status);
    }
    if (method === 'delete' && ref.key !== null) {
      const row = table.indexOfKey(ref.key);
      if (row < 0) throw E.entityNotFound(ref.key, table.name);
      table.remove(row);
      return OK();
    }
    if (method !== 'entityset') throw E.methodNotApplicable(method);
  } else if (req.method !== 'GET') {
    throw new RestError(405, [{ message: `HTTP ${req.method} is not supported`, componentSignature: 'dbmg', errCode: 1813 }]);
  } else if (method === 'update' || method === 'delete') {
    throw E.methodNotApplicable(method);
  }

  if (ref.key !== null) return entity(core, req, table, ref.key);
  if (segments[1] === '$entityset') return entitySet(core, req, table, segments[2] ?? '', method);
  if (segments.length > 2) throw E.dataClassNotFound(segments.join('/'));
  return selection(core, req, table, table.all(), method, segments[1]);
}

/** The write actions of an update body: 'update' for items with `__KEY`, 'create' for the others (unparsable: 'update'). */
function writeActions(body: string): PermissionAction[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return ['update'];
  }
  const items = Array.isArray(parsed) ? parsed : [parsed];
  const hasKey = (it: unknown) => it !== null && typeof it === 'object' && (it as { __KEY?: unknown }).__KEY != null;
  const out: PermissionAction[] = [];
  if (items.length === 0 || items.some(hasKey)) out.push('update');
  if (items.some((it) => !hasKey(it))) out.push('create');
  return out;
}

/** `$filter`/`$params`/`$orderby` of a selection read (`ignoreFilters`: the filter is dropped silently). */
function readQuery(core: EmulatorCore, q: Map<string, string>): SelectQuery {
  const orderby = q.get('$orderby');
  return core.opts.ignoreFilters ? { orderby } : { filter: q.get('$filter'), params: q.get('$params'), orderby };
}

/** The query that recreates a lost set from `$savedfilter`/`$savedorderby` (see the server variants above). */
function savedQuery(core: EmulatorCore, q: Map<string, string>): SelectQuery {
  const orderby = q.get('$savedorderby');
  if (core.opts.ignoreFilters) return { orderby };
  if (core.opts.savedFilterWithoutParams) return { filter: q.get('$savedfilter'), orderby, placeholdersMatchAll: true };
  return { filter: q.get('$savedfilter'), params: q.get('$params'), orderby };
}

/** A page of `base` filtered/sorted by the request, optionally stored as a new entity set. */
function selection(
  core: EmulatorCore,
  req: RestRequest,
  table: Table,
  base: Selection,
  method: string | undefined,
  attrList?: string,
  storedSet?: EntitySet,
): RestResponse {
  const q = req.url.query;
  const sel = core.select(table, readQuery(core, q), base === table.all() ? undefined : base);
  const proj = projection(core, table, q, attrList);
  let set = storedSet;
  if (method === 'entityset') {
    set = core.sets.create(req.session.id, table, sel, q.has('$orderby'), timeoutMs(q, DEFAULT_SET_TIMEOUT_MS));
  }
  const { skip, top } = brokenPaging(core.opts.brokenPaging, paging(q));
  return { status: 200, contentType: JSON_TYPE, body: core.renderer.page(table, sel, { skip, top, proj, entitySetUri: set && setUri(set) }) };
}

function entitySet(core: EmulatorCore, req: RestRequest, table: Table, id: string, method: string | undefined): RestResponse {
  const q = req.url.query;
  let set = core.sets.use(req.session.id, id);
  if (!set) {
    const savedFilter = q.get('$savedfilter');
    const savedOrderby = q.get('$savedorderby');
    if (method === 'release' || (savedFilter === undefined && savedOrderby === undefined)) throw E.entitySetNotFound(id);
    // $savedfilter/$savedorderby: recreate the lost set under the same id
    const sel = core.select(table, savedQuery(core, q));
    set = core.sets.create(req.session.id, table, sel, savedOrderby !== undefined, timeoutMs(q, RECREATED_SET_TIMEOUT_MS), id);
  }
  if (set.table !== table) throw E.entitySetOtherClass(id, table.name);
  if (method === 'release') {
    core.sets.release(req.session.id, id);
    return OK();
  }
  const derived = (q.has('$filter') && !core.opts.ignoreFilters) || q.has('$orderby');
  return selection(core, req, table, set.sel, method, undefined, derived || method === 'entityset' ? undefined : set);
}

function entity(core: EmulatorCore, req: RestRequest, table: Table, key: string): RestResponse {
  const row = table.indexOfKey(key);
  if (row < 0) throw E.entityNotFound(key, table.name);
  const sub = req.url.segments[1];
  const q = req.url.query;
  if (sub === undefined || sub.includes(',')) {
    return entityResponse(core, table, row, projection(core, table, q, sub));
  }
  const a = table.attr(sub);
  if (a < 0) throw E.badAttributeList(sub, table.name);
  const def = table.attrs[a]!;
  if (def.kind === 'relatedEntities') {
    // /rest/T[KEY]/children?$expand=children: the related entities pointing back at this one
    const target = core.store.table(def.related!)!;
    const back = target.attr(def.path!);
    const myKey = table.normalizeKey(table.keyOf(row));
    const all = target.all();
    const rows: number[] = [];
    for (let p = 0; p < all.size; p++) {
      const r = all.at(p);
      const k = target.get(r, back);
      if (k !== null && table.normalizeKey(String(k)) === myKey) rows.push(r);
    }
    return selection(core, req, target, new ArraySelection(Int32Array.from(rows)), undefined);
  }
  const v = table.get(row, a);
  if (def.kind === 'relatedEntity') {
    const target = core.store.table(def.related!)!;
    const r = v === null ? -1 : target.indexOfKey(String(v));
    if (r < 0) throw E.entityNotFound(String(v), target.name);
    return entityResponse(core, target, r, projection(core, target, q));
  }
  if (def.type === 'image') return { status: 200, contentType: 'image/png', body: v === null ? Buffer.alloc(0) : PNG_1X1 };
  if (def.type === 'blob') {
    return { status: 200, contentType: 'application/octet-stream', body: v === null ? Buffer.alloc(0) : Buffer.from(`${table.name}[${key}].${def.name}\n`) };
  }
  return entityResponse(core, table, row, [{ attr: a }]);
}

/** A single entity: `__entityModel` first. */
function entityResponse(core: EmulatorCore, table: Table, row: number, proj: Projection): RestResponse {
  return { status: 200, contentType: JSON_TYPE, body: core.renderer.entityBytes(table, row, proj) };
}
