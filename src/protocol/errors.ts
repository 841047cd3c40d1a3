/**
 * The one table of 4D error codes and what they mean to this tool.
 *
 * A 4D error body is `{"__ERROR":[{"message","componentSignature","errCode"}, ...]}`, root cause
 * first (4d-rest-protocol.md §7). Decisions are made on the HTTP status and `errCode`, never on the
 * message text, which varies by version and language.
 *
 * Classes:
 * - deterministic ones (a query the server cannot run, an unknown name, a permission, a stamp
 *   conflict, ...): the same request gets the same answer, so it is never retried;
 * - `transient`: 502/503/504 whatever the body, and a 500 whose code is not in the table (or that
 *   has no 4D body at all): the server failed while doing something sensible, so an idempotent
 *   request is retried with backoff, then reported as "server unavailable" (exit 69).
 */

export interface FourDError {
  message?: string;
  errCode?: number;
  componentSignature?: string;
}

export type FourDErrorClass =
  | 'query' // the filter or its values cannot be run: 65
  | 'unknown-name' // dataclass, attribute or order-by name the server does not know: 65
  | 'entity-set-gone' // a stored entity set expired or belongs to another session: recreate it
  | 'not-found' // an entity key that does not exist: 65 (or "no such record")
  | 'permission' // the user may not read/update/create/delete: 77
  | 'conflict' // stamp mismatch (optimistic locking): 65 after the push rules
  | 'save' // the server refused to save an entity: 65
  | 'request' // a malformed URL or request: 65 (a bug on our side, or a proxy)
  | 'login' // REST login failed / required: 77
  | 'licence' // maximum number of sessions reached: 75 after backoff
  | 'transient'; // anything else: retried, then 69

interface CodeInfo {
  cls: Exclude<FourDErrorClass, 'transient'>;
  meaning: string;
}

const range = (from: number, to: number, info: CodeInfo): Array<[number, CodeInfo]> => Array.from({ length: to - from + 1 }, (_, i) => [from + i, info]);

/** errCode → class and meaning. Codes not listed here are `transient` on a 5xx. */
export const FOURD_CODES: ReadonlyMap<number, CodeInfo> = new Map<number, CodeInfo>([
  [1112, { cls: 'query', meaning: 'wrong comparison operator' }],
  [1162, { cls: 'query', meaning: 'query is invalid' }],
  ...range(1200, 1204, { cls: 'query', meaning: 'query cannot be completed or analysed' }),
  [1279, { cls: 'query', meaning: 'query placeholder missing or null' }],
  [1280, { cls: 'query', meaning: 'query value of the wrong type' }],
  [1500, { cls: 'unknown-name', meaning: 'attribute not found' }],
  [1800, { cls: 'unknown-name', meaning: 'dataclass not found' }],
  [1804, { cls: 'unknown-name', meaning: 'cannot build the list of attributes' }],
  [1805, { cls: 'unknown-name', meaning: 'cannot build the list of expanded attributes' }],
  [1810, { cls: 'unknown-name', meaning: 'cannot order by this attribute' }],
  [1802, { cls: 'entity-set-gone', meaning: 'entity set not found' }],
  [1803, { cls: 'entity-set-gone', meaning: 'entity set of another dataclass' }],
  [1542, { cls: 'not-found', meaning: 'entity key not found' }],
  [1543, { cls: 'not-found', meaning: 'cannot load entity' }],
  ...range(1557, 1561, { cls: 'permission', meaning: 'no permission' }),
  [1611, { cls: 'permission', meaning: 'only the Admin group may read $info' }],
  [1263, { cls: 'conflict', meaning: 'stamp does not match (changed by someone else)' }],
  [1046, { cls: 'save', meaning: 'cannot save record' }],
  [1517, { cls: 'save', meaning: 'entity cannot be saved' }],
  [1534, { cls: 'save', meaning: 'new entity cannot be saved' }],
  [1545, { cls: 'save', meaning: 'primary key already exists' }],
  [1569, { cls: 'save', meaning: 'validation failed' }],
  [1570, { cls: 'save', meaning: 'validation failed' }],
  [1801, { cls: 'request', meaning: 'format not supported' }],
  ...range(1806, 1809, { cls: 'request', meaning: 'URL not well formed' }),
  ...range(1811, 1813, { cls: 'request', meaning: 'unknown REST keyword or method' }),
  ...range(1815, 1821, { cls: 'request', meaning: 'request not applicable' }),
  [1822, { cls: 'login', meaning: 'REST login failed' }],
  [1823, { cls: 'licence', meaning: 'maximum number of sessions reached' }],
]);

/** Statuses that are temporary whatever the body says. */
const ALWAYS_TRANSIENT = new Set([502, 503, 504]);
/** Statuses retried when the body does not say otherwise (timeouts, rate limits). */
const TRANSIENT_WITHOUT_4D_BODY = new Set([408, 429]);

/** The errors of a 4D body, root cause first; tolerates a bare string `__ERROR` (4D's own SDK does). */
export function fourDErrors(json: unknown): FourDError[] {
  const errors = (json as { __ERROR?: unknown } | null | undefined)?.__ERROR;
  if (Array.isArray(errors)) return errors.filter((e): e is FourDError => typeof e === 'object' && e !== null);
  if (typeof errors === 'string') return [{ message: errors }];
  return [];
}

/** The root-cause 4D error code of a body, if any. */
export function errCodeOf(json: unknown): number | undefined {
  return fourDErrors(json).find((e) => typeof e.errCode === 'number')?.errCode;
}

/** Class of a 4D error code (undefined: not in the table). Any code of the stack counts, root cause first. */
export function classOfCode(json: unknown): CodeInfo | undefined {
  for (const e of fourDErrors(json)) {
    const info = typeof e.errCode === 'number' ? FOURD_CODES.get(e.errCode) : undefined;
    if (info) return info;
  }
  return undefined;
}

/**
 * An answer that says the server is not there to answer (the circuit breaker counts it): a gateway's
 * 502/503/504, or a 500 without a 4D error body. A 500 with one, a 408 or a 429 came from a server
 * that is up and answering (one table's failing computed attribute must not stop every table).
 */
export function isServerDown(status: number, json: unknown): boolean {
  return ALWAYS_TRANSIENT.has(status) || (status === 500 && fourDErrors(json).length === 0);
}

/** What an answer means: its class and whether sending it again may give another answer. */
export function classifyResponse(status: number, json: unknown): { cls: FourDErrorClass | 'ok'; transient: boolean } {
  if (status >= 200 && status < 400) return { cls: 'ok', transient: false };
  if (ALWAYS_TRANSIENT.has(status)) return { cls: 'transient', transient: true };
  const known = classOfCode(json);
  if (status === 500) return known ? { cls: known.cls, transient: false } : { cls: 'transient', transient: true };
  if (TRANSIENT_WITHOUT_4D_BODY.has(status) && !known) return { cls: 'transient', transient: true };
  if (known) return { cls: known.cls, transient: false };
  if (status === 401) return { cls: 'login', transient: false };
  if (status === 402) return { cls: 'licence', transient: false };
  if (status === 403) return { cls: 'permission', transient: false };
  if (status === 404) return { cls: 'not-found', transient: false };
  return { cls: 'request', transient: false };
}

// ---- named meanings: the only places that compare statuses and codes for a decision -------------

/** 4D's "REST login failed" (401 + 1822): the login, or the lack of one, was refused: log in. */
export function isLoginFailed(status: number, json: unknown): boolean {
  return status === 401 && errCodeOf(json) === 1822;
}

/** A 401/403 that is not "REST login failed": a force-login server's "no session", or a missing permission. */
export function isRefusal(status: number, json: unknown): boolean {
  return (status === 401 || status === 403) && errCodeOf(json) !== 1822;
}

/** 404 + 1800: the server does not know the dataclass. */
export function isUnknownDataclass(status: number, json: unknown): boolean {
  return status === 404 && errCodeOf(json) === 1800;
}

/** An entity's `__STATUS` (v19+ updates and locks): `{success}` or `{status, statusText, success: false}`. */
function statusCode(json: unknown): number | undefined {
  const status = (json as { __STATUS?: { status?: unknown } } | null | undefined)?.__STATUS?.status;
  return typeof status === 'number' ? status : undefined;
}

/**
 * The record's stamp is not the one sent: someone saved it in between (errCode 1263, or
 * `__STATUS.status` 2 "Stamp has changed", 4d-rest-protocol.md §9).
 */
export function isStampConflict(json: unknown): boolean {
  return fourDErrors(json).some((e) => e.errCode === 1263) || statusCode(json) === 2;
}

/** The record is not there any more: deleted (errCode 1542/1543, or `__STATUS.status` 5). */
export function isRecordGone(json: unknown): boolean {
  return fourDErrors(json).some((e) => e.errCode === 1542 || e.errCode === 1543) || statusCode(json) === 5;
}

/** The server's error message, one line and bounded, with its code. */
export function serverMessage(json: unknown, fallback: string): string {
  const error = fourDErrors(json)[0];
  const text = error?.message ? error.message.replace(/\s*[\r\n]+\s*/g, ' ').trim() : fallback;
  const bounded = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  return error?.errCode !== undefined ? `${bounded} (errCode ${error.errCode})` : bounded;
}
