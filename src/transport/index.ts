/**
 * The bottom layer: one HTTP exchange with got, retried on transient failures.
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
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { classifyResponse, serverMessage } from '../protocol/errors.js';
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
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason instanceof Error ? signal!.reason : new Error(String(signal!.reason)));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff with full jitter in [0.5, 1.0] of the step. */
export function backoffDelay(attempt: number, baseMs: number, capMs = 5000): number {
  const step = Math.min(capMs, baseMs * 2 ** attempt);
  return Math.round(step * (0.5 + Math.random() * 0.5));
}

type Got = typeof import('got').default;

export class Transport {
  private gotInstance?: Got;
  constructor(private readonly options: TransportOptions) {}

  private async got(): Promise<Got> {
    this.gotInstance ??= (await import('got')).default;
    return this.gotInstance;
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
    const got = await this.got();
    const observed = (this.options.observers?.length ?? 0) > 0;
    let attempt = 0;
    for (;;) {
      const started = Date.now();
      let sent = false;
      let sentHeaders: Record<string, string | string[] | number | undefined> = {};
      try {
        const response = await got(request.url, {
          method: request.method,
          headers: { accept: 'application/json', 'user-agent': 'legacy-4d-cli', ...request.headers },
          body: request.body,
          throwHttpErrors: false,
          followRedirect: false,
          retry: { limit: 0 },
          timeout: { request: this.options.timeoutMs },
          https: { rejectUnauthorized: !this.options.insecure },
          agent: agents(),
          signal: this.options.signal,
          // The bytes: a page is scanned without decoding it into a string first (request.decode).
          responseType: 'buffer',
        }).on('request', (req) => {
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
          });
        }
        if (willRetry) {
          const wait = Math.max(backoffDelay(attempt, this.options.backoffMs ?? 200), parseRetryAfter(response.headers['retry-after']) ?? 0);
          logger.info(`retrying after ${garbage ? 'an unreadable response' : `HTTP ${response.statusCode}`}`, { id: requestId, attempt: attempt + 1, waitMs: wait });
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
        const causeCode = ((error as { cause?: { code?: string } }).cause?.code) ?? code;
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
  const plain = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return plain.length > 120 ? `${plain.slice(0, 120)}…` : plain || 'no message';
}
