/**
 * One server session per environment + session name + base URL, shared by every run and process.
 *
 * What the server does (4d-rest-protocol.md §2.3, 4d-generations.md): a request whose cookie names
 * no live session (none, or one the server forgot after a restart, its idle timeout or an
 * administrator) silently gets a NEW session, and a licence, in the answer's Set-Cookie. So the
 * only moment a run can waste a licence is a request sent with a cookie that may be dead. The
 * design follows from that:
 *
 * - **First contact under the slot lock.** A run's first request goes out holding the slot's
 *   single-flight lock (a file lock, or Redis across hosts). Under the lock the store is re-read:
 *   if another run stored a different session, or confirmed this one (its `revision` moved) since
 *   this run read it, the session is known alive and the lock is released at once; otherwise this
 *   run's request is the one that finds out, and its answer is stored before the lock is released:
 *   a confirmation, a replacement the server made, or a login. Of any number of runs starting
 *   together after the server dropped its sessions, exactly one sends the dead cookie; the others
 *   adopt what it stored. Cost when nothing was dropped: one lock and one store read and write per
 *   run; concurrent runs wait for one round trip of the first.
 * - **After first contact** requests go out freely. A replacement the server makes mid-run (it
 *   dropped the session while we were using it) is adopted and stored; a second replacement for a
 *   concurrent request, ours or another process's, was never seen by anyone else and is logged out
 *   at once, so no licence sits idle because of us.
 * - **Logins under the same lock**, with the same rule: if the store moved since the refused
 *   request was sent, adopt and retry; else log in: `$directory/login` after 401/1822, or the
 *   application's `authentify()` (force login, v20 R6+) after another 401/403 refusal. An
 *   `authentify()` is proved by re-sending the refused request under the lock; only a proved
 *   session is stored. A failed login leaves nothing behind and is never retried in a loop.
 * - 402 (licences all in use): back off with jitter, honour Retry-After, never open another session
 *   while waiting; when the budget is spent, SessionLimitError (exit 75).
 * - Never logs out the shared session (sessions expire on the server by themselves); `session
 *   clear --logout` is the one explicit exception, asked for by a person.
 * - Identity is the cookie set the server gave, whatever the names (./cookies.ts).
 * - With a licence budget (Redis store, maxSessions), a run first leases its slot among the
 *   server's live sessions; to make room it may log out a session no run is using (eviction).
 */
import { isLoginFailed as loginFailed, isRefusal as refusal } from '../protocol/errors.js';
import { restUrl } from '../protocol/url.js';
import { AuthError, SessionLimitError } from '../errors/index.js';
import { registerSecret, type Logger } from '../log/index.js';
import { type Transport, backoffDelay, newRequestId, parseRetryAfter, sleep, type HttpRequest, type HttpResponse } from '../transport/index.js';
import { cookieChange, cookieHeader, sameSession, sessionCookiesSetBy, type Cookies } from './cookies.js';
import { authentify, type Credentials, directoryLogin, type HeaderEncoding } from './login.js';
import type { CircuitBreaker } from './breaker.js';
import { sameSlot, slotLabel, type Lease, type SessionBackend, type SessionEntry, type SlotId } from './store.js';

export { cookieHeader } from './cookies.js';

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
  credentials?: Credentials;
  /** The `authentify()` parameters template (force login); undefined: the docs' example. */
  authentifyBody?: unknown;
  lockTimeoutMs?: number;
  /**
   * The environment's circuit breaker: asked before the run's first request (it may refuse the run
   * at once, exit 69, or make its first request the half-open probe: one try, no retries).
   */
  breaker?: CircuitBreaker;
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
  /** `$directory/login` calls that were accepted or refused. */
  logins: number;
  /** `authentify()` calls (force login). */
  authentifies: number;
  /** Extra sessions the server opened for concurrent requests during a replacement, logged out at once. */
  orphansReleased: number;
  /** Idle sessions of other slots logged out to stay within the licence budget. */
  evicted: number;
}

/** A 401/403 that is not "REST login failed" (protocol/errors.ts, the one home of 4D's codes). */
export function isRefusal(response: HttpResponse): boolean {
  return refusal(response.status, response.json);
}

const isLoginFailed = (response: HttpResponse) => loginFailed(response.status, response.json);

const now = () => new Date().toISOString();
const MAX_LOGINS_PER_REQUEST = 3;
/** Sessions of other runs one request may take up after a refusal, beyond its own logins (a burst of runs). */
const MAX_ADOPTIONS_PER_REQUEST = 8;
/** Re-sends of one request refused in a session the run had already replaced (concurrent requests). */
const MAX_STALE_RESENDS = 8;
const revisionOf = (entry: SessionEntry | undefined) => entry?.revision ?? 0;

/** Has the store moved since `seen` was read: another session, or the same one confirmed or logged in again? */
function moved(stored: SessionEntry | undefined, seen: SessionEntry | undefined): boolean {
  if (!stored) return false;
  return !sameSession(stored.cookies, seen?.cookies) || revisionOf(stored) !== revisionOf(seen);
}

/**
 * After a refusal in `seen`: did another run settle anything since? Another session, or a login in this one. Another
 * run merely confirming or touching the same session (its revision moves) settles nothing: adopting that would send
 * the request again into the same refusal, and spend the request's login budget without a login.
 */
function settledSince(stored: SessionEntry | undefined, seen: SessionEntry | undefined): boolean {
  if (!stored) return false;
  if (!sameSession(stored.cookies, seen?.cookies)) return true;
  return stored.login !== undefined && (stored.login !== seen?.login || revisionOf(stored) !== revisionOf(seen));
}

type Recovery = 'contact' | 'login' | 'refused';

export class SessionManager {
  readonly events: SessionEvents = {
    created: 0,
    adopted: 0,
    reusedStored: false,
    fromOtherProcess: false,
    licenceWaits: 0,
    budgetWaits: 0,
    logins: 0,
    authentifies: 0,
    orphansReleased: 0,
    evicted: 0,
  };
  private entry?: SessionEntry;
  /** The server gave no cookie to a cookie-less request: it does not use sessions. */
  private cookieless = false;
  /** This run's first request has been answered (or another run proved the session meanwhile). */
  private contacted = false;
  private contact?: Promise<HttpResponse | undefined>;
  /** When this run last wrote its slot to the store (ms); undefined until it has. */
  private persistedAt?: number;
  private pending: Promise<unknown>[] = [];
  private lastConfirmedAt?: string;
  private lease?: Lease;
  private headerEncoding?: HeaderEncoding;
  /** This run is the breaker's probe and has not sent its first request yet. */
  private probeFirst = false;

  constructor(private readonly options: SessionManagerOptions) {
    if (options.credentials) registerSecret(options.credentials.password, true);
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
    if (entry?.headerEncoding) this.headerEncoding = entry.headerEncoding;
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
    if (stored) {
      this.remember(stored);
      this.events.reusedStored = !this.staleByClock(stored);
    }
  }

  /** The circuit breaker's word before anything is sent (BreakerOpenError when it is open). */
  private async admit(): Promise<void> {
    const breaker = this.options.breaker;
    if (!breaker) return;
    this.admission ??= breaker.admit().then(({ probe }) => {
      this.probeFirst = probe;
    });
    await this.admission;
  }

  private admission?: Promise<void>;

  /** A follower's next poll: the circuit breaker is asked again before its first request (breaker.ts nextRound). */
  async nextBreakerRound(): Promise<void> {
    const breaker = this.options.breaker;
    if (!breaker) return;
    await breaker.nextRound();
    this.admission = undefined;
    this.probeFirst = false;
  }

  /** The transport for the next request: the probe's first request is one try, without retries. */
  private transportNow(): Transport {
    if (!this.probeFirst) return this.options.transport;
    this.probeFirst = false;
    return this.options.transport.derive({ retries: 0 });
  }

  /** Send a request in the session. Handles first contact, adoption, 402 backoff and logins. */
  async send(request: HttpRequest): Promise<HttpResponse> {
    await this.admit();
    const requestId = request.requestId ?? newRequestId();
    const licence = { started: Date.now(), deadline: Date.now() + this.options.licenceWaitMs, tries: 0 };
    // A session can expire (and need a new login) more than once while one request is retried;
    // a bound keeps a server that refuses every new session from looping.
    let logins = 0;
    let staleResends = 0;
    let adoptions = 0;
    for (;;) {
      await this.load();
      if (this.loginFailure) throw this.loginFailure;
      let response: HttpResponse | undefined;
      let sentWith: SessionEntry | undefined;
      let stale = false;
      if (!this.contacted && !this.cookieless) {
        response = await this.firstContact(request, requestId);
        if (!response) continue; // the session is settled (by us or another run): send with it
        sentWith = this.entry;
      } else {
        sentWith = this.entry;
        response = await this.transportNow().send(this.withCookie(request, sentWith), requestId);
        const observed = await this.observe(response, sentWith);
        sentWith = observed.session;
        stale = observed.stale;
      }
      if (response.status === 402) {
        await this.waitForLicence(response, licence, requestId);
        continue;
      }
      const needsLogin = isLoginFailed(response) || (isRefusal(response) && (stale || this.mayAuthentify(sentWith)));
      if (!needsLogin) return response;
      if (stale && staleResends < MAX_STALE_RESENDS) {
        // Refused in a session this run no longer uses (another request replaced it or logged in
        // meanwhile): send it again in the current one. Not a login; bounded on its own.
        staleResends += 1;
        continue;
      }
      if (logins >= MAX_LOGINS_PER_REQUEST) {
        if (isLoginFailed(response)) throw this.loginRefused();
        return response;
      }
      logins += 1;
      if (isLoginFailed(response) && sentWith && this.ownLogins.has(cookieHeader(sentWith.cookies)) && this.unprovenLogins >= 2) {
        // Twice now we logged in and the server refused that very session before answering any
        // request in it: it does not take its cookie back, and each new login costs a licence.
        throw this.failLogin(this.cookieNotHonoured());
      }
      this.adoptedInRecovery = false;
      const answered = await this.recover(isLoginFailed(response) ? 'login' : 'refused', request, requestId, sentWith);
      if (this.adoptedInRecovery && adoptions < MAX_ADOPTIONS_PER_REQUEST) {
        // Another run logged in meanwhile and this one uses its session: that was not a login of ours.
        adoptions += 1;
        logins -= 1;
      }
      if (answered?.status === 402) {
        logins -= 1; // no licence free for the login: the licence budget bounds this, not the login count
        await this.waitForLicence(answered, licence, requestId);
      } else if (answered) return answered;
    }
  }

  /** 402: wait with backoff (and Retry-After) while the budget lasts; then SessionLimitError. */
  private async waitForLicence(response: HttpResponse, licence: { started: number; deadline: number; tries: number }, requestId: string): Promise<void> {
    const { licenceRetries, licenceWaitMs, logger, signal } = this.options;
    licence.tries += 1;
    const remaining = licence.deadline - Date.now();
    if (licence.tries > licenceRetries || remaining <= 0) throw this.licenceError(licence.tries, Date.now() - licence.started);
    this.events.licenceWaits += 1;
    const step = licenceWaitMs / Math.max(1, 2 ** licenceRetries - 1);
    const wait = Math.min(remaining, Math.max(backoffDelay(licence.tries - 1, step, licenceWaitMs), parseRetryAfter(response.headers['retry-after']) ?? 0));
    logger.info('server licences all in use (402); waiting', { id: requestId, try: licence.tries, waitMs: wait });
    await sleep(wait, signal);
  }

  /**
   * A refusal may be force login asking for `authentify()`: worth one try for a session no login
   * made, with credentials. A session that logged in and is still refused lacks a permission.
   */
  private mayAuthentify(sentWith: SessionEntry | undefined): boolean {
    return this.options.credentials !== undefined && sentWith?.login === undefined && !this.noAuthentify;
  }

  /** Sessions this run opened with `$directory/login` (their Cookie headers). */
  private readonly ownLogins = new Set<string>();
  /** Logins of this run in a row whose session has not answered a request yet (a session may also just expire). */
  private unprovenLogins = 0;
  /** A login of this run failed: every later request of the run fails the same way, never logging in again. */
  private loginFailure?: AuthError;

  private cookieNotHonoured(): AuthError {
    return new AuthError(`the server at ${this.options.slot.baseUrl} refused the session its own login had just opened, twice`, {
      hint: 'it does not take its session cookie back: is a proxy removing cookies, or is the base URL another server than the login went to?',
    });
  }

  private failLogin(error: AuthError): AuthError {
    this.loginFailure = error;
    return error;
  }

  /** The last recovery took up a session another run settled (set by `recover`, read by `send`). */
  private adoptedInRecovery = false;

  /** This run found that the server has no `authentify()` for us (not a force-login server): refusals are permissions. */
  private noAuthentify = false;

  /**
   * A 402 means the server tried to open a session for us: whatever cookie we sent named no live
   * session, so we hold no licence and cannot even ask the server for its sessions ($info needs one).
   */
  private licenceError(tries: number, elapsedMs: number): SessionLimitError {
    const { idleMinutes } = this.options;
    // What happened, as measured: the backoff has jitter and a budget, so the tries rarely fill it.
    const seconds = elapsedMs < 10_000 ? (elapsedMs / 1000).toFixed(1) : String(Math.round(elapsedMs / 1000));
    return new SessionLimitError(
      `the server's licences are all in use (HTTP 402 "Maximum number of sessions reached"; ${tries === 1 ? '1 try, no retry' : `${tries} tries over ${seconds} s`})`,
      {
        hint: `other users hold every licence and this tool holds none, so the server cannot even be asked for its sessions; they free up after ${idleMinutes} min idle, or a 4D administrator can close idle ones (4D Server administration window, Users)`,
      },
    );
  }

  private loginRefused(): AuthError {
    return new AuthError(`the server at ${this.options.slot.baseUrl} refused the session (REST login failed)`, {
      hint: this.options.credentials ? 'check the username and password' : 'set LEGACY_USERNAME and LEGACY_PASSWORD (or use --password-stdin)',
    });
  }

  private withCookie(request: HttpRequest, entry: SessionEntry | undefined): HttpRequest {
    const headers = { ...request.headers };
    // Never append: the header is built from our state alone, each cookie name once.
    for (const key of Object.keys(headers)) if (key.toLowerCase() === 'cookie') delete headers[key];
    if (entry) headers.cookie = cookieHeader(entry.cookies);
    return { ...request, headers };
  }

  private newEntry(cookies: Cookies, from?: SessionEntry, extra: Partial<SessionEntry> = {}): SessionEntry {
    const at = now();
    return {
      ...this.options.slot,
      cookies,
      createdAt: at,
      lastUsedAt: at,
      confirmedAt: at,
      idleMinutes: from?.idleMinutes ?? this.options.idleMinutes,
      ...(this.headerEncoding ? { headerEncoding: this.headerEncoding } : {}),
      ...extra,
    };
  }

  /**
   * Look at an answer to a request that carried `sentWith` (after first contact): adopt a
   * replacement, add a cookie, note a confirmation. Returns the session the answer belongs to, and
   * whether the session in use has moved on since the request was sent (another request of ours
   * adopted a replacement or logged in meanwhile): such an answer says nothing about it.
   */
  private async observe(response: HttpResponse, sentWith: SessionEntry | undefined): Promise<{ session: SessionEntry | undefined; stale: boolean }> {
    const change = cookieChange(sentWith?.cookies, await sessionCookiesSetBy(response.setCookies, sentWith?.cookies));
    const stale = moved(this.entry, sentWith);
    if (change.kind === 'new') {
      if (this.entry && sentWith && !sameSession(this.entry.cookies, sentWith.cookies)) {
        // Another in-flight request of ours already adopted a replacement: the server opened one
        // more session for this concurrent request. Nobody else has ever seen its cookie, so
        // logging it out is safe, and it gives its licence back now instead of in an hour.
        this.options.logger.debug('server opened a second replacement session for a concurrent request; releasing it');
        this.events.orphansReleased += 1;
        this.track(this.logout(this.options.slot.baseUrl, change.cookies));
        return { session: this.entry, stale: true };
      }
      this.events.adopted += 1;
      this.options.logger.info(`server replaced the ${slotLabel(this.options.slot)} session (it had expired); adopting the new one`);
      const entry = this.newEntry(change.cookies, sentWith);
      this.remember(entry);
      this.track(this.persistAdoption(entry, sentWith));
      return { session: entry, stale: false };
    }
    if (stale) return { session: this.entry, stale: true };
    if (change.kind === 'added' && sentWith) {
      const entry = { ...sentWith, cookies: change.cookies };
      this.remember(entry);
      this.track(this.persistAdoption(entry, sentWith));
      return { session: entry, stale: false };
    }
    if (sentWith && response.status < 400 && response.status !== 0) {
      this.unprovenLogins = 0;
      this.lastConfirmedAt = now();
      // The first confirmation of a run is written down (last used / confirmed); later ones only at close.
      if (this.persistedAt === undefined) this.track(this.persistTouch());
    }
    return { session: sentWith, stale: false };
  }

  private async logout(baseUrl: string, cookies: Cookies, transport = this.options.transport): Promise<void> {
    for (const value of Object.values(cookies)) registerSecret(value);
    await transport
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
    await this.options.store.remove((e) => sameSlot(e, entry) && sameSession(e.cookies, entry.cookies));
  }

  /** Wait for this run's pending store writes. */
  private async flush(): Promise<void> {
    while (this.pending.length > 0) await Promise.all(this.pending.splice(0));
  }

  private track(promise: Promise<unknown>): void {
    const guarded = promise.catch((error) => this.options.logger.warn(`could not update the session store: ${(error as Error).message}`));
    this.pending.push(guarded);
  }

  /**
   * Store a replacement adopted mid-run, unless another run already stored a different one: then
   * ours was seen by nobody else, so it is logged out and theirs is used for the rest of the run.
   */
  private async persistAdoption(entry: SessionEntry, replaced: SessionEntry | undefined): Promise<void> {
    this.persistedAt = Date.now();
    let theirs: SessionEntry | undefined;
    let written: SessionEntry | undefined;
    // Under the slot lock, like every other write that says which session is the slot's: a run's
    // first contact or login never overwrites this adoption unseen, nor this one theirs.
    await this.options.store.withSlotLock(
      this.options.slot,
      () =>
        this.options.store.updateSlot(
          entry,
          (stored) => {
            theirs = undefined;
            if (stored && !sameSession(stored.cookies, replaced?.cookies) && !sameSession(stored.cookies, entry.cookies)) {
              theirs = stored;
              return undefined;
            }
            written = { ...entry, revision: revisionOf(stored) + 1 };
            return written;
          },
          this.options.lockTimeoutMs,
        ),
      { what: `the ${slotLabel(this.options.slot)} session`, timeoutMs: this.options.lockTimeoutMs ?? 90_000 },
    );
    if (written && this.entry && sameSession(this.entry.cookies, written.cookies)) this.remember(written);
    if (theirs) {
      if (this.entry && sameSession(this.entry.cookies, entry.cookies)) this.remember(theirs);
      this.events.orphansReleased += 1;
      this.options.logger.debug('another run had already stored a replacement session; releasing ours and using theirs');
      await this.logout(this.options.slot.baseUrl, entry.cookies);
    }
  }

  /** Store a session this run created, confirmed or logged in (under the slot lock): the revision moves. */
  private async store(entry: SessionEntry): Promise<SessionEntry> {
    this.persistedAt = Date.now();
    let written = entry;
    await this.options.store.updateSlot(
      entry,
      (stored) => {
        written = { ...entry, revision: revisionOf(stored) + 1 };
        return written;
      },
      this.options.lockTimeoutMs,
    );
    this.remember(written);
    return written;
  }

  private async persistTouch(): Promise<void> {
    const entry = this.entry;
    if (!entry) return;
    const at = now();
    this.persistedAt = Date.now();
    await this.options.store.updateSlot(
      entry,
      (stored) => {
        if (!stored || !sameSession(stored.cookies, entry.cookies)) return undefined;
        return { ...stored, lastUsedAt: at, confirmedAt: this.lastConfirmedAt ?? at };
      },
      this.options.lockTimeoutMs,
    );
  }

  /**
   * The run's first request, single-flight within the process and across processes (see the top of
   * the file). Returns the answer if this call sent `request`, or undefined when the session is
   * settled and the caller sends it.
   */
  private async firstContact(request: HttpRequest, requestId: string): Promise<HttpResponse | undefined> {
    if (this.contact) {
      await this.contact.catch(() => undefined);
      return undefined;
    }
    const pending = this.recover('contact', request, requestId, this.entry);
    this.contact = pending;
    try {
      return await pending;
    } finally {
      this.contact = undefined;
    }
  }

  /**
   * Under the slot lock: adopt what another run stored since `seen` was read, or else find out
   * ourselves (first contact), or log in. Returns the answer to `request` when it was sent here.
   */
  private async recover(why: Recovery, request: HttpRequest, requestId: string, sentWith: SessionEntry | undefined): Promise<HttpResponse | undefined> {
    const { store, slot } = this.options;
    // A replacement this run adopted a moment ago must be in the store before it is compared with it.
    await this.flush();
    const seen = sentWith && this.entry && sameSession(sentWith.cookies, this.entry.cookies) ? this.entry : sentWith;
    return store.withSlotLock(
      slot,
      async () => {
        const stored = await store.find(slot);
        if (why === 'contact' ? moved(stored, seen) : settledSince(stored, seen)) {
          this.remember(stored);
          this.events.fromOtherProcess = true;
          this.contacted = true;
          this.adoptedInRecovery = true;
          this.options.logger.debug(`using the ${slotLabel(slot)} session another run settled meanwhile`);
          return undefined;
        }
        const current = stored ?? (why === 'contact' ? undefined : seen);
        if (why === 'login') {
          const response = await this.loginLocked(current, request, requestId);
          this.contacted = true;
          return response;
        }
        if (why === 'refused') return this.authentifyLocked(current, request, requestId);
        return this.contactLocked(current, request, requestId);
      },
      { what: `the ${slotLabel(slot)} session`, timeoutMs: this.options.lockTimeoutMs ?? 90_000 },
    );
  }

  /** First contact under the lock: send with what is stored and write down what the answer says. */
  private async contactLocked(current: SessionEntry | undefined, request: HttpRequest, requestId: string): Promise<HttpResponse | undefined> {
    const { logger, slot } = this.options;
    const response = await this.transportNow().send(this.withCookie(request, current), requestId);
    const change = cookieChange(current?.cookies, await sessionCookiesSetBy(response.setCookies, current?.cookies));
    if (change.kind === 'new') {
      if (current) {
        this.events.adopted += 1;
        logger.info(`server replaced the ${slotLabel(slot)} session (it had expired); adopting the new one`);
      } else {
        this.events.created += 1;
        logger.info(`created a new server session for ${slotLabel(slot)}`);
      }
      await this.store(this.newEntry(change.cookies, current));
    } else if (change.kind === 'added' && current) {
      await this.store({ ...current, cookies: change.cookies, lastUsedAt: now(), confirmedAt: now() });
    } else if (current && response.status < 400) {
      this.lastConfirmedAt = now();
      await this.store({ ...current, lastUsedAt: now(), confirmedAt: now() });
    } else if (!current && response.status < 400) {
      this.cookieless = true;
      logger.debug('the server set no session cookie; continuing without one');
    }
    if (response.status === 402) return response; // nothing settled: the caller waits and tries again
    this.contacted = true;
    if (isLoginFailed(response)) return this.loginLocked(this.entry ?? current, request, requestId);
    if (isRefusal(response) && this.mayAuthentify(this.entry ?? current)) return this.authentifyLocked(this.entry ?? current, request, requestId);
    return response;
  }

  /** `$directory/login` under the slot lock, then the refused request again. */
  private async loginLocked(current: SessionEntry | undefined, request: HttpRequest, requestId: string): Promise<HttpResponse | undefined> {
    const { credentials, slot, transport, logger } = this.options;
    if (!credentials) {
      throw this.failLogin(
        new AuthError(`the server at ${slot.baseUrl} requires a login`, {
          hint: `set LEGACY_USERNAME and LEGACY_PASSWORD (or LEGACY_${slot.env.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_USERNAME/_PASSWORD), or use --password-stdin`,
        }),
      );
    }
    const result = await directoryLogin(transport, slot.baseUrl, credentials, this.options.idleMinutes, this.headerEncoding);
    this.events.logins += 1;
    if (result.kind === 'licence') return result.response; // the caller's loop handles the licence wait
    if (result.kind === 'unavailable') {
      // No $directory/login for us: a force-login server refuses it like any other request.
      if (isRefusal(result.response)) return this.authentifyLocked(current, request, requestId);
      throw this.failLogin(
        new AuthError(`login as '${credentials.username}' at ${slot.baseUrl} failed (HTTP ${result.response.status})`, {
          hint: 'check the username and password',
        }),
      );
    }
    if (result.kind === 'refused') {
      const nonAscii = !/^[\x20-\x7e]*$/.test(credentials.username + credentials.password);
      throw this.failLogin(
        new AuthError(
          `login as '${credentials.username}' at ${slot.baseUrl} failed (the server refused the credentials${
            nonAscii ? `, sent as ${result.triedEncodings.map((e) => (e === 'utf8' ? 'UTF-8' : 'ISO-8859-1')).join(' and as ')}` : ''
          })`,
          {
            hint: nonAscii
              ? 'check the username and password; they hold non-ASCII characters, and how 4D decodes login headers is not documented: if they are right, try an ASCII-only password'
              : 'check the username and password',
          },
        ),
      );
    }
    this.headerEncoding = result.encoding;
    this.ownLogins.add(cookieHeader(result.cookies));
    this.unprovenLogins += 1;
    this.events.created += 1;
    logger.info(`logged in as ${credentials.username} and stored the session for ${slotLabel(slot)}`);
    await this.store(
      this.newEntry(result.cookies, current, {
        idleMinutes: Math.max(60, this.options.idleMinutes),
        user: credentials.username,
        login: 'directory',
        headerEncoding: result.encoding,
      }),
    );
    return undefined; // the caller sends the request with the new session
  }

  /**
   * Force login: `authentify()` under the slot lock, proved by sending the refused request again
   * (still under the lock, so no other run adopts an unproved session). Proved → stored; refused
   * again → AuthError with the function's answer, nothing stored, no second try.
   */
  private async authentifyLocked(current: SessionEntry | undefined, request: HttpRequest, requestId: string): Promise<HttpResponse | undefined> {
    const { credentials, slot, transport, logger } = this.options;
    if (!credentials) return undefined;
    const result = await authentify(transport, slot.baseUrl, current?.cookies, this.options.authentifyBody, credentials);
    this.events.authentifies += 1;
    if (result.response.status === 402) return result.response;
    if (result.response.status !== 200) {
      // No such function (not a force-login server, or another login scheme): the refusal stands as
      // a permission matter; the caller sends the request once more and reports it.
      this.noAuthentify = true;
      logger.debug(`the server has no authentify() for us (HTTP ${result.response.status}); a refusal is a permission matter`);
      return undefined;
    }
    const cookies = current ? cookieChange(current.cookies, result.cookies) : { kind: 'new' as const, cookies: result.cookies };
    const session = cookies.kind === 'none' ? current?.cookies : cookies.cookies;
    if (!session || Object.keys(session).length === 0) {
      throw this.failLogin(
        new AuthError(
          `login through the application's authentify() at ${slot.baseUrl} failed: the server set no session cookie (HTTP ${result.response.status}: ${result.answer})`,
        ),
      );
    }
    const candidate = this.newEntry(session, current, { user: credentials.username, login: 'authentify', idleMinutes: Math.max(60, this.options.idleMinutes) });
    let proof: HttpResponse;
    try {
      proof = await transport.send(this.withCookie(request, candidate), requestId);
    } catch (error) {
      // Unproved, but it may hold a licence now: keep it (as unproved) so the next run uses it
      // instead of opening another.
      await this.store({ ...candidate, login: undefined }).catch(() => undefined);
      throw error;
    }
    if (proof.status === 402) return proof;
    const after = cookieChange(candidate.cookies, await sessionCookiesSetBy(proof.setCookies, candidate.cookies));
    if (after.kind === 'new') {
      // The server dropped the session again before the proof (a restart, an administrator): nothing
      // is proved either way. Keep the session it opened instead and let the caller try again (bounded);
      // twice in a row means it does not take its cookie back.
      this.unprovenLogins += 1;
      if (this.unprovenLogins >= 2) throw this.failLogin(this.cookieNotHonoured());
      logger.debug('the session was dropped again right after authentify(); trying again');
      await this.store(this.newEntry(after.cookies, current));
      return undefined;
    }
    if (isRefusal(proof) || isLoginFailed(proof)) {
      // Still refused. A function that answered a message or false refused the user (the docs'
      // example returns "Wrong password"); one that answered true, nothing or an object accepted
      // the user, who then lacks the permission for this request: kept, and reported as such.
      if (!result.refusal && isRefusal(proof)) {
        await this.store(candidate);
        return proof;
      }
      throw this.failLogin(
        new AuthError(`login as '${credentials.username}' through the application's authentify() at ${slot.baseUrl} was not accepted: ${result.answer}`, {
          hint: "check the username and password, and the authentify body template ('authentifyBody' in the environment's config, LEGACY_AUTHENTIFY_BODY)",
        }),
      );
    }
    this.contacted = true;
    if (!current || !sameSession(current.cookies, session)) this.events.created += 1;
    logger.info(`logged in as ${credentials.username} through authentify() and stored the session for ${slotLabel(slot)}`);
    await this.store(candidate);
    return proof;
  }

  /**
   * Send with the stored session only: never keeps a new one (used by `session status --server`).
   * Returns undefined when no session is stored for this slot; `gone` when the server no longer
   * knew it (it opened a session for this look, which is logged out at once).
   */
  async sendExisting(request: HttpRequest): Promise<{ response: HttpResponse; gone: boolean } | undefined> {
    await this.admit();
    await this.load(false); // looking only: no licence lease
    const stored = this.entry;
    if (!stored) return undefined;
    this.contacted = true;
    const response = await this.transportNow().send(this.withCookie(request, stored));
    const change = cookieChange(stored.cookies, await sessionCookiesSetBy(response.setCookies, stored.cookies));
    if (change.kind === 'new') {
      await this.logout(this.options.slot.baseUrl, change.cookies);
      this.events.orphansReleased += 1;
      return { response, gone: true };
    }
    return { response, gone: false };
  }

  /**
   * One last request in this run's session after the run stopped (Ctrl-C, SIGTERM) or failed, such
   * as releasing an entity set: with its own short timeout and no retry, since the run's abort signal
   * has fired. It never opens a session: without a session this run has used it is not sent, and a
   * session the server opened for it instead (ours had gone) is logged out at once. Never throws.
   */
  async sendBounded(request: HttpRequest, timeoutMs: number): Promise<HttpResponse | undefined> {
    const entry = this.entry;
    if (!entry || !this.contacted) return undefined;
    const transport = this.options.transport.derive({ signal: undefined, timeoutMs, retries: 0 });
    try {
      const response = await transport.send(this.withCookie(request, entry));
      const change = cookieChange(entry.cookies, await sessionCookiesSetBy(response.setCookies, entry.cookies));
      if (change.kind === 'new') {
        await this.logout(this.options.slot.baseUrl, change.cookies, transport);
        this.events.orphansReleased += 1;
      }
      return response;
    } catch (error) {
      this.options.logger.debug(`a last request after the run stopped failed: ${(error as Error).message}`);
      return undefined;
    }
  }

  /** Record the end of the run (last used) and wait for pending store writes. */
  async close(): Promise<void> {
    await this.flush();
    // Only worth a write when the run was long enough to matter for the idle clock.
    if (this.entry && this.lastConfirmedAt && this.persistedAt !== undefined && Date.now() - this.persistedAt > 30_000) {
      await this.persistTouch().catch(() => undefined);
    }
    const lease = this.lease;
    this.lease = undefined;
    await lease?.release().catch((error) => this.options.logger.warn(`could not release the licence lease: ${(error as Error).message}`));
  }
}
