/**
 * Redaction: session cookies and passwords never reach a log record, at any level.
 *
 * Three layers, applied to every record (message and metadata, recursively):
 *  1. keys that name a secret (cookie, set-cookie, authorization, password, ...) are masked whole;
 *  2. every value registered with registerSecret() (live cookie values, the password) is masked
 *     wherever it appears inside any string;
 *  3. anything shaped like a 4D session cookie assignment (`WASID4D=...`, `4DSID_x=...`) is masked.
 */

const secrets = new Set<string>();

/**
 * Remember a secret value (a cookie value, a password) so that it is masked in every later log
 * record. Short values are skipped (masking every "abc" would garble text) unless `always`: a
 * password is masked whatever its length.
 */
export function registerSecret(value: string | undefined | null, always = false): void {
  if (value && (always || value.length >= 4)) secrets.add(value);
}

/**
 * Forget every registered secret. Secrets are kept for the life of the process, whichever run
 * registered them, so that no record of any run can show one; a host that runs one run after
 * another and has nothing left to write from the earlier ones may start afresh (the test runner,
 * between test files: a value one file's runs registered masked the digits of a number in another's message).
 */
export function forgetSecrets(): void {
  secrets.clear();
}

const SECRET_KEY = /^(cookie|set-cookie|authorization|proxy-authorization|password|password-4d|hashed-password-4d|passwd|secret|token)$/i;
const SECRET_KEY_LOOSE = /(cookie|password|passwd|secret|authorization)/i;
const COOKIE_ASSIGNMENT = /\b(WASID4D|4DSID_[A-Za-z0-9_.-]*)=([^;,\s"']+)/g;

export const MASK = '***';

export function redactString(text: string): string {
  let out = text.replace(COOKIE_ASSIGNMENT, `$1=${MASK}`);
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
  }
  return out;
}

function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) || SECRET_KEY_LOOSE.test(key);
}

/** A deep copy of `value` with every secret masked. Handles cycles and Errors. */
export function redact<T>(value: T, seen: WeakSet<object> = new WeakSet()): T {
  if (typeof value === 'string') return redactString(value) as T;
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value as object)) return '[circular]' as T;
  seen.add(value as object);
  if (value instanceof Error) {
    return { name: value.name, message: redactString(value.message), code: (value as { code?: unknown }).code } as T;
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, seen)) as T;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    out[key] = isSecretKey(key) && v !== undefined && v !== null && v !== '' ? MASK : redact(v, seen);
  }
  return out as T;
}
