/**
 * A session's identity is the cookie(s) the server set when it opened it: `WASID4D` (4D v17/v18),
 * `4DSID_<AppName>` (v19+ scalable sessions), both (some v20 R setups), or, on a server that uses
 * neither, whatever it set (4d-generations.md §1). The names are learnt from `Set-Cookie` and kept
 * with the session; what is sent, compared and adopted is always that learnt set.
 *
 * Which of the cookies an answer sets belong to the session: the names the session already has;
 * else the documented 4D session names among them; else (a server naming its cookie otherwise) all
 * of them. So a proxy's own cookie (a load balancer's `AWSALB`, rotated on every answer) never
 * becomes, or replaces, the session beside a 4D cookie.
 *
 * - sent: the cookies a request carried (one value per name, built from our own state);
 * - set: the session cookies the answer set (a deletion, `Max-Age=0` or an empty value, is ignored);
 * - the answer names a *new* session when it gives a cookie we sent another value, or when it
 *   sets session cookies none of whose names we sent (the server did not know our session);
 * - an answer that repeats our values (a server refreshing the cookie's expiry) changes nothing;
 * - an answer that keeps our values and adds a session name is the same session with one more cookie.
 */
import { registerSecret } from '../log/index.js';

export type Cookies = Record<string, string>;

type CookieModule = typeof import('tough-cookie');
let toughCookie: CookieModule | undefined;

/** The documented names of 4D session cookies (they only prefer; an unknown name still works). */
const FOUR_D_SESSION = /^(WASID4D|4DSID_.+)$/;

/** The session cookies of an answer: see the top of the file. `known`: the session's cookies, if any. */
export function sessionCookies(all: Cookies, known?: Cookies): Cookies {
  const names = Object.keys(all);
  const pick = (keep: (name: string) => boolean) => Object.fromEntries(names.filter(keep).map((n) => [n, all[n]!]));
  // With a session: its own names, and any documented 4D name (a server that moved to another
  // generation); never a stranger's cookie beside them.
  if (known && Object.keys(known).length > 0) return pick((n) => n in known || FOUR_D_SESSION.test(n));
  const documented = pick((n) => FOUR_D_SESSION.test(n));
  return Object.keys(documented).length > 0 ? documented : all;
}

/** The session cookies a response set, read against the session `known` (undefined: none yet). */
export async function sessionCookiesSetBy(setCookies: string[], known?: Cookies): Promise<Cookies> {
  return sessionCookies(await cookiesSetBy(setCookies), known);
}

/** Every cookie a response set: name → value (tough-cookie parses, leniently). */
async function cookiesSetBy(setCookies: string[]): Promise<Cookies> {
  if (setCookies.length === 0) return {};
  toughCookie ??= await import('tough-cookie');
  const found: Cookies = {};
  for (const raw of setCookies) {
    const cookie = toughCookie.Cookie.parse(raw, { loose: true });
    if (!cookie || cookie.key === '') continue;
    if (cookie.value === '' || (typeof cookie.maxAge === 'number' && cookie.maxAge <= 0)) continue; // a deletion
    found[cookie.key] = cookie.value;
    registerSecret(cookie.value);
  }
  return found;
}

/** The one Cookie header: each name exactly once, built from our own state. */
export function cookieHeader(cookies: Cookies): string {
  return Object.entries(cookies)
    .map(([name, value]) => `${name}=${value}`)
    .join('; ');
}

/** Two cookie sets name the same session: the same names with the same values. */
export function sameSession(a: Cookies | undefined, b: Cookies | undefined): boolean {
  if (!a || !b) return a === b;
  const names = Object.keys(a);
  return names.length === Object.keys(b).length && names.every((name) => b[name] === a[name]);
}

/** Does any of our cookie values equal `id` (a session id the server lists in `$info`)? */
export function holdsId(cookies: Cookies | undefined, id: string): boolean {
  return !!cookies && id !== '' && Object.values(cookies).includes(id);
}

/** One value to show (masked) for a session: the first cookie's. */
export function displayValue(cookies: Cookies | undefined): string | undefined {
  return cookies ? Object.values(cookies)[0] : undefined;
}

export type CookieChange =
  /** The answer set nothing new. */
  | { kind: 'none' }
  /** The same session, with one more cookie the server added. */
  | { kind: 'added'; cookies: Cookies }
  /** The server opened a new session for this request (ours was unknown to it, or there was none). */
  | { kind: 'new'; cookies: Cookies };

/** What the cookies an answer set mean for the session the request carried (see the top of the file). */
export function cookieChange(sent: Cookies | undefined, set: Cookies): CookieChange {
  const names = Object.keys(set);
  if (names.length === 0) return { kind: 'none' };
  if (!sent || Object.keys(sent).length === 0) return { kind: 'new', cookies: set };
  if (names.some((name) => sent[name] !== undefined && sent[name] !== set[name])) return { kind: 'new', cookies: set };
  if (!names.some((name) => sent[name] !== undefined)) return { kind: 'new', cookies: set };
  if (names.every((name) => sent[name] === set[name])) return { kind: 'none' };
  return { kind: 'added', cookies: { ...sent, ...set } };
}

/**
 * Which 4D generation the cookie names point to (for `doctor` and the probe): the documented
 * names only describe; they never decide what is sent or compared.
 */
export function generationOf(names: string[]): string {
  const legacy = names.includes('WASID4D');
  const scalable = names.find((n) => n.startsWith('4DSID_'));
  if (legacy && scalable) return `4D v20 R-style (WASID4D and ${scalable})`;
  if (scalable) return `4D v19+ scalable sessions (${scalable})`;
  if (legacy) return '4D v17/v18 (WASID4D)';
  return names.length ? `unknown (cookies ${names.join(', ')})` : 'unknown (no session cookie seen yet)';
}
