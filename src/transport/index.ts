/**
 * The bottom layer: one HTTP exchange (node:http, node:https), retried on transient failures.
 *
 * Transient = connection refused/reset, timeouts, a truncated or unparseable body, 502/503/504
 * whatever the body, and a 500 unless its 4D errCode is of a deterministic class (a rejected
 * query, an unknown name, a permission, a stamp conflict: see protocol/errors.ts, the one table).
 * Only idempotent requests are retried; a write that may have reached the server is reported as
 * such and never re-sent here (the caller re-reads and decides).
 *
 * Every try is reported to the observers (HAR recording, metrics) with what was really sent.
 *
 * No cookie handling here: the session layer above builds the one Cookie header.
 */
import { randomBytes } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import zlib from 'node:zlib';
import { classifyResponse, isServerDown, serverMessage } from '../protocol/errors.js';
import { UnavailableError } from '../errors/index.js';
import type { Logger } from '../log/index.js';

export interface HttpRequest {
  method: 'GET' | 'POST';
  /** Absolute URL, already percent-encoded. */
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** Safe to send again (reads). Writes are never retried blindly. */
  idempotent: boolean;
  /** Id for logs and the audit trail; generated when absent. */
  requestId?: string;
  /**
   * Reads the body of a 200 answer instead of JSON.parse (the export's page scanner); what it
   * returns is the response's `json`. A throw counts as an unreadable body, retried like one.
   */
  decode?: (body: Buffer) => unknown;
  /** A buffer for the body of a 200 answer of announced length (the export's page pool). */
  bodyBuffer?: (length: number) => Buffer;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Raw `Set-Cookie` header values. */
  setCookies: string[];
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  json: unknown;
  /** The body text (bounded: error bodies are cut to 64 KiB). */
  text: string;
  /** The body's length in bytes. */
  bytes: number;
  requestId: string;
  ms: number;
  retries: number;
}

/** One try of one request, as it went over the wire (for HAR files and metrics). */
export interface Exchange {
  requestId: string;
  /** 0 for the first try, then 1, 2, ... for retries of the same request. */
  attempt: number;
  startedAt: Date;
  method: string;
  url: string;
  /** The request headers as sent (secrets included: observers must mask them). */
  requestHeaders: Record<string, string | string[] | number | undefined>;
  requestBody?: string;
  /** 0 when no answer came (network error, timeout). */
  status: number;
  statusText?: string;
  httpVersion?: string;
  responseHeaders: Record<string, string | string[] | undefined>;
  /** The raw body text (secrets included: observers must mask them). */
  responseBody?: string;
  /** The network error code when there was no answer. */
  error?: string;
  ms: number;
  /** The transport will send this request again. */
  willRetry: boolean;
  /**
   * The try failed the way an unavailable server fails: no answer (refused, reset, timed out; not a
   * TLS failure), 502/503/504 or a 500 without a 4D error body (protocol/errors.ts isServerDown),
   * or an unreadable body. A 402, any other 4xx (408 and 429 too) or any 4D error body is an answer
   * (the circuit breaker: session/breaker.ts).
   */
  unavailable: boolean;
}

export interface ExchangeObserver {
  onExchange(exchange: Exchange): void;
}

export interface TransportOptions {
  timeoutMs: number;
  retries: number;
  insecure?: boolean;
  logger: Logger;
  signal?: AbortSignal;
  /** Base delay of the exponential backoff between retries (ms). */
  backoffMs?: number;
  /** Told about every try (HAR recorder, metrics). */
  observers?: ExchangeObserver[];
}

/** A request that failed at the transport level after all retries. */
export class TransportError extends UnavailableError {
  /** True when the request may have reached the server (it was fully sent before the failure). */
  readonly maybeDelivered: boolean;
  readonly causeCode?: string;
  constructor(message: string, options: { hint?: string; cause?: unknown; maybeDelivered: boolean; causeCode?: string }) {
    super(message, options);
    this.maybeDelivered = options.maybeDelivered;
    this.causeCode = options.causeCode;
  }
}

const TLS_CODES = /^(EPROTO|ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|HOSTNAME_MISMATCH)/;
const MAX_ERROR_BODY = 64 * 1024;

let sharedAgents: { http: HttpAgent; https: HttpsAgent } | undefined;
function agents() {
  sharedAgents ??= {
    http: new HttpAgent({ keepAlive: true, maxSockets: 32 }),
    https: new HttpsAgent({ keepAlive: true, maxSockets: 32 }),
  };
  return sharedAgents;
}

export function newRequestId(): string {
  return randomBytes(4).toString('hex');
}

/** Path and query of a URL, for logs (never headers, never cookies). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    const text = `${u.pathname}${u.search}`;
    return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
  } catch {
    return url;
  }
}

export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(raw);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

export { parseRetryAfter };

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    const timer = setTimeout(() => {
      offAbort(signal, aborted);
      resolve();
    }, ms);
    const aborted = () => {
      clearTimeout(timer);
      reject(signal!.reason instanceof Error ? signal!.reason : new Error(String(signal!.reason)));
    };
    onAbort(signal, aborted);
  });
}

/** Exponential backoff with full jitter in [0.5, 1.0] of the step. */
export function backoffDelay(attempt: number, baseMs: number, capMs = 5000): number {
  const step = Math.min(capMs, baseMs * 2 ** attempt);
  return Math.round(step * (0.5 + Math.random() * 0.5));
}

/** What got asked for (its `decompress`, on Node 20): we decompress these. */
const ACCEPT_ENCODING = 'gzip, deflate, br';

interface RawResponse {
  statusCode: number;
  statusMessage: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  /** The whole body, decompressed. */
  body: Buffer;
}

/** An error with a code, as Node's network errors have (ETIMEDOUT, ECONNRESET). */
function codedError(message: string, code: string, name = 'Error'): Error {
  return Object.assign(new Error(message), { code, name });
}

/** A zlib stream starts with CMF (method 8, deflate) and FLG, which make a multiple of 31 (RFC 1950). */
function zlibHeader(body: Buffer): boolean {
  return body.length >= 2 && (body[0]! & 0x0f) === 8 && ((body[0]! << 8) | body[1]!) % 31 === 0;
}

/** The body as the server meant it: gzip, zlib or raw deflate, or brotli undone (like got's decompress-response). */
function decompress(body: Buffer, encoding: string): Promise<Buffer> {
  if (body.length === 0 || !['gzip', 'deflate', 'br'].includes(encoding)) return Promise.resolve(body);
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, result: Buffer) => (error ? reject(error) : resolve(result));
    if (encoding === 'br') zlib.brotliDecompress(body, done);
    else if (encoding === 'deflate' && !zlibHeader(body)) zlib.inflateRaw(body, done);
    else zlib.unzip(body, done);
  });
}

function abortError(): Error {
  return codedError('The operation was aborted', 'ABORT_ERR', 'AbortError');
}

/** Callbacks to run when a signal aborts, per signal: the signal itself gets one listener. */
const abortCallbacks = new WeakMap<AbortSignal, Set<() => void>>();

function onAbort(signal: AbortSignal | undefined, callback: () => void): void {
  if (!signal) return;
  let callbacks = abortCallbacks.get(signal);
  if (!callbacks) {
    const set = new Set<() => void>();
    abortCallbacks.set(signal, set);
    signal.addEventListener(
      'abort',
      () => {
        for (const f of [...set]) f();
      },
      { once: true },
    );
    callbacks = set;
  }
  callbacks.add(callback);
}

function offAbort(signal: AbortSignal | undefined, callback: () => void): void {
  if (signal) abortCallbacks.get(signal)?.delete(callback);
}

/**
 * One request and its whole response with node:http(s) on the shared keep-alive agents. Rejects on
 * a network error, a cut-off body, or after `timeoutMs` for the whole exchange (code ETIMEDOUT).
 * (got did this until issue 15: for the 200 pages of a 200,000-row export it cost 0.6 s of CPU and
 * 40 MB of peak memory more than node:http itself, for nothing this transport uses.)
 */
function exchange(request: HttpRequest, options: TransportOptions, onRequest: (req: ClientRequest) => void): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(abortError());
    const url = new URL(request.url);
    const secure = url.protocol === 'https:';
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': 'legacy-4d-cli',
      'accept-encoding': ACCEPT_ENCODING,
      ...request.headers,
    };
    if (request.body !== undefined) headers['content-length'] = String(Buffer.byteLength(request.body));
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(error);
    };
    const req = (secure ? httpsRequest : httpRequest)(url, {
      method: request.method,
      headers,
      agent: secure ? agents().https : agents().http,
      ...(secure ? { rejectUnauthorized: !options.insecure } : {}),
    });
    // One abort listener for all requests in flight (one each would pass the signal's 10 and warn).
    const aborted = () => fail(abortError());
    onAbort(options.signal, aborted);
    req.once('close', () => offAbort(options.signal, aborted));
    const timer = setTimeout(() => fail(codedError(`Timeout awaiting 'request' for ${options.timeoutMs}ms`, 'ETIMEDOUT', 'TimeoutError')), options.timeoutMs);
    req.on('error', fail);
    req.on('response', (res) => {
      // The announced length is read into one buffer; otherwise (chunked, compressed) chunks are joined.
      const announced = Number(res.headers['content-length']);
      const encoding = String(res.headers['content-encoding'] ?? '').toLowerCase();
      let body: Buffer | undefined;
      if (Number.isSafeInteger(announced) && announced >= 0 && announced <= 256 * 1024 * 1024 && !encoding) {
        body = res.statusCode === 200 && request.bodyBuffer ? request.bodyBuffer(announced) : Buffer.allocUnsafe(announced);
      }
      let filled = 0;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        if (body && filled + chunk.length <= body.length) {
          chunk.copy(body, filled);
        } else {
          if (body) chunks.push(body.subarray(0, filled));
          body = undefined;
          chunks.push(chunk);
        }
        filled += chunk.length;
      });
      res.on('error', fail);
      res.on('close', () => {
        if (!res.complete) fail(codedError('the connection closed before the whole answer arrived', 'ECONNRESET'));
      });
      res.on('end', () => {
        if (!res.complete) return fail(codedError('the connection closed before the whole answer arrived', 'ECONNRESET'));
        const raw = body && filled === body.length ? body : Buffer.concat(body ? [body.subarray(0, filled)] : chunks);
        decompress(raw, encoding).then((decoded) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({
            statusCode: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            httpVersion: res.httpVersion,
            headers: res.headers,
            body: decoded,
          });
        }, fail);
      });
    });
    onRequest(req);
    // The body as bytes, never as a string: node sends the header block together with a first string
    // chunk in that chunk's encoding (UTF-8), but alone in ISO-8859-1. The bytes of a header value must
    // not depend on whether a body follows (login headers with non-ASCII passwords: session/login.ts).
    req.end(request.body === undefined ? undefined : Buffer.from(request.body, 'utf8'));
  });
}

export class Transport {
  constructor(private readonly options: TransportOptions) {}

  /** The same transport (logger, observers, TLS) with some options changed, e.g. its own timeout and signal. */
  derive(patch: Partial<TransportOptions>): Transport {
    return new Transport({ ...this.options, ...patch });
  }

  private notify(exchange: Exchange): void {
    for (const observer of this.options.observers ?? []) {
      try {
        observer.onExchange(exchange);
      } catch (error) {
        this.options.logger.debug(`an exchange observer failed: ${(error as Error).message}`);
      }
    }
  }

  /** Send one request, retrying transient failures of idempotent requests. */
  async send(request: HttpRequest, requestId = newRequestId()): Promise<HttpResponse> {
    const { logger, retries } = this.options;
    const observed = (this.options.observers?.length ?? 0) > 0;
    let attempt = 0;
    for (;;) {
      const started = Date.now();
      let sent = false;
      let sentHeaders: Record<string, string | string[] | number | undefined> = {};
      try {
        const response = await exchange(request, this.options, (req) => {
          if (observed) sentHeaders = req.getHeaders();
          // Once the request is fully written the server may act on it (maybeDelivered).
          req.once('finish', () => {
            sent = true;
          });
        });
        const ms = Date.now() - started;
        const contentType = String(response.headers['content-type'] ?? '');
        const body = response.body;
        let text = '';
        let json: unknown;
        let parseFailed = false;
        if (body.length > 0) {
          const decode = response.statusCode === 200 ? request.decode : undefined;
          if (!decode) text = body.toString();
          try {
            json = decode ? decode(body) : JSON.parse(text);
          } catch {
            parseFailed = true;
          }
        }
        if (response.statusCode >= 400 && text.length > MAX_ERROR_BODY) text = `${text.slice(0, MAX_ERROR_BODY)}…`;
        // A parsed success body is all callers need; do not keep a second copy of a large page alive.
        if (json !== undefined && response.statusCode < 300) text = '';
        const setCookie = response.headers['set-cookie'];
        const result: HttpResponse = {
          status: response.statusCode,
          headers: response.headers,
          setCookies: Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : [],
          json,
          text,
          bytes: body.length,
          requestId,
          ms,
          retries: attempt,
        };
        const transientStatus = classifyResponse(response.statusCode, json).transient;
        const garbage = response.statusCode < 300 && (parseFailed || (text.length > 0 && !/json/i.test(contentType) && json === undefined));
        const willRetry = (transientStatus || garbage) && request.idempotent && attempt < retries;
        if (logger.isEnabled('debug')) {
          logger.debug(`http ${request.method} ${describeUrl(request.url)} → ${response.statusCode} ${ms}ms`, {
            id: requestId,
            retries: attempt,
            bytes: response.body.length,
          });
        }
        if (observed) {
          this.notify({
            requestId,
            attempt,
            startedAt: new Date(started),
            method: request.method,
            url: request.url,
            requestHeaders: sentHeaders,
            requestBody: request.body,
            status: response.statusCode,
            statusText: response.statusMessage,
            httpVersion: response.httpVersion,
            responseHeaders: response.headers,
            // Decoded only for an observer that reads it (the HAR recorder; metrics do not).
            get responseBody() {
              return body.toString();
            },
            ms,
            willRetry,
            unavailable: isServerDown(response.statusCode, json) || garbage,
          });
        }
        if (willRetry) {
          const wait = Math.max(backoffDelay(attempt, this.options.backoffMs ?? 200), parseRetryAfter(response.headers['retry-after']) ?? 0);
          logger.info(`retrying after ${garbage ? 'an unreadable response' : `HTTP ${response.statusCode}`}`, {
            id: requestId,
            attempt: attempt + 1,
            waitMs: wait,
          });
          attempt += 1;
          await sleep(wait, this.options.signal);
          continue;
        }
        if (garbage) {
          throw new UnavailableError(
            `${originOf(request.url)} answered ${describeUrl(request.url)} with something that is not JSON (HTTP ${response.statusCode}, ${contentType || 'no content type'})`,
            { hint: 'is the URL a 4D server with "Expose as REST server" enabled?' },
          );
        }
        if (transientStatus && request.idempotent) {
          throw new UnavailableError(
            `${originOf(request.url)} kept answering HTTP ${response.statusCode} (${attempt + 1} tries): ${serverMessage(json, text ? oneLineSnippet(text) : 'no message')}`,
            { hint: 'the server is overloaded or failing; try again later or raise --retries' },
          );
        }
        return result;
      } catch (error) {
        if (error instanceof UnavailableError) throw error;
        if (this.options.signal?.aborted) throw error;
        const code = (error as { code?: string }).code ?? '';
        const causeCode = (error as { cause?: { code?: string } }).cause?.code ?? code;
        const ms = Date.now() - started;
        logger.debug(`http ${request.method} ${describeUrl(request.url)} ✗ ${code} ${ms}ms`, { id: requestId, retries: attempt });
        const tls = TLS_CODES.test(causeCode) || TLS_CODES.test(code) || /SSL|TLS|certificate/i.test((error as Error).message ?? '');
        const willRetry = !tls && request.idempotent && attempt < retries;
        if (observed) {
          this.notify({
            requestId,
            attempt,
            startedAt: new Date(started),
            method: request.method,
            url: request.url,
            requestHeaders: sentHeaders,
            requestBody: request.body,
            status: 0,
            responseHeaders: {},
            error: causeCode || code || (error as Error).message,
            ms,
            willRetry,
            unavailable: !tls,
          });
        }
        if (tls) {
          throw new TransportError(`TLS failure talking to ${originOf(request.url)}: ${causeCode || code}`, {
            hint: /CERT|SIGNATURE|SELF_SIGNED|UNABLE_TO/.test(causeCode)
              ? 'the certificate could not be verified; if you trust this server set "insecure": true for the environment'
              : 'is the server really speaking https on this port? use http:// if not',
            cause: error,
            maybeDelivered: false,
            causeCode,
          });
        }
        if (willRetry) {
          const wait = backoffDelay(attempt, this.options.backoffMs ?? 200);
          logger.info(`retrying after ${code || 'a network error'}`, { id: requestId, attempt: attempt + 1, waitMs: wait });
          attempt += 1;
          await sleep(wait, this.options.signal);
          continue;
        }
        const timeout = code === 'ETIMEDOUT' || /timeout/i.test((error as Error).name ?? '');
        throw new TransportError(
          timeout
            ? `${originOf(request.url)} did not answer within ${this.options.timeoutMs} ms (${attempt + 1} tries)`
            : `cannot reach ${originOf(request.url)}: ${causeCode || code || (error as Error).message} (${attempt + 1} tries)`,
          {
            hint: timeout ? 'raise --timeout, or check the server' : 'check that the server is running and the URL is right (legacy env list)',
            cause: error,
            maybeDelivered: sent,
            causeCode: causeCode || code,
          },
        );
      }
    }
  }
}

/** The start of a non-JSON error body, one line (an HTML error page says little more). */
function oneLineSnippet(text: string): string {
  const plain = text
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return plain.length > 120 ? `${plain.slice(0, 120)}…` : plain || 'no message';
}
