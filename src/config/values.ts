/**
 * The checks of single values that config.json, flags and variables share: base URLs, environment
 * names, session stores, the force-login template; and a URL made fit to print.
 */
import { ConfigError } from '../errors/index.js';

const ENV_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function validateEnvName(name: string): string | undefined {
  return ENV_NAME.test(name) ? undefined : `environment name '${name}' must be letters, digits, '-' or '_' (at most 64)`;
}

/**
 * A URL fit to print: the password masked, also a `?password=` and one in a URL too broken to
 * parse (a password may hold '@' or '/').
 */
export function maskUrl(raw: string): string {
  return raw
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*:).*@/i, '$1***@')
    .replace(/([?&]password=)[^&#]*/gi, '$1***')
    .replace(/(\/\/[^/:@\s]*):[^@/\s]*@/g, '$1:***@');
}

/** Parse and check a base URL: http(s), host, optional port, no query. Returns it without a trailing slash. */
export function normaliseBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`'${maskUrl(raw)}' is not a valid URL`, { hint: 'use a URL like http://127.0.0.1:8080' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`'${maskUrl(raw)}' must use http or https`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`'${maskUrl(raw)}' must not contain credentials, a query or a fragment`, {
      hint: 'give credentials with LEGACY_USERNAME/LEGACY_PASSWORD or --password-stdin, never in the URL',
    });
  }
  let path = url.pathname.replace(/\/+$/, '');
  // The client adds /rest itself; accept a URL that already ends with it.
  if (/\/rest$/i.test(path)) path = path.slice(0, -5);
  return `${url.protocol}//${url.host}${path}`;
}

/** What is wrong with an `authentify()` body template, if anything: it must be JSON that places the password. */
export function authentifyBodyProblem(value: unknown): string | undefined {
  if (value === null || (typeof value !== 'object' && typeof value !== 'string')) return 'must be a JSON array (or object) of parameters';
  if (!JSON.stringify(value).includes('{password}')) return 'must contain the placeholder {password} (and usually {user})';
  return undefined;
}

/** What is wrong with a session store setting, if anything: 'file' or a redis:// / rediss:// URL. */
export function sessionStoreProblem(raw: string): string | undefined {
  if (raw === 'file') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `'${maskUrl(raw)}' is neither 'file' nor a URL`;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `'${maskUrl(raw)}' must be 'file' or a redis:// or rediss:// URL`;
  if (!url.hostname) return `'${maskUrl(raw)}' has no host`;
  if (url.pathname.length > 1 && !/^\/\d+$/.test(url.pathname)) return `'${maskUrl(raw)}': the path must be a database number (redis://host:port/0)`;
  return undefined;
}
