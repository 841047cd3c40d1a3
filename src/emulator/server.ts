/**
 * The HTTP side: request lifecycle, sessions/licences, fault injection, latency, control API routing.
 *
 * Lifecycle of a `/rest` request (mirrors 4D's RestRequestHandler):
 *   latency → parse URL (urlDecoding: whole | split) → count data request (expireEvery) → duplicate WASID4D
 *   check (401/1822) → session lookup (the cookie names of the generation: v18 WASID4D, v20/v21 4DSID_<app>,
 *   v20r WASID4D then 4DSID_<app>; sliding expiry) → else: force login (v21) makes a guest session; otherwise
 *   authenticate (username-4D/password-4D; a refused `$directory/login` answers `{"result": false}` or 401/1822,
 *   loginRefusal) and take a licence (402/1823 when none) → privilege guard (guest sessions: descriptive requests
 *   only; infoAdminOnly) → pre-dispatch faults (500, 503, 4d500, 4d503, reset) → dispatch
 *   → post-dispatch faults (reset-after-update, truncate, slow) → answer.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Control, handleControlHttp } from './control.js';
import { EmulatorCore } from './core.js';
import { E, errorBody, fourD, RestError } from './errors.js';
import type { RequestClass } from './faults.js';
import { resolveOptions } from './options.js';
import { handleRest, JSON_TYPE, type RestResponse } from './rest.js';
import { credentialsOk, requestedLifetimeMs, requestUser, type Session } from './sessions.js';
import type { EmulatorOptions, FaultKind, RunningEmulator } from './types.js';
import { isRestPath, parseEntityRef, parseRestUrl, type ParsedUrl } from './url.js';

const MAX_BODY_BYTES = 64 * 1024 * 1024;

interface Outgoing extends RestResponse {
  headers: Record<string, string | string[]>;
}

/** All values of cookie `name` over the Cookie header(s), in order (exact, case-sensitive name match). */
export function cookieValues(header: string | string[] | undefined, name: string): string[] {
  if (!header) return [];
  const out: string[] = [];
  for (const part of (Array.isArray(header) ? header.join(';') : header).split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out;
}

/** Bodies of the pre-dispatch faults that answer instead of the request. */
const FAULT_ANSWERS: Partial<Record<FaultKind, { status: number; contentType: string; body: string }>> = {
  '500': { status: 500, contentType: 'text/html; charset=UTF-8', body: '<html><body><h1>500 Internal Server Error</h1></body></html>' },
  '503': { status: 503, contentType: 'text/plain; charset=UTF-8', body: 'Service Unavailable' },
  '4d500': { status: 500, contentType: JSON_TYPE, body: JSON.stringify(errorBody([fourD(1000, 'Error processing the REST request')])) },
  '4d503': { status: 503, contentType: JSON_TYPE, body: JSON.stringify(errorBody([fourD(1000, 'Service temporarily unavailable')])) },
};

function restError(e: RestError, headers: Record<string, string | string[]> = {}): Outgoing {
  return { status: e.status, contentType: JSON_TYPE, body: JSON.stringify(errorBody(e.errors)), headers: { ...headers, ...e.headers } };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new RestError(413, [fourD(1806, 'The request body is too large')]);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const resolved = resolveOptions(options);
  const core = new EmulatorCore(resolved);
  const control = new Control(core);
  const timers = new Set<NodeJS.Timeout>();
  const delay = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });
  const log = (line: string) => {
    if (core.opts.verbose) process.stderr.write(`${line}\n`);
  };

  function write(res: ServerResponse, out: Outgoing, fault: FaultKind | null): void {
    const buf = typeof out.body === 'string' ? Buffer.from(out.body) : out.body;
    res.writeHead(out.status, { 'Content-Type': out.contentType, 'Content-Length': buf.length, ...out.headers });
    if (fault === 'truncate') {
      // correct Content-Length, half the body, then the connection drops
      res.write(buf.subarray(0, Math.floor(buf.length / 2)), () => res.socket?.destroy());
      return;
    }
    res.end(buf);
  }

  interface Settled {
    session: Session | null;
    setCookie: string[];
    /** The forced expiry (expireEvery) ended the session this request named. */
    expired: boolean;
    error?: Outgoing;
  }

  /** Set-Cookie values for a new session under the generation's cookie names. */
  function sessionCookies(names: string[], id: string): string[] {
    return names.map((n) => (n === 'WASID4D' ? `WASID4D=${id}; Path=/; Max-Age=3600; HttpOnly` : `${n}=${id}; Path=/; HttpOnly; SameSite=Strict`));
  }

  /** Settles the session for a request; returns the session or an answer that ends the request (error or refused login). */
  function settleSession(req: IncomingMessage, url: ParsedUrl | null, expireNow: boolean): Settled {
    const opts = core.opts;
    const names = core.cookieNames();
    // a server reads only the cookie names it sets (v20r: WASID4D, then 4DSID_<app>)
    const values = names.read.map((n) => cookieValues(req.headers.cookie, n));
    if (values.every((v) => v.length === 0)) core.counters.requestsWithoutCookie++;
    const was = names.read[0] === 'WASID4D' ? values[0]! : [];
    if (was.length > 1 && opts.duplicateCookie === 'reject') {
      // observed on the legacy server: two WASID4D cookies make authentication fail
      core.counters.duplicateCookieRejections++;
      return { session: null, setCookie: [], expired: false, error: restError(E.loginFailed()) };
    }
    const ids = values.map((v) => v[0]).filter((v): v is string => v !== undefined);
    let expired = false;
    if (expireNow && ids.length > 0) {
      const id = ids[0]!;
      expired = core.sessions.lookup(id) !== undefined && core.sessions.end(id);
      if (expired) core.counters.faults.expire++;
    }
    let existing: Session | undefined;
    for (const id of ids) {
      existing = core.sessions.lookup(id);
      if (existing) break;
    }
    if (existing) {
      core.sessions.touch(existing);
      return { session: existing, setCookie: [], expired };
    }
    const head = url?.segments[0];
    const sub = url?.segments[1];
    if (head === '$directory' && sub === 'logout') return { session: null, setCookie: [], expired };
    if (core.forceLogin) {
      // force login (v21): a guest session (no licence) for any request that names no live session; what it may
      // do is decided after (guardRequest). No header authentication: authentify() replaces it.
      const guest = core.sessions.createGuest();
      core.counters.guestSessionsCreated++;
      return { session: guest, setCookie: sessionCookies(names.set, guest.id), expired };
    }
    if (!credentialsOk(opts.auth, req.headers, opts.headerDecoding)) {
      core.counters.authFailures++;
      if (head === '$directory' && sub === 'login' && opts.loginRefusal === 'result-false') {
        // the docs' refused login: 200 {"result": false}, nothing opened
        return { session: null, setCookie: [], expired, error: { status: 200, contentType: JSON_TYPE, body: JSON.stringify({ result: false }), headers: {} } };
      }
      return { session: null, setCookie: [], expired, error: restError(E.loginFailed()) };
    }
    const session = core.sessions.create(opts.auth ? requestUser(req.headers, opts.headerDecoding)! : '', requestedLifetimeMs(req.headers));
    if (!session) {
      core.counters.rejected402++;
      return { session: null, setCookie: [], expired, error: restError(E.maxSessions()) };
    }
    core.noteSessionCreated();
    return { session, setCookie: sessionCookies(names.set, session.id), expired };
  }

  /**
   * Privilege errors decided before dispatch: a guest session (force login) may only send descriptive requests
   * (`GET /rest/$catalog...`, `POST /rest/$catalog/authentify`, `/rest/$getWebForm`: `REST/authUsers.md`);
   * `infoAdminOnly` refuses `$info` to everyone. Null = go on.
   */
  function guardRequest(session: Session, method: string, url: ParsedUrl): RestError | null {
    const status = core.opts.refusalStatus;
    const [head, sub] = url.segments;
    if (session.guest) {
      if (head === '$catalog' && (method === 'GET' || (method === 'POST' && sub === 'authentify' && url.segments.length === 2))) return null;
      if (head === '$getWebForm') return null;
      if (head === '$info') return E.infoRefused(status);
      if (head !== undefined && !head.startsWith('$')) {
        const { name } = parseEntityRef(head, core.opts.generation !== 'v18');
        const action = method !== 'POST' ? 'read' : url.query.get('$method') === 'delete' ? 'delete' : 'update';
        return E.noPermission(status, name, [action]);
      }
      return E.noPermissionToExecute(status, `"/rest/${url.segments.join('/')}"`);
    }
    if (head === '$info' && core.opts.infoAdminOnly) return E.infoRefused(status);
    return null;
  }

  /** Answers a /rest request; returns what to log (status 0 = connection dropped). */
  async function handleRestRequest(req: IncomingMessage, res: ServerResponse, target: string): Promise<{ status: number; fault: FaultKind | 'expire' | null }> {
    core.counters.requests++;
    if (core.opts.latencyMs > 0) await delay(core.opts.latencyMs);
    let url: ParsedUrl | null = null;
    let urlError: RestError | null = null;
    try {
      url = parseRestUrl(target, core.opts.urlDecoding);
    } catch (e) {
      if (!(e instanceof RestError)) throw e;
      urlError = e;
    }
    const head = url?.segments[0];
    const isData = head !== undefined && !head.startsWith('$');
    const cls: RequestClass = req.method === 'POST' ? 'update' : 'read';
    let expireNow = false;
    if (isData) {
      core.counters.dataRequests++;
      expireNow = core.faults.countDataRequest();
    }
    const { session, setCookie, expired, error } = settleSession(req, url, expireNow);
    const headers: Record<string, string | string[]> = setCookie.length > 0 ? { 'Set-Cookie': setCookie } : {};
    if (error) {
      req.resume();
      write(res, error, null);
      return { status: error.status, fault: expired ? 'expire' : null };
    }
    const refused = session && url ? guardRequest(session, req.method ?? 'GET', url) : null;
    if (refused) {
      // a new guest session's cookie goes out with the refusal
      core.counters.permissionRefusals++;
      req.resume();
      const out = restError(refused, headers);
      write(res, out, null);
      return { status: out.status, fault: expired ? 'expire' : null };
    }
    const fault = isData ? core.faults.pick(cls) : null;
    if (fault) core.counters.faults[fault]++;
    if (fault === 'reset') {
      req.socket.destroy();
      return { status: 0, fault };
    }
    const answer = fault ? FAULT_ANSWERS[fault] : undefined;
    if (answer) {
      req.resume();
      write(res, { ...answer, headers }, null);
      return { status: answer.status, fault };
    }
    let out: Outgoing;
    try {
      if (urlError) throw urlError;
      let body = '';
      if (req.method === 'POST') body = await readBody(req);
      else req.resume();
      out = session
        ? { ...handleRest(core, { method: req.method ?? 'GET', url: url!, headers: req.headers, body, session }), headers }
        : { status: 200, contentType: JSON_TYPE, body: JSON.stringify({ result: true }), headers }; // logout without a session
    } catch (e) {
      if (!(e instanceof RestError)) throw e;
      out = restError(e, headers);
    }
    if (fault === 'reset-after-update') {
      req.socket.destroy();
      return { status: 0, fault };
    }
    if (fault === 'slow') await delay(core.opts.faults.slowMs);
    write(res, out, fault);
    return { status: out.status, fault: fault ?? (expired ? 'expire' : null) };
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    const started = Date.now();
    const ctl = /^\/__emulator(?:\/([^?]*))?/.exec(target);
    if (ctl) {
      await handleControlHttp(control, req, res, ctl[1] ?? '');
      return;
    }
    if (!isRestPath(target)) {
      req.resume();
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=UTF-8' });
      res.end('Not Found');
      return;
    }
    const { status, fault } = await handleRestRequest(req, res, target);
    log(`${req.method} ${target} ${status === 0 ? 'reset' : status} ${Date.now() - started}ms${fault ? ` fault=${fault}` : ''}`);
  }

  const server = createServer((req, res) => {
    onRequest(req, res).catch((e: unknown) => {
      if (!core.opts.quiet) process.stderr.write(`legacy-emulator: internal error on ${req.method} ${req.url}: ${(e as Error).stack ?? String(e)}\n`);
      if (!res.headersSent) {
        const body = JSON.stringify(errorBody([fourD(1, `Internal emulator error: ${(e as Error).message}`)]));
        res.writeHead(500, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      } else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: resolved.host, port: resolved.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = resolved.host.includes(':') ? `[${resolved.host}]` : resolved.host;

  return {
    url: `http://${host}:${port}`,
    port,
    stats: () => core.stats(),
    control,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
