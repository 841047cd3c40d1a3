/**
 * The two ways a 4D server grants a session its licence (4d-generations.md §2):
 *
 * - `POST /rest/$directory/login` with `username-4D`/`password-4D` headers (every generation; the
 *   `On REST Authentication` method decides). A refusal is `{"result": false}` (the docs) or
 *   401/1822 (observed). How 4D decodes a header's bytes is not documented: a non-ASCII password is
 *   sent as UTF-8 first and, when that is refused and the text fits ISO-8859-1, once more as
 *   ISO-8859-1. A refused login opens nothing, so the second try costs no licence.
 * - force login (4D v20 R6+, v21): `POST /rest/$catalog/authentify` runs the application's own
 *   `authentify()` function with a JSON array of parameters. The body is the application's choice,
 *   so it is a template (default: the docs' example, one object with `name` and `password`). Its
 *   answer proves nothing: only the next data request does (see manager.ts).
 */
import { isLoginFailed } from '../protocol/errors.js';
import { restUrl } from '../protocol/url.js';
import { registerSecret } from '../log/index.js';
import type { HttpResponse, Transport } from '../transport/index.js';
import { cookieHeader, type Cookies, sessionCookiesSetBy } from './cookies.js';

export interface Credentials {
  username: string;
  password: string;
}

/** How the login headers' text goes over the wire. */
export type HeaderEncoding = 'utf8' | 'latin1';

/** The docs' example of an `authentify()` call: one parameter, an object with the name and the password. */
export const DEFAULT_AUTHENTIFY_BODY: unknown = [{ name: '{user}', password: '{password}' }];

const isAscii = (text: string) => /^[\x20-\x7e]*$/.test(text);
const fitsLatin1 = (text: string) => /^[\x20-\x7e\xa0-\xff]*$/.test(text);

/** A header value whose bytes on the wire are `text` in `encoding` (node writes header strings as ISO-8859-1). */
export function headerText(text: string, encoding: HeaderEncoding): string {
  const wire = encoding === 'utf8' ? Buffer.from(text, 'utf8').toString('latin1') : text;
  registerSecret(wire, true);
  return wire;
}

/** The encodings worth trying for these credentials, the one known to work first. */
export function encodingsFor(credentials: Credentials, known?: HeaderEncoding): HeaderEncoding[] {
  const text = credentials.username + credentials.password;
  if (isAscii(text)) return ['utf8'];
  const all: HeaderEncoding[] = fitsLatin1(text) ? ['utf8', 'latin1'] : ['utf8'];
  return known && all.includes(known) ? [known, ...all.filter((e) => e !== known)] : all;
}

export type DirectoryLoginResult =
  | { kind: 'ok'; cookies: Cookies; encoding: HeaderEncoding; response: HttpResponse }
  | { kind: 'licence'; response: HttpResponse }
  | { kind: 'refused'; status: number; triedEncodings: HeaderEncoding[] }
  /** The server has no $directory/login for us (force login refuses it like any other request). */
  | { kind: 'unavailable'; response: HttpResponse };

export async function directoryLogin(
  transport: Transport,
  baseUrl: string,
  credentials: Credentials,
  idleMinutes: number,
  known?: HeaderEncoding,
): Promise<DirectoryLoginResult> {
  const tried: HeaderEncoding[] = [];
  let lastStatus = 0;
  for (const encoding of encodingsFor(credentials, known)) {
    tried.push(encoding);
    const response = await transport.send({
      method: 'POST',
      url: restUrl(baseUrl, { kind: 'directory', action: 'login' }),
      headers: {
        'username-4D': headerText(credentials.username, encoding),
        'password-4D': headerText(credentials.password, encoding),
        'session-4D-length': String(Math.max(60, Math.round(idleMinutes))),
        'content-type': 'application/json',
      },
      body: '{}',
      // Never re-sent blindly: a login that reached the server may have opened a session (a licence)
      // whose answer was lost; a second one would open another.
      idempotent: false,
    });
    if (response.status === 402) return { kind: 'licence', response };
    const cookies = await sessionCookiesSetBy(response.setCookies);
    const refusedBody = (response.json as { result?: unknown } | undefined)?.result === false;
    if (response.status === 200 && !refusedBody && Object.keys(cookies).length > 0) return { kind: 'ok', cookies, encoding, response };
    lastStatus = response.status;
    const refused = (response.status === 200 && refusedBody) || isLoginFailed(response.status, response.json);
    if (!refused) return { kind: 'unavailable', response };
  }
  return { kind: 'refused', status: lastStatus, triedEncodings: tried };
}

/** The template with `{user}` and `{password}` filled in wherever they stand in a string (JSON-safe by construction). */
export function fillTemplate(template: unknown, credentials: Credentials): unknown {
  if (typeof template === 'string') return template.split('{user}').join(credentials.username).split('{password}').join(credentials.password);
  if (Array.isArray(template)) return template.map((v) => fillTemplate(v, credentials));
  if (template && typeof template === 'object') {
    return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, fillTemplate(v, credentials)]));
  }
  return template;
}

/** The parameters array sent to `authentify()`: a template that is not an array is the one parameter. */
export function authentifyBody(template: unknown, credentials: Credentials): string {
  const filled = fillTemplate(template ?? DEFAULT_AUTHENTIFY_BODY, credentials);
  const body = JSON.stringify(Array.isArray(filled) ? filled : [filled]);
  // The password may appear JSON-escaped in the body (and so in a HAR file or a debug log).
  registerSecret(JSON.stringify(credentials.password).slice(1, -1), true);
  return body;
}

export interface AuthentifyResult {
  response: HttpResponse;
  /** Cookies the answer set (a guest session the server opened for a request without one). */
  cookies: Cookies;
  /** The function's answer, one line, for messages ("Wrong password"). */
  answer: string;
  /** The answer reads as a refusal: a non-empty message, or false (the docs' example returns "Wrong password"). */
  refusal: boolean;
}

export async function authentify(
  transport: Transport,
  baseUrl: string,
  cookies: Cookies | undefined,
  template: unknown,
  credentials: Credentials,
): Promise<AuthentifyResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (cookies && Object.keys(cookies).length > 0) headers.cookie = cookieHeader(cookies);
  const response = await transport.send({
    method: 'POST',
    url: restUrl(baseUrl, { kind: 'authentify' }),
    headers,
    body: authentifyBody(template, credentials),
    idempotent: false, // see directoryLogin
  });
  const set = await sessionCookiesSetBy(response.setCookies, cookies);
  const result = (response.json as { result?: unknown } | undefined)?.result;
  const shown = result === undefined ? response.text || `HTTP ${response.status}` : typeof result === 'string' ? result : JSON.stringify(result);
  const oneLine = shown.replace(/\s+/g, ' ').trim();
  const refusal = result === false || (typeof result === 'string' && result.trim() !== '');
  // Bounded: a function's message is short ("Wrong password"); anything long is not shown.
  return { response, cookies: set, answer: oneLine.length > 120 ? `${oneLine.slice(0, 120)}…` : oneLine, refusal };
}
