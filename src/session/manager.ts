/**
 * One server session per environment + session name + base URL, shared by every run and process.
 *
 * - A run starts with the stored cookie and no validation round trip.
 * - With no usable cookie, the first request runs under a per-slot cross-process lock; after taking
 *   the lock the store is re-read, so of many processes starting at once only one creates a session.
 * - A response that sets a new session cookie (the server silently replaced an expired session)
 *   is adopted and persisted.
 * - 402 (licences all in use): back off with jitter, honour Retry-After, never open another session
 *   while waiting; when the budget is spent, SessionLimitError (exit 75).
 * - 401/1822 (login required): log in once, under the lock, with $directory/login; wrong
 *   credentials → AuthError (exit 77).
 * - Never logs out the shared session: sessions expire on the server by themselves (see the man
 *   page). The one exception is a session the server opened for a concurrent request of ours while
 *   it replaced an expired one: nobody has seen that cookie, so it is logged out at once.
 * - With a licence budget (Redis store, maxSessions), a run first leases its slot among the
 *   server's live sessions; to make room it may log out a session no run is using (eviction).
 */
import { errCodeOf } from '../protocol/errors.js';
import { restUrl } from '../protocol/url.js';
import { AuthError, SessionLimitError } from '../errors/index.js';
import { registerSecret, type Logger } from '../log/index.js';
import { type Transport, backoffDelay, newRequestId, parseRetryAfter, sleep, type HttpRequest, type HttpResponse } from '../transport/index.js';
import { SCALABLE_COOKIE_PREFIX, SESSION_COOKIE, sameSlot, slotLabel, type Lease, type SessionBackend, type SessionEntry, type SlotId } from './store.js';

export interface SessionManagerOptions {
  slot: SlotId;
  store: SessionBackend;
  transport: Transport;
  logger: Logger;
  signal?: AbortSignal;
  /** The server's idle timeout as we assume it (minutes). */
  idleMinutes: number;
  /** 402 budget: tries and total wait. */
  licenceRetries: number;
  licenceWaitMs: number;
  credentials?: { username: string; password: string };
  lockTimeoutMs?: number;
}

/** What happened to the session during this run (for `session refresh`, tests and benchmarks). */
export interface SessionEvents {
  created: number;
  adopted: number;
  reusedStored: boolean;
  fromOtherProcess: boolean;
  licenceWaits: number;
  /** Waits for a place in the fleet-wide licence budget (maxSessions). */
  budgetWaits: number;
  logins: number;
  /** Extra sessions the server opened for concurrent requests during a replacement, logged out at once. */
  orphansReleased: number;
  /** Idle sessions of other slots logged out to stay within the licence budget. */
  evicted: number;
}

export function isSessionCookieName(name: string): boolean {
  return name === SESSION_COOKIE || name.startsWith(SCALABLE_COOKIE_PREFIX);
}

type CookieModule = typeof import('tough-cookie');
let toughCookie: CookieModule | undefined;

/** Session cookies set by a response: name → value (tough-cookie parses, leniently). */
export async function sessionCookiesFrom(setCookies: string[]): Promise<Record<string, string>> {
  if (setCookies.length === 0) return {};
  toughCookie ??= await import('tough-cookie');
  const found: Record<string, string> = {};
  for (const raw of setCookies) {
    const cookie = toughCookie.Cookie.parse(raw, { loose: true });
    if (!cookie || !isSessionCookieName(cookie.key)) continue;
    if (cookie.value === '' || (typeof cookie.maxAge === 'number' && cookie.maxAge <= 0)) continue; // a deletion
    found[cookie.key] = cookie.value;
  }
  return found;
}

/** The one Cookie header: each session cookie name exactly once, built from our own state. */
export function cookieHeader(cookies: Record<string, string>): string {
  return Object.entries(cookies)
    .map(([name, value]) => `${name}=${value}`)
    .join('; ');
}

const now = () => new Date().toISOString();
const MAX_LOGINS_PER_REQUEST = 3;

export class SessionManager {
  readonly events: SessionEvents = {
    created: 0,
    adopted: 0,
    reusedStored: false,
    fromOtherProcess: false,
    licenceWaits: 0,
    budgetWaits: 0,
    logins: 0,
    orphansReleased: 0,
    evicted: 0,
  };
  private entry?: SessionEntry;
  /** The server gave no cookie to a cookie-less request: it does not use sessions. */
  private cookieless = false;
  private coldStart?: Promise<void>;
  private holdingSlotLock = false;
  /** When this run last wrote its slot to the store (ms); undefined until it has. */
  private persistedAt?: number;
  /** What load() found, even when too old to use (for sendExisting). */
  private storedAtLoad?: SessionEntry;
  private pending: Promise<unknown>[] = [];
  private lastConfirmedAt?: string;
  private lease?: Lease;

  constructor(private readonly options: SessionManagerOptions) {
    if (options.credentials) registerSecret(options.credentials.password);
  }

  get slot(): SlotId {
    return this.options.slot;
  }

  /**
   * What this run has done about the session so far: created one (or logged in), adopted the
   * server's replacement of an expired one, took the one another process had just created, reused
   * the stored one, or none yet (for `doctor` and `session refresh`).
   */
  outcome(): 'created' | 'replaced' | 'from-other-process' | 'reused' | 'none' {
    if (this.events.created > 0) return 'created';
    if (this.events.adopted > 0) return 'replaced';
    if (this.events.fromOtherProcess) return 'from-other-process';
    return this.entry ? 'reused' : 'none';
  }

  /** The session in use (after the first request), or the stored one. */
  current(): SessionEntry | undefined {
    return this.entry;
  }

  private staleByClock(entry: SessionEntry): boolean {
    const idle = (entry.idleMinutes ?? this.options.idleMinutes) * 60_000;
    return Date.parse(entry.lastUsedAt) + idle < Date.now();
  }

  private remember(entry: SessionEntry | undefined): void {
    this.entry = entry;
    if (entry) for (const value of Object.values(entry.cookies)) registerSecret(value);
  }

  /** Load the stored cookie once per run (no lock: reads never see a half-written file). */
  private load(lease = true): Promise<void> {
    this.loadStarted ??= this.loadOnce(lease);
    return this.loadStarted;
  }

  private loadStarted?: Promise<void>;

  private async loadOnce(lease: boolean): Promise<void> {
    const { budget } = this.options.store;
    if (budget && lease) {
      this.lease = await budget.acquire(this.options.slot, {
        waitMs: this.options.licenceWaitMs,
        signal: this.options.signal,
        logger: this.options.logger,
        evict: (entry) => this.evict(entry),
        onWait: () => {
          this.events.budgetWaits += 1;
        },
      });
    }
    const stored = await this.options.store.find(this.options.slot);
    this.storedAtLoad = stored;
    if (stored && !this.staleByClock(stored)) {
      this.remember(stored);
      this.events.reusedStored = true;
    }
  }

  /** Send a request in the session. Handles cold start, adoption, 402 backoff and login. */
  async send(request: HttpRequest): Promise<HttpResponse> {
    const { licenceRetries, licenceWaitMs, logger, signal } = this.options;
    const requestId = request.requestId ?? newRequestId();
    const licenceDeadline = Date.now() + licenceWaitMs;
    let licenceTries = 0;
    // A session can expire (and need a new login) more than once while one request is retried;
    // a bound keeps a server that refuses every new session from looping.
    let logins = 0;
    for (;;) {
      await this.load();
      let response: HttpResponse | undefined;
      let sentWith: SessionEntry | undefined;
      if (!this.entry && !this.cookieless) {
        response = await this.startSession(request, requestId);
        if (!response) continue; // a session is now there (ours or another process's): send with it
        sentWith = undefined;
      } else {
        sentWith = this.entry;
        response = await this.options.transport.send(this.withCookie(request, sentWith), requestId);
        await this.observe(response, sentWith);
      }
      if (response.status === 402) {
        licenceTries += 1;
        const remaining = licenceDeadline - Date.now();
        if (licenceTries > licenceRetries || remaining <= 0) {
          throw new SessionLimitError(
            `the server's licences are all in use (HTTP 402 "Maximum number of sessions reached", ${licenceTries} tries over ${Math.round(licenceWaitMs / 1000)} s)`,
            { hint: "see the server's sessions with 'legacy session status --server', or try again later" },
          );
        }
        this.events.licenceWaits += 1;
        const step = licenceWaitMs / Math.max(1, 2 ** licenceRetries - 1);
        const wait = Math.min(remaining, Math.max(backoffDelay(licenceTries - 1, step, licenceWaitMs), parseRetryAfter(response.headers['retry-after']) ?? 0));
        logger.info('server licences all in use (402); waiting', { id: requestId, try: licenceTries, waitMs: wait });
        await sleep(wait, signal);
        continue;
      }
      if (response.status === 401 && errCodeOf(response.json) === 1822 && logins < MAX_LOGINS_PER_REQUEST) {
        logins += 1;
        await this.login(sentWith);
        continue;
      }
      if (response.status === 401 && errCodeOf(response.json) === 1822) {
        throw new AuthError(`the server at ${this.options.slot.baseUrl} refused the session (REST login failed)`, {
          hint: this.options.credentials ? 'check the username and password' : 'set LEGACY_USERNAME and LEGACY_PASSWORD (or use --password-stdin)',
        });
      }
      return response;
    }
  }

  private withCookie(request: HttpRequest, entry: SessionEntry | undefined): HttpRequest {
    const headers = { ...request.headers };
    // Never append: the header is built from our state alone, each cookie name once.
    for (const key of Object.keys(headers)) if (key.toLowerCase() === 'cookie') delete headers[key];
    if (entry) headers.cookie = cookieHeader(entry.cookies);
    return { ...request, headers };
  }

  /** Look at a response to a request that carried `sentWith`: adopt replacements, note confirmations. */
  private async observe(response: HttpResponse, sentWith: SessionEntry | undefined): Promise<void> {
    const cookies = await sessionCookiesFrom(response.setCookies);
    if (Object.keys(cookies).length > 0) {
      const sentValue = sentWith?.cookies[SESSION_COOKIE];
      const newValue = cookies[SESSION_COOKIE] ?? Object.values(cookies)[0];
      if (sentValue !== newValue) {
        if (this.entry && this.entry.cookies[SESSION_COOKIE] !== sentValue) {
          // Another in-flight request of ours already adopted a replacement: the server opened one
          // more session for this concurrent request. Nobody else has ever seen its cookie, so
          // logging it out is safe, and it gives its licence back now instead of in an hour.
          this.options.logger.debug('server opened a second replacement session for a concurrent request; releasing it');
          this.events.orphansReleased += 1;
          this.track(this.releaseOrphan(cookies));
          return;
        }
        this.events.adopted += 1;
        this.options.logger.info(`server replaced the ${slotLabel(this.options.slot)} session (it had expired); adopting the new one`);
        const entry: SessionEntry = {
          ...this.options.slot,
          cookies,
          createdAt: now(),
          lastUsedAt: now(),
          confirmedAt: now(),
          idleMinutes: sentWith?.idleMinutes ?? this.options.idleMinutes,
          user: sentWith?.user,
        };
        this.remember(entry);
        this.track(this.persistAdoption(entry, sentWith));
        return;
      }
    }
    if (sentWith && response.status < 400 && response.status !== 0) {
      this.lastConfirmedAt = now();
      // The first confirmation of a run is written down (last used / confirmed); later ones only at close.
      if (this.persistedAt === undefined) this.track(this.persistTouch());
    }
  }

  /** Log out a session we created by accident and never shared (see observe). Best effort. */
  private async releaseOrphan(cookies: Record<string, string>): Promise<void> {
    await this.logout(this.options.slot.baseUrl, cookies);
  }

  private async logout(baseUrl: string, cookies: Record<string, string>): Promise<void> {
    for (const value of Object.values(cookies)) registerSecret(value);
    await this.options.transport
      .send({ method: 'GET', url: restUrl(baseUrl, { kind: 'directory', action: 'logout' }), headers: { cookie: cookieHeader(cookies) }, idempotent: false })
      .catch(() => undefined);
  }

  /**
   * Give the licence of an idle slot back to the server (licence budget). The budget guarantees
   * no run holds that slot; its entry is forgotten so the next run for it starts a new session.
   */
  private async evict(entry: SessionEntry): Promise<void> {
    this.options.logger.info(`licence budget full: logging out the idle ${slotLabel(entry)} session to make room for ${slotLabel(this.options.slot)}`);
    this.events.evicted += 1;
    await this.logout(entry.baseUrl, entry.cookies);
    const value = entry.cookies[SESSION_COOKIE];
    await this.options.store.remove((e) => sameSlot(e, entry) && e.cookies[SESSION_COOKIE] === value);
  }

  private track(promise: Promise<unknown>): void {
    const guarded = promise.catch((error) => this.options.logger.warn(`could not update the session store: ${(error as Error).message}`));
    this.pending.push(guarded);
  }

  /** Persist an adopted replacement unless another process already stored a newer one. */
  private async persistAdoption(entry: SessionEntry, replaced: SessionEntry | undefined): Promise<void> {
    this.persistedAt = Date.now();
    await this.options.store.updateSlot(
      entry,
      (stored) => {
        const storedValue = stored?.cookies[SESSION_COOKIE];
        if (stored && replaced && storedValue !== replaced.cookies[SESSION_COOKIE] && storedValue !== entry.cookies[SESSION_COOKIE]) {
          // Someone else replaced it first: converge on theirs for the rest of this run.
          this.remember(stored);
          return undefined;
        }
        return entry;
      },
      this.options.lockTimeoutMs,
    );
  }

  /** Store a new or confirmed session for this slot. */
  private async put(entry: SessionEntry): Promise<void> {
    this.persistedAt = Date.now();
    await this.options.store.put(entry);
  }

  private async persistTouch(): Promise<void> {
    const entry = this.entry;
    if (!entry) return;
    const at = now();
    this.persistedAt = Date.now();
    await this.options.store.updateSlot(
      entry,
      (stored) => {
        if (stored && stored.cookies[SESSION_COOKIE] !== entry.cookies[SESSION_COOKIE]) return undefined;
        return { ...(stored ?? entry), lastUsedAt: at, confirmedAt: this.lastConfirmedAt ?? at };
      },
      this.options.lockTimeoutMs,
    );
  }

  /**
   * Cold start, single-flight within the process and across processes. Returns the response to
   * `request` if this call sent it, or undefined when a usable session is now known (the caller
   * re-sends with it).
   */
  private async startSession(request: HttpRequest, requestId: string): Promise<HttpResponse | undefined> {
    if (this.coldStart) {
      await this.coldStart;
      return undefined;
    }
    let response: HttpResponse | undefined;
    const run = async () => {
      response = await this.options.store.withSlotLock(
        this.options.slot,
        async () => {
          this.holdingSlotLock = true;
          try {
            return await this.startSessionLocked(request, requestId);
          } finally {
            this.holdingSlotLock = false;
          }
        },
        { what: `the ${slotLabel(this.options.slot)} session`, timeoutMs: this.options.lockTimeoutMs ?? 90_000 },
      );
    };
    this.coldStart = run();
    try {
      await this.coldStart;
    } finally {
      this.coldStart = undefined;
    }
    return response;
  }

  private async startSessionLocked(request: HttpRequest, requestId: string): Promise<HttpResponse | undefined> {
    const { store, slot, transport, logger } = this.options;
    const stored = await store.find(slot);
    if (stored && !this.staleByClock(stored)) {
      // Another process created (or refreshed) it while we waited for the lock.
      this.remember(stored);
      this.events.fromOtherProcess = true;
      logger.debug(`using the ${slotLabel(slot)} session another process just created`);
      return undefined;
    }
    // None, or idle for longer than the server keeps sessions: try it anyway (the server may
    // still know it); if it is gone the server answers with a new cookie, which we store.
    const response = await transport.send(this.withCookie(request, stored), requestId);
    const cookies = await sessionCookiesFrom(response.setCookies);
    if (Object.keys(cookies).length > 0) {
      const entry: SessionEntry = { ...slot, cookies, createdAt: now(), lastUsedAt: now(), confirmedAt: now(), idleMinutes: this.options.idleMinutes };
      this.remember(entry);
      this.events.created += 1;
      logger.info(`created a new server session for ${slotLabel(slot)}`);
      await this.put(entry);
      return response;
    }
    if (response.status === 401 && errCodeOf(response.json) === 1822) {
      await this.loginLocked(stored);
      return undefined;
    }
    if (response.status < 400) {
      if (stored) {
        // The server still knew the stale cookie.
        this.remember({ ...stored, lastUsedAt: now(), confirmedAt: now() });
        await this.put(this.entry!);
      } else {
        this.cookieless = true;
        logger.debug('the server set no session cookie; continuing without one');
      }
    }
    return response;
  }

  /** Log in under the slot lock (taking it unless this call chain already holds it). */
  private async login(failed: SessionEntry | undefined): Promise<void> {
    if (this.holdingSlotLock) return this.loginLocked(failed);
    await this.options.store.withSlotLock(
      this.options.slot,
      async () => {
        this.holdingSlotLock = true;
        try {
          const stored = await this.options.store.find(this.options.slot);
          if (stored && stored.cookies[SESSION_COOKIE] !== failed?.cookies[SESSION_COOKIE] && !this.staleByClock(stored)) {
            this.remember(stored); // another process already logged in
            return;
          }
          await this.loginLocked(failed);
        } finally {
          this.holdingSlotLock = false;
        }
      },
      { what: `the ${slotLabel(this.options.slot)} session`, timeoutMs: this.options.lockTimeoutMs ?? 90_000 },
    );
  }

  private async loginLocked(_failed: SessionEntry | undefined): Promise<void> {
    const { credentials, slot, transport, logger } = this.options;
    if (!credentials) {
      throw new AuthError(`the server at ${slot.baseUrl} requires a login`, {
        hint: `set LEGACY_USERNAME and LEGACY_PASSWORD (or LEGACY_${slot.env.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_USERNAME/_PASSWORD), or use --password-stdin`,
      });
    }
    const response = await transport.send({
      method: 'POST',
      url: restUrl(slot.baseUrl, { kind: 'directory', action: 'login' }),
      headers: {
        'username-4D': credentials.username,
        'password-4D': credentials.password,
        'session-4D-length': String(Math.max(60, Math.round(this.options.idleMinutes))),
        'content-type': 'application/json',
      },
      body: '{}',
      idempotent: true, // a login creates at most one session and is safe to repeat
    });
    this.events.logins += 1;
    if (response.status === 402) return; // the caller's loop handles the licence wait
    const cookies = await sessionCookiesFrom(response.setCookies);
    const ok = response.status === 200 && (response.json as { result?: boolean } | undefined)?.result !== false;
    if (!ok || Object.keys(cookies).length === 0) {
      throw new AuthError(`login as '${credentials.username}' at ${slot.baseUrl} failed (HTTP ${response.status})`, {
        hint: 'check the username and password',
      });
    }
    const entry: SessionEntry = {
      ...slot,
      cookies,
      createdAt: now(),
      lastUsedAt: now(),
      confirmedAt: now(),
      idleMinutes: Math.max(60, this.options.idleMinutes),
      user: credentials.username,
    };
    this.remember(entry);
    this.events.created += 1;
    logger.info(`logged in as ${credentials.username} and stored the session for ${slotLabel(slot)}`);
    await this.put(entry);
  }

  /**
   * Send with the stored session only: never creates one (used by `session status --server`).
   * Returns undefined when no session is stored for this slot.
   */
  async sendExisting(request: HttpRequest): Promise<HttpResponse | undefined> {
    await this.load(false); // looking only: no licence lease
    const stored = this.entry ?? this.storedAtLoad;
    if (!stored) return undefined;
    this.remember(stored);
    const response = await this.options.transport.send(this.withCookie(request, stored));
    await this.observe(response, stored);
    return response;
  }

  /** Record the end of the run (last used) and wait for pending store writes. */
  async close(): Promise<void> {
    await Promise.all(this.pending);
    this.pending = [];
    // Only worth a write when the run was long enough to matter for the idle clock.
    if (this.entry && this.lastConfirmedAt && this.persistedAt !== undefined && Date.now() - this.persistedAt > 30_000) {
      await this.persistTouch().catch(() => undefined);
    }
    const lease = this.lease;
    this.lease = undefined;
    await lease?.release().catch((error) => this.options.logger.warn(`could not release the licence lease: ${(error as Error).message}`));
  }
}
