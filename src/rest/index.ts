/**
 * The 4D REST client: catalog, pages, single entities and updates, with 4D errors mapped to the
 * typed errors of this tool. Every request goes through the session manager.
 */
import type { ConfigFile } from '../config/store.js';
import { requireBaseUrl, type BreakerSettings, type Settings } from '../config/settings.js';
import { classifyResponse, isRecordGone, isUnknownDataclass, serverMessage } from '../protocol/errors.js';
import {
  AuthError,
  BadDataError,
  PermissionError,
  EntitySetGoneError,
  NotFoundError,
  RequestRejectedError,
  SessionLimitError,
  UnavailableError,
} from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import type { Logger } from '../log/index.js';
import { CircuitBreaker } from '../session/breaker.js';
import { isRefusal, SessionManager } from '../session/manager.js';
import { openSessionStore } from '../session/open.js';
import type { SessionBackend } from '../session/store.js';
import { serverClock, serverSessions, statusOf, type ServerSession, type SessionStatus } from '../session/status.js';
import { Transport, type ExchangeObserver, type HttpRequest, type HttpResponse } from '../transport/index.js';
import { parseExactJson } from '../transport/json.js';
import {
  accepted,
  CANARY_TTL_ANONYMOUS_MS,
  CANARY_TTL_MS,
  DialectCache,
  filterNotApplied,
  probeServer,
  runCanary,
  type FilterCheck,
  type ProbeResult,
} from './dialect.js';
import type { Attribute, DataClass, DataClassSummary, Entity, Envelope, PageQuery } from './types.js';
import { pageUrl, restUrl, type RestPath, type RestQuery } from '../protocol/url.js';

export type { Attribute, DataClass, DataClassSummary, Entity, Envelope, PageQuery } from './types.js';
export { encodeValue, paramsJson, queryString, restUrl, type RestPath, type RestQuery } from '../protocol/url.js';

/** Longest request URL we send; servers commonly accept 8–16 KB request lines. */
const MAX_URL_LENGTH = 16 * 1024;

export { EntitySetGoneError };

export interface RestClientOptions {
  baseUrl: string;
  envName: string;
  sessionName: string;
  /** Where the session lives (file or Redis); closed with the client. */
  store: SessionBackend;
  timeoutMs: number;
  retries: number;
  insecure?: boolean;
  idleMinutes: number;
  licenceRetries: number;
  licenceWaitMs: number;
  credentials?: { username: string; password: string };
  /** The `authentify()` parameters template (force login); undefined: the docs' example. */
  authentifyBody?: unknown;
  logger: Logger;
  signal?: AbortSignal;
  /** Base delay for transient-failure backoff (ms). */
  backoffMs?: number;
  /** What is known about the server's dialect (`<config dir>/servers.json`); none: checked every run. */
  dialect?: DialectCache;
  /** Told about every HTTP try (HAR recording, metrics). */
  observers?: ExchangeObserver[];
  /** The environment's circuit breaker (kept in `store`); absent: none. */
  breaker?: BreakerSettings;
}

export { serverMessage } from '../protocol/errors.js';

/** What `session status --server` shows of the server's sessions (RestClient.sessionsOnServer). */
export interface ServerView {
  url: string;
  live: number;
  ours: boolean;
  sessions: ServerSession[];
  note?: string;
}

/**
 * The session as `session refresh` and `doctor` report it, once the server confirmed it
 * (RestClient.confirmSession).
 */
export interface SessionReport {
  /** How this run came by it: created, replaced an expired one, another process's, reused. */
  outcome: ReturnType<SessionManager['outcome']>;
  status: SessionStatus;
  /** How it got its licence: none needed, REST login, force login through authentify(). */
  login?: 'open' | 'directory' | 'authentify';
  /** Times this run waited for a free licence (402). */
  licenceWaits: number;
  /** The server's sessions from `$info`; undefined when `$info` was refused (admin only when passwords are on). */
  serverSessions?: ServerSession[];
  /** The status with which `$info` was refused, when it was. */
  infoRefused?: number;
}

/** Where this run keeps sessions, as `doctor` shows it. */
export interface StoreView {
  kind: 'file' | 'redis';
  location: string;
  /** The fleet-wide licence budget (Redis only). */
  maxSessions?: number;
}

/** An operation on a table, for the message of a refusal. */
export interface Access {
  operation: 'read' | 'update' | 'create' | 'delete';
  table: string;
}

export class RestClient {
  readonly baseUrl: string;
  readonly session: SessionManager;
  readonly dialect: DialectCache;
  /** The environment's circuit breaker, shared by every run through the session store. */
  readonly breaker: CircuitBreaker;
  private catalogCache?: Promise<DataClassSummary[]>;
  /** `__UNIQID` of the catalog: the server's identity for the dialect cache ('' when absent). */
  private uniqId = '';
  private filterCheck?: Promise<FilterCheck | undefined>;
  /** The filter check of this run was asked of the server (not taken from the cache). */
  private filterCheckFresh = false;
  private readonly dataClasses = new Map<string, Promise<DataClass>>();

  constructor(readonly options: RestClientOptions) {
    this.baseUrl = options.baseUrl;
    this.dialect = options.dialect ?? new DialectCache(undefined);
    this.breaker = new CircuitBreaker({
      store: options.store.breakers,
      key: { env: options.envName, baseUrl: options.baseUrl },
      settings: options.breaker ?? { enabled: false, failures: 1, windowMs: 1, coolDownMs: 1, maxCoolDownMs: 1 },
      logger: options.logger,
      // The probe sends one try; a probe killed before its answer frees the slot after this.
      probeLeaseMs: options.timeoutMs + 10_000,
    });
    const transport = new Transport({
      timeoutMs: options.timeoutMs,
      retries: options.retries,
      insecure: options.insecure,
      logger: options.logger,
      signal: options.signal,
      backoffMs: options.backoffMs,
      observers: [...(options.observers ?? []), this.breaker],
    });
    this.session = new SessionManager({
      slot: { env: options.envName, name: options.sessionName, baseUrl: options.baseUrl },
      store: options.store,
      transport,
      logger: options.logger,
      signal: options.signal,
      idleMinutes: options.idleMinutes,
      licenceRetries: options.licenceRetries,
      licenceWaitMs: options.licenceWaitMs,
      credentials: options.credentials,
      authentifyBody: options.authentifyBody,
      breaker: this.breaker,
    });
  }

  /** The URL of a REST request to this server (the one URL builder: ./url.ts). */
  url(path: RestPath, query?: RestQuery): string {
    return restUrl(this.baseUrl, path, query);
  }

  /** Send a request in the session; non-2xx answers are returned, not thrown. */
  send(request: HttpRequest): Promise<HttpResponse> {
    return this.session.send(request);
  }

  private async getJson(url: string, what: string, access?: Access): Promise<HttpResponse> {
    const response = await this.send({ method: 'GET', url, idempotent: true });
    if (response.status >= 200 && response.status < 300) return response;
    throw this.errorFor(response, what, access);
  }

  /**
   * Map a failed response to a typed error, by the class of its 4D error (protocol/errors.ts).
   * `access` names the table and the operation, for a refusal's message.
   */
  errorFor(response: HttpResponse, what: string, access?: Access): Error {
    const message = serverMessage(response.json, `HTTP ${response.status}`);
    const { cls } = classifyResponse(response.status, response.json);
    if (response.json === undefined && response.status !== 401 && response.status !== 403) {
      // Not a 4D answer at all (an HTML error page, a proxy): the server is not what we expect.
      return new UnavailableError(`${what}: ${this.baseUrl} answered HTTP ${response.status} without a 4D error`, {
        hint: 'is the URL right, and is "Expose as REST server" enabled on the 4D server?',
      });
    }
    switch (cls) {
      case 'permission':
        return this.permissionError(response, message, what, access);
      case 'login':
        return new AuthError(`${what}: permission denied by the server: ${message}`, { hint: "check the user's permissions on the server" });
      case 'licence':
        return new SessionLimitError(`${what}: the server's licences are all in use: ${message}`, { hint: 'try again later' });
      case 'entity-set-gone':
        return new EntitySetGoneError(`${what}: ${message}`);
      case 'unknown-name':
        return new NotFoundError(`${what}: the server rejected the request: ${message}`);
      case 'not-found':
        return new NotFoundError(`${what}: ${message}`);
      case 'transient':
        return new UnavailableError(`${what}: the server failed with HTTP ${response.status}: ${message}`, { hint: 'try again later' });
      default:
        return new RequestRejectedError(`${what}: the server rejected the request: ${message}`);
    }
  }

  /** A refusal: which operation on which table, and what a person can do about it. */
  private permissionError(response: HttpResponse, message: string, what: string, access?: Access): PermissionError {
    const user = this.options.credentials?.username;
    const session = this.session.current();
    const operation = access ? `${access.operation} ${access.table}` : 'do this';
    const hint = !this.options.credentials
      ? 'the server may require a login (4D force login): set LEGACY_USERNAME and LEGACY_PASSWORD, or ask the 4D administrator for the permission'
      : session?.login === 'authentify' || session?.login === 'directory' || session?.user
        ? access
          ? `the user '${user}' lacks the '${access.operation}' permission on ${access.table} (4D privileges, roles.json): ask the 4D administrator`
          : `the user '${user}' lacks a permission (4D privileges, roles.json): ask the 4D administrator`
        : `the server refused it for the session in use; check that '${user}' may ${operation}`;
    const subject = access ? `not allowed to ${operation}` : `${what}: not allowed`;
    return new PermissionError(`${subject}: the server refused it (HTTP ${response.status}: ${message})`, { hint });
  }

  /**
   * Prove the session with one data request (one row of the first table), where `$info` may not be
   * read (admin only when passwords are on); under force login this is where the run logs in. False
   * when the catalog has no table to read.
   */
  async proveSession(): Promise<boolean> {
    const first = (await this.catalog())[0];
    if (!first) return false;
    await this.page(first.name, { top: 1, skip: 0 });
    return true;
  }

  /**
   * Confirm the session on the server: `$info`, which needs a licensed session (under force login
   * the run logs in here); where `$info` is refused (admin only when passwords are on), one row
   * read proves the session instead (refused with no table to read: the refusal is the error).
   * Any other answer is an error.
   */
  async confirmSession(what: string): Promise<SessionReport> {
    const response = await this.send({ method: 'GET', url: this.url({ kind: 'info' }), idempotent: true });
    let serverSessionsSeen: ServerSession[] | undefined;
    if (response.status === 200) {
      serverSessionsSeen = serverSessions((response.json ?? {}) as Record<string, unknown>, this.session.current()?.cookies, serverClock(response.headers));
    } else if (isRefusal(response)) {
      if (!(await this.proveSession())) throw this.errorFor(response, what, { operation: 'read', table: '$info' });
    } else {
      throw this.errorFor(response, what);
    }
    const entry = this.session.current();
    return {
      outcome: this.session.outcome(),
      status: statusOf(entry, this.session.slot, this.options.idleMinutes),
      login: entry ? (entry.login ?? 'open') : undefined,
      licenceWaits: this.session.events.licenceWaits,
      serverSessions: serverSessionsSeen,
      infoRefused: serverSessionsSeen ? undefined : response.status,
    };
  }

  /** Where this run keeps sessions (a Redis store that could not be reached has fallen back to the file). */
  get store(): StoreView {
    const { kind, location, budget } = this.options.store;
    return { kind, location, ...(budget ? { maxSessions: budget.maxSessions } : {}) };
  }

  async info(): Promise<Record<string, unknown>> {
    const response = await this.getJson(this.url({ kind: 'info' }), 'server info', { operation: 'read', table: '$info' });
    return (response.json ?? {}) as Record<string, unknown>;
  }

  /** The exposed dataclasses (cached per run). */
  catalog(): Promise<DataClassSummary[]> {
    this.catalogCache ??= this.getJson(this.url({ kind: 'catalog' }), 'catalog').then(async (r) => {
      const json = r.json as { dataClasses?: DataClassSummary[]; __UNIQID?: unknown } | DataClassSummary[] | undefined;
      const list = Array.isArray(json) ? json : json?.dataClasses;
      if (json && !Array.isArray(json) && typeof json.__UNIQID === 'string') this.uniqId = json.__UNIQID;
      if (!Array.isArray(list)) throw new UnavailableError(`${this.baseUrl}/rest/$catalog did not return a catalog`, { hint: 'is this a 4D REST server?' });
      await this.rememberTables(list);
      return list;
    });
    this.catalogCache.catch(() => {
      this.catalogCache = undefined;
    });
    return this.catalogCache;
  }

  /** Keep the catalog's table names for shell completion (./dialect.ts), when they changed. */
  private async rememberTables(list: DataClassSummary[]): Promise<void> {
    const names = list.map((dc) => dc.name).filter((n): n is string => typeof n === 'string');
    const { envName, logger } = this.options;
    const known = (await this.dialect.get(envName, this.baseUrl, this.uniqId))?.tables;
    if (known && known.length === names.length && known.every((n, i) => n === names[i])) return;
    await this.dialect.update(envName, this.baseUrl, this.uniqId, { tables: names }, logger);
  }

  /** One dataclass with attributes and key; an unknown name → NotFoundError with suggestions. */
  dataClass(name: string): Promise<DataClass> {
    let cached = this.dataClasses.get(name);
    if (!cached) {
      cached = (async () => {
        const catalog = await this.catalog();
        if (!catalog.some((dc) => dc.name === name)) {
          const hint = didYouMean(
            name,
            catalog.map((dc) => dc.name),
          );
          throw new NotFoundError(`unknown table '${name}'${hint ? ` (${hint})` : ''}`, { hint: "list the tables with 'legacy tables'" });
        }
        const response = await this.getJson(this.url({ kind: 'catalog', dataClass: name }), `table ${name}`, {
          operation: 'read',
          table: `the catalog of ${name}`,
        });
        const dc = response.json as DataClass;
        if (!dc || !Array.isArray(dc.attributes)) throw new UnavailableError(`the catalog of ${name} has no attributes`);
        dc.key ??= [];
        return dc;
      })();
      this.dataClasses.set(name, cached);
      cached.catch(() => this.dataClasses.delete(name));
    }
    return cached;
  }

  /** One page of a dataclass or of a stored entity set. */
  async page(table: string, query: PageQuery, options: { exact?: boolean } = {}): Promise<Envelope> {
    const decode = options.exact ? { decode: (body: Buffer) => parseExactJson(body.toString()) } : undefined;
    return envelopeOf((await this.pageWith(table, query, decode)).json, table, query);
  }

  /**
   * The 200 answer for one page, its body read by `body.decode` if given (instead of JSON.parse),
   * into a buffer from `body.buffer`: the export's fast path (table/paging/scan.ts). A throw from
   * `decode` is an unreadable answer, retried like one.
   */
  async pageWith(table: string, query: PageQuery, body?: Pick<HttpRequest, 'decode' | 'bodyBuffer'>): Promise<HttpResponse> {
    const url = pageUrl(this.baseUrl, table, query);
    if (url.length > MAX_URL_LENGTH) {
      // Web servers refuse such request lines (Node: 431) or drop the connection mid-request.
      throw new BadDataError(
        `the query is too long to send: the request URL would be ${Math.round(url.length / 1024)} KB (at most ${MAX_URL_LENGTH / 1024} KB)`,
        {
          hint: 'shorten the --where / --filter values',
        },
      );
    }
    const response = await this.send({ method: 'GET', url, idempotent: true, ...body });
    if (response.status !== 200) {
      const what = query.filter ? `reading ${table} with filter ${JSON.stringify(query.filter)}` : `reading ${table}`;
      throw this.errorFor(response, what, { operation: 'read', table });
    }
    return response;
  }

  /**
   * What `session status --server` shows: the server's sessions from `$info`, asked only in the
   * stored session (never opening one for the look: a session it opened anyway is logged out at once).
   */
  async sessionsOnServer(idleMinutes: number): Promise<ServerView> {
    const asked = await this.session.sendExisting({ method: 'GET', url: this.url({ kind: 'info' }), idempotent: true });
    const response = asked?.response;
    const none = { url: this.baseUrl, live: 0, ours: false, sessions: [] };
    const idle = idleMinutes;
    const freeUp = `sessions free up after ${idle} min idle, or a 4D administrator can close idle ones (4D Server administration window, Users)`;
    if (!asked || !response) {
      return {
        ...none,
        note: `no stored session: not asking the server, as that would open one (run 'legacy session refresh' first; if it answers that every licence is in use, ${freeUp})`,
      };
    }
    if (response.status === 402) {
      return {
        ...none,
        note: `the stored session is gone on the server and every licence is in use and this tool holds none, so the server cannot be asked: ${freeUp}`,
      };
    }
    if (response.status === 401 || response.status === 403) {
      return {
        ...none,
        note: `the server did not show its sessions (HTTP ${response.status}): $info needs a logged-in session, and an admin user when passwords are on`,
      };
    }
    if (response.status !== 200) return { ...none, note: `server answered HTTP ${response.status}` };
    const sessions = serverSessions((response.json ?? {}) as Record<string, unknown>, this.session.current()?.cookies, serverClock(response.headers));
    if (asked.gone) {
      // The server opened a session for this look (logged out again at once): it is not ours to keep.
      const listed = sessions.map((s) => ({ ...s, ours: false }));
      return {
        url: this.baseUrl,
        live: Math.max(0, listed.length - 1),
        ours: false,
        sessions: listed,
        note: 'the stored session is gone on the server (it answered this look in a new session, which was logged out at once); the next run gets a new one',
      };
    }
    return { url: this.baseUrl, live: sessions.length, ours: sessions.some((s) => s.ours), sessions };
  }

  /**
   * `doctor --probe`: ask the server what it is (./dialect.ts, probeServer), in this run's session,
   * and store the answer (and a good filter check) for this environment and server.
   */
  async probe(): Promise<ProbeResult> {
    const identity = await this.identity().catch(() => '');
    const entry = this.session.current();
    const found = await probeServer(this, {
      cookieNames: entry ? Object.keys(entry.cookies) : [],
      ours: entry?.cookies,
      loggedIn: entry ? Boolean(entry.user) || this.session.events.logins > 0 : null,
      loginMode: entry ? (entry.login ?? 'open') : null,
    });
    const { envName, logger } = this.options;
    await this.dialect.update(envName, this.baseUrl, identity, { probe: found.probe, ...(found.filters?.honoured ? { filters: found.filters } : {}) }, logger);
    return found.probe;
  }

  /** The last stored `doctor --probe` of this server, if any. */
  async storedProbe(): Promise<ProbeResult | undefined> {
    const identity = await this.identity().catch(() => '');
    return (await this.dialect.get(this.options.envName, this.baseUrl, identity))?.probe;
  }

  /** The server's identity for the dialect cache (after the catalog was read). */
  async identity(): Promise<string> {
    await this.catalog();
    return this.uniqId;
  }

  /**
   * Before the first filtered request of a run: has this server been seen to apply `$filter` with
   * `$params`? Asked with a canary query (./dialect.ts); a server that ignores filters →
   * FilterNotAppliedError (65), before anything is read. A good answer cached for this server may
   * save the canary only when `rowsChecked`: every row that comes back is checked against the
   * filter anyway. A raw `--filter`, a `--count`, or a condition the client cannot evaluate has no
   * such check, so the canary is asked every run: a cache decides how to ask, never whether the data
   * in hand is checked.
   */
  async ensureFiltersApplied(dc: DataClass, rowsChecked = false): Promise<FilterCheck | undefined> {
    // A check taken from the cache earlier in this run does not do for data that no row check covers.
    if (!rowsChecked && this.filterCheck && !this.filterCheckFresh) this.filterCheck = undefined;
    this.filterCheck ??= (async () => {
      const identity = await this.identity();
      const { envName } = this.options;
      const cached = (await this.dialect.get(envName, this.baseUrl, identity))?.filters;
      // Without a server identity another server may answer at the same URL: trust the answer briefly.
      const age = Date.now() - Date.parse(cached?.checkedAt ?? '');
      const fresh = age >= 0 && age < (identity ? CANARY_TTL_MS : CANARY_TTL_ANONYMOUS_MS);
      if (rowsChecked && cached?.honoured && fresh) {
        this.filterCheckFresh = false;
        return cached;
      }
      const check = await runCanary(this, dc);
      this.filterCheckFresh = true;
      if (check?.honoured) await this.dialect.update(envName, this.baseUrl, identity, { filters: check }, this.options.logger);
      return check;
    })();
    const pending = this.filterCheck;
    let check: FilterCheck | undefined;
    try {
      check = await pending;
    } finally {
      // An inconclusive answer (empty table) or a failure is asked again with the next table.
      const settled = await pending.catch(() => undefined);
      if (!settled && this.filterCheck === pending) this.filterCheck = undefined;
    }
    if (check && !check.honoured) throw filterNotApplied(this.baseUrl, check);
    if (!check) this.options.logger.debug(`could not check that ${this.baseUrl} applies filters (${dc.name} is empty); rows are checked instead`);
    return check;
  }

  /**
   * Does the server accept `<`/`>` on a date attribute (some reject them)? From the last probe or an
   * earlier answer for this server, else asked once with a harmless query and remembered.
   */
  async acceptsStrictDates(dc: DataClass, date: Attribute): Promise<boolean> {
    const identity = await this.identity();
    const { envName, logger } = this.options;
    const known = await this.dialect.get(envName, this.baseUrl, identity);
    const cached = known?.features?.strictDateCompare ?? known?.probe?.strictDateCompare;
    if (typeof cached === 'boolean') return cached;
    const answer = await accepted(() => this.page(dc.name, { filter: `${date.name} > :1`, params: ['1900-01-01'], top: 1, skip: 0 }));
    await this.dialect.update(envName, this.baseUrl, identity, { features: { ...known?.features, strictDateCompare: answer } }, logger);
    return answer;
  }

  /** Number of rows matching a filter: one request for a single row; __COUNT is the whole selection. */
  async count(table: string, query: Pick<PageQuery, 'filter' | 'params'>): Promise<number> {
    const envelope = await this.page(table, { ...query, top: 1, skip: 0, attributes: undefined });
    return envelope.__COUNT;
  }

  /** Release a stored entity set (best effort). */
  async releaseEntitySet(table: string, id: string): Promise<void> {
    await this.send({ method: 'GET', url: this.url({ kind: 'entitySet', dataClass: table, id }, { method: 'release' }), idempotent: true });
  }

  /**
   * Release an entity set of a read that stopped (Ctrl-C, SIGTERM, an error): one try in this run's
   * session within `timeoutMs`, never a new session (SessionManager.sendBounded). True when the
   * server confirmed it.
   */
  async releaseEntitySetAfterStop(table: string, id: string, timeoutMs: number): Promise<boolean> {
    const url = this.url({ kind: 'entitySet', dataClass: table, id }, { method: 'release' });
    const response = await this.session.sendBounded({ method: 'GET', url, idempotent: true }, timeoutMs);
    return response?.status === 200;
  }

  /**
   * One entity by key, or null when it does not exist. `exact`: integers beyond 2^53 (a long64) as
   * bigint with the server's digits (../transport/json.ts), for callers that convert rows with toRow.
   */
  async entity(table: string, key: string, options: { exact?: boolean } = {}): Promise<Entity | null> {
    const response = await this.send({
      method: 'GET',
      url: this.url({ kind: 'entity', dataClass: table, key }),
      idempotent: true,
      ...(options.exact ? { decode: (body: Buffer) => parseExactJson(body.toString()) } : {}),
    });
    // Only the server's own "no such entity" (1542/1543) means gone: a 404 from a proxy, or one
    // without a 4D code, says nothing about the record.
    if (response.status === 404 && isRecordGone(response.json)) return null;
    if (isUnknownDataclass(response.status, response.json)) throw this.errorFor(response, `table ${table}`);
    if (response.status !== 200) throw this.errorFor(response, `reading ${table}(${key})`, { operation: 'read', table });
    return response.json as Entity;
  }

  /**
   * POST $method=update with one or many entities. Never retried blindly: a transport failure
   * surfaces as TransportError (maybeDelivered tells whether the server may have applied it).
   * Returns the items as the server reported them, whatever the HTTP status.
   */
  async update(table: string, items: Array<Record<string, unknown>>, requestId?: string): Promise<{ status: number; items: Entity[]; response: HttpResponse }> {
    const response = await this.send({
      requestId,
      method: 'POST',
      url: this.url({ kind: 'dataClass', dataClass: table }, { method: 'update' }),
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(items.length === 1 ? items[0] : items),
      idempotent: false,
    });
    const json = response.json as { __ENTITIES?: Entity[] } | Entity | undefined;
    if (json && typeof json === 'object' && Array.isArray((json as { __ENTITIES?: Entity[] }).__ENTITIES)) {
      return { status: response.status, items: (json as { __ENTITIES: Entity[] }).__ENTITIES, response };
    }
    if (json && typeof json === 'object' && ('__KEY' in json || '__ERROR' in json) && items.length === 1) {
      return { status: response.status, items: [json as Entity], response };
    }
    if (isRefusal(response) && json && typeof json === 'object' && '__ERROR' in json) {
      // A refusal of the whole request (no permission to update): the same answer for every row.
      return { status: response.status, items: items.map((item) => ({ ...(json as Entity), __KEY: String(item.__KEY) })), response };
    }
    throw this.errorFor(response, `updating ${table}`, { operation: 'update', table });
  }

  /** A follower starts its next poll: the circuit breaker reports the last one and is asked again. */
  nextPoll(): Promise<void> {
    return this.session.nextBreakerRound();
  }

  async close(): Promise<void> {
    try {
      await this.session.close();
    } finally {
      await this.breaker.close();
      await this.options.store.close();
    }
  }
}

/** A page's parsed answer as an envelope: it must hold `__ENTITIES`. */
export function envelopeOf(json: unknown, table: string, query: PageQuery): Envelope {
  const envelope = json as Envelope | undefined;
  if (!envelope || !Array.isArray(envelope.__ENTITIES)) {
    throw new UnavailableError(`the server's answer for ${table} has no __ENTITIES`, { hint: 'is this a 4D REST server?' });
  }
  envelope.__SENT ??= envelope.__ENTITIES.length;
  envelope.__FIRST ??= query.skip ?? 0;
  return envelope;
}

export interface CreateClientOptions {
  settings: Settings;
  config: ConfigFile;
  logger: Logger;
  signal?: AbortSignal;
  /** Told about every HTTP try (HAR recording, metrics). */
  observers?: ExchangeObserver[];
}

/** The client for the selected environment and session name, with its session store opened. */
export async function createRestClient({ settings, config, logger, signal, observers }: CreateClientOptions): Promise<RestClient> {
  const baseUrl = requireBaseUrl(settings, config);
  return new RestClient({
    baseUrl,
    envName: settings.envName,
    sessionName: settings.sessionName,
    store: await openSessionStore(settings, logger),
    dialect: DialectCache.inDir(settings.configDir),
    observers,
    timeoutMs: settings.timeout,
    retries: settings.retries,
    insecure: settings.insecure,
    idleMinutes: settings.sessionIdleMinutes,
    licenceRetries: settings.licenceRetries,
    licenceWaitMs: settings.licenceWaitMs,
    credentials: settings.credentials,
    authentifyBody: settings.authentifyBody,
    breaker: settings.breaker,
    logger,
    signal,
  });
}
