/**
 * `--har FILE`: the run's HTTP exchanges as an HTTP Archive 1.2 file, for bug reports about a real
 * server (it opens in the browsers' developer tools).
 *
 * - Every try is an entry, retries included (`_attempt`, `_willRetry`), failed ones with status 0
 *   and `_error`.
 * - Secrets never reach the file: cookie values (request `Cookie`, response `Set-Cookie`, the
 *   HAR `cookies` lists), login headers (`username-4D`, `password-4D`, `hashed-password-4D`,
 *   `Authorization`) and the session ids `$info` lists are `***`; every value registered as a
 *   secret (live cookies, the password) is masked wherever it appears.
 * - Bodies are capped at HAR_BODY_LIMIT characters each (`content.comment` says so); entries are
 *   streamed to the file as they happen, so memory stays flat however long the run.
 * - Written under a temporary name (0600) and renamed when the run ends, whatever its outcome.
 */
import { openOutputFile, type OutputFile } from '../streams/output-file.js';
import { MASK, redactString } from '../log/redact.js';
import type { Exchange, ExchangeObserver } from './index.js';

export const HAR_BODY_LIMIT = 64 * 1024;

const LOGIN_HEADERS = /^(username-4d|password-4d|hashed-password-4d|authorization|proxy-authorization)$/i;

interface NameValue {
  name: string;
  value: string;
}

/** `a=1; b=2` → the same names with masked values. */
function maskCookieHeader(value: string): string {
  return value
    .split(';')
    .map((part) => {
      const eq = part.indexOf('=');
      return eq < 0 ? part.trim() : `${part.slice(0, eq).trim()}=${MASK}`;
    })
    .join('; ');
}

/** `NAME=value; Path=/; HttpOnly` → `NAME=***; Path=/; HttpOnly`. */
function maskSetCookie(value: string): string {
  return value.replace(/^\s*([^=;]+)=[^;]*/, `$1=${MASK}`);
}

function cookieList(header: string, setCookie: boolean): NameValue[] {
  const parts = setCookie ? [header.split(';')[0] ?? ''] : header.split(';');
  return parts
    .map((p) => p.trim())
    .filter((p) => p.includes('='))
    .map((p) => ({ name: p.slice(0, p.indexOf('=')), value: MASK }));
}

/** Any text we put in the file: registered secrets, cookie assignments and `$info` session ids masked. */
function clean(text: string): string {
  return redactString(text).replace(/("sessionID"\s*:\s*")[^"]*"/g, `$1${MASK}"`);
}

function headerList(headers: Record<string, string | string[] | number | undefined>): { list: NameValue[]; cookies: NameValue[] } {
  const list: NameValue[] = [];
  const cookies: NameValue[] = [];
  for (const [name, raw] of Object.entries(headers)) {
    if (raw === undefined) continue;
    for (const value of (Array.isArray(raw) ? raw : [raw]).map(String)) {
      const lower = name.toLowerCase();
      if (lower === 'cookie') {
        list.push({ name, value: maskCookieHeader(value) });
        cookies.push(...cookieList(value, false));
      } else if (lower === 'set-cookie') {
        list.push({ name, value: maskSetCookie(value) });
        cookies.push(...cookieList(value, true));
      } else if (LOGIN_HEADERS.test(name)) {
        list.push({ name, value: MASK });
      } else {
        list.push({ name, value: clean(value) });
      }
    }
  }
  return { list, cookies };
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function queryList(url: string): NameValue[] {
  const q = url.indexOf('?');
  if (q < 0) return [];
  return url
    .slice(q + 1)
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const eq = pair.indexOf('=');
      return eq < 0 ? { name: decode(pair), value: '' } : { name: decode(pair.slice(0, eq)), value: clean(decode(pair.slice(eq + 1))) };
    });
}

/** A URL without a password in its user part. */
function cleanUrl(url: string): string {
  return clean(url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*:)[^@/]*@/i, `$1${MASK}@`));
}

function capped(text: string | undefined): { text?: string; comment?: string; size: number } {
  if (text === undefined) return { size: 0 };
  // Masked whole, then cut: a cut through a secret (or a sessionID without its closing quote)
  // would otherwise leave its first part unmasked.
  const masked = clean(text);
  if (masked.length <= HAR_BODY_LIMIT) return { text: masked, size: Buffer.byteLength(text) };
  return {
    text: masked.slice(0, HAR_BODY_LIMIT),
    comment: `body cut to its first ${HAR_BODY_LIMIT} characters of ${text.length}`,
    size: Buffer.byteLength(text),
  };
}

function headerValue(headers: Record<string, string | string[] | number | undefined>, name: string): string | undefined {
  const found = Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  return found === undefined ? undefined : String(Array.isArray(found) ? found[0] : found);
}

/** One HAR entry for one try. */
export function harEntry(ex: Exchange): Record<string, unknown> {
  const req = headerList(ex.requestHeaders);
  const res = headerList(ex.responseHeaders);
  const body = capped(ex.responseBody);
  const requestBody = ex.requestBody === undefined ? undefined : capped(ex.requestBody);
  const httpVersion = ex.httpVersion ? `HTTP/${ex.httpVersion}` : 'HTTP/1.1';
  return {
    startedDateTime: ex.startedAt.toISOString(),
    time: ex.ms,
    request: {
      method: ex.method,
      url: cleanUrl(ex.url),
      httpVersion,
      cookies: req.cookies,
      headers: req.list,
      queryString: queryList(ex.url),
      ...(requestBody
        ? {
            postData: {
              mimeType: headerValue(ex.requestHeaders, 'content-type') ?? 'application/octet-stream',
              text: requestBody.text ?? '',
              ...(requestBody.comment ? { comment: requestBody.comment } : {}),
            },
          }
        : {}),
      headersSize: -1,
      bodySize: requestBody?.size ?? 0,
    },
    response: {
      status: ex.status,
      statusText: ex.statusText ?? '',
      httpVersion,
      cookies: res.cookies,
      headers: res.list,
      content: {
        size: body.size,
        mimeType: headerValue(ex.responseHeaders, 'content-type') ?? '',
        ...(body.text !== undefined ? { text: body.text } : {}),
        ...(body.comment ? { comment: body.comment } : {}),
      },
      redirectURL: headerValue(ex.responseHeaders, 'location') ?? '',
      headersSize: -1,
      bodySize: ex.status === 0 ? -1 : body.size,
      ...(ex.error ? { _error: clean(ex.error) } : {}),
    },
    cache: {},
    timings: { blocked: -1, dns: -1, connect: -1, send: 0, wait: ex.ms, receive: 0, ssl: -1 },
    _requestId: ex.requestId,
    _attempt: ex.attempt,
    _willRetry: ex.willRetry,
  };
}

/** Streams entries into the HAR file; `close()` finishes and renames it. */
export class HarRecorder implements ExchangeObserver {
  private entries = 0;
  private closed = false;

  private constructor(
    private readonly file: OutputFile,
    readonly path: string,
  ) {}

  /** Create the temporary file now, so an unwritable place fails before any request (exit 73). */
  static async open(path: string, cwd: string, creator: { name: string; version: string }): Promise<HarRecorder> {
    const file = await openOutputFile(path, cwd, { mode: 0o600, private: true, what: 'HAR file' });
    file.stream.write(`{"log":{"version":"1.2","creator":${JSON.stringify(creator)},"entries":[`);
    return new HarRecorder(file, path);
  }

  onExchange(exchange: Exchange): void {
    if (this.closed) return;
    this.file.stream.write(`${this.entries++ === 0 ? '\n' : ',\n'}${JSON.stringify(harEntry(exchange))}`);
  }

  /** Finish the archive and put it in place (done for failed runs too: they are the ones to report). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.file.stream.write(`${this.entries ? '\n' : ''}]}}\n`);
    await this.file.commit();
  }
}
