/**
 * The one place that builds 4D REST URLs: every path and every query string the client sends.
 *
 * 4D servers disagree on the order of two steps (4d-rest-protocol.md §1): the 4D/Wakanda source
 * percent-decodes the WHOLE URL and then splits it into parameters with a quote-aware tokenizer in
 * which an `=` or `&` outside quotes always starts a new parameter; other servers split first and
 * decode each part. A URL is only safe if both orders read it the same, so:
 *
 * - `$filter`, `$savedfilter`, `$orderby`, `$savedorderby` and `$attributes` are sent inside double
 *   quotes (`$filter="Ort = :1"`, as every 4D doc example does). The text must not itself contain a
 *   double quote: that would end the quoted run (a raw `--filter` with one is refused upstream).
 * - user values never go into the filter text: they travel as `$params`, a JSON array inside single
 *   quotes in which every character special to URLs, to the tokenizer or to a second decoding pass
 *   (`' " & = + # % \`) is a JSON `\u` escape, so the decoded text holds none of them raw;
 * - then everything is percent-encoded, `'()*!` included, and numbers are written without `+`.
 *
 * Nothing else in the code concatenates URL parameters: callers describe the request with a
 * `RestQuery` and get the URL from `restUrl`.
 */
import { BadDataError } from '../errors/index.js';

/** Percent-encode everything but unreserved characters (RFC 3986), `'()*!` included. */
export function encodeValue(value: string): string {
  return encodeURIComponent(value).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Characters written as JSON `\u` escapes inside `$params` strings (surrogates too: a lone one would
 * make percent-encoding throw; paired ones survive as two escapes).
 */
const PARAMS_ESCAPED = /["'&=+#%\\\u0000-\u001f\u007f\u2028\u2029\ud800-\udfff]/g;

function jsonString(text: string): string {
  return `"${text.replace(PARAMS_ESCAPED, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

function jsonNumber(n: number): string {
  if (!Number.isFinite(n)) throw new BadDataError(`cannot send the number ${n} to the server`);
  return JSON.stringify(n).replace('e+', 'e'); // 1e+21 → 1e21: no '+' that a form decoder would turn into a space
}

/** The JSON text of a `$params` value, with no character that either URL decoding order could misread. */
export function paramsJson(params: readonly unknown[]): string {
  const encode = (v: unknown): string => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return jsonString(v);
    if (typeof v === 'number') return jsonNumber(v);
    if (typeof v === 'bigint') return v.toString(); // a long64 beyond 2^53, its exact digits
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (Array.isArray(v)) return `[${v.map(encode).join(',')}]`;
    if (v instanceof Date) return jsonString(v.toISOString());
    throw new BadDataError(`cannot send a ${typeof v} as a query value`);
  };
  return `[${params.map(encode).join(',')}]`;
}

/** Parameters whose text is sent inside double quotes. */
const QUOTED = ['$filter', '$savedfilter', '$orderby', '$savedorderby', '$attributes'] as const;

/** A request's query parameters, by meaning. Absent fields are not sent. */
export interface RestQuery {
  filter?: string;
  savedFilter?: string;
  orderBy?: string;
  savedOrderBy?: string;
  /** Attribute names (sent as `$attributes="a,b"`). */
  attributes?: readonly string[];
  /** Placeholder values for `:1`, `:2`, ... (sent when non-empty). */
  params?: readonly unknown[];
  method?: 'entityset' | 'release' | 'update' | 'delete';
  /** Entity set lifetime in seconds. */
  timeout?: number;
  skip?: number;
  top?: number;
  /**
   * Extra parameters sent verbatim after percent-encoding their value (used by `doctor --probe` to
   * ask how the server decodes URLs). Never for user data.
   */
  raw?: ReadonlyArray<readonly [string, string]>;
}

/** `"text"`, checked: a double quote inside would end the quoted run early. */
function quoted(name: string, text: string): string {
  if (text.includes('"')) {
    throw new BadDataError(`${name} cannot contain a double quote (") when sent to a 4D server`, {
      hint: 'write text values in single quotes, or use --where',
    });
  }
  return `"${text}"`;
}

/** The query string (with its leading `?`), or '' when there is nothing to send. The only place parameters are joined. */
export function queryString(q: RestQuery): string {
  const pairs: Array<[string, string]> = [];
  const text: Record<(typeof QUOTED)[number], string | undefined> = {
    $filter: q.filter,
    $savedfilter: q.savedFilter,
    $orderby: q.orderBy,
    $savedorderby: q.savedOrderBy,
    $attributes: q.attributes?.length ? q.attributes.join(',') : undefined,
  };
  for (const name of QUOTED) {
    const value = text[name];
    if (value !== undefined && value !== '') pairs.push([name, encodeValue(quoted(name, value))]);
  }
  if (q.params?.length && (q.filter || q.savedFilter)) pairs.push(['$params', encodeValue(`'${paramsJson(q.params)}'`)]);
  if (q.method) pairs.push(['$method', q.method]);
  if (q.timeout !== undefined) pairs.push(['$timeout', String(Math.max(0, Math.round(q.timeout)))]);
  if (q.skip !== undefined) pairs.push(['$skip', String(Math.max(0, Math.trunc(q.skip)))]);
  if (q.top !== undefined) pairs.push(['$top', String(Math.max(0, Math.trunc(q.top)))]);
  for (const [name, value] of q.raw ?? []) pairs.push([name, encodeValue(value)]);
  return pairs.length ? `?${pairs.map(([name, value]) => `${name}=${value}`).join('&')}` : '';
}

/** A key as a path segment: bare when plain, otherwise in double quotes (4D accepts `Company("IT0911")`). */
function keySegment(key: string): string {
  if (/^[A-Za-z0-9_.-]+$/.test(key)) return encodeValue(key);
  if (key.includes('"')) throw new BadDataError(`the key ${JSON.stringify(key)} contains a double quote and cannot be addressed in a URL`);
  return encodeValue(`"${key}"`);
}

/** A path below `/rest`: names are percent-encoded; a path segment never holds a raw `/`, `?` or quote. */
export type RestPath =
  | { kind: 'info' }
  | { kind: 'catalog'; dataClass?: string; all?: boolean }
  | { kind: 'directory'; action: 'login' | 'logout' }
  /** The application's `authentify()` datastore function (force login, 4D v20 R6+). */
  | { kind: 'authentify' }
  | { kind: 'dataClass'; dataClass: string }
  | { kind: 'entity'; dataClass: string; key: string }
  | { kind: 'entitySet'; dataClass: string; id: string };

function pathOf(p: RestPath): string {
  switch (p.kind) {
    case 'info':
      return '$info';
    case 'catalog':
      return p.all ? '$catalog/$all' : p.dataClass ? `$catalog/${encodeValue(p.dataClass)}` : '$catalog';
    case 'directory':
      return `$directory/${p.action}`;
    case 'authentify':
      return '$catalog/authentify';
    case 'dataClass':
      return encodeValue(p.dataClass);
    case 'entity':
      // `Company(22)`, `Company("IT0911")`: the one form every generation documents (v17/v18 know no
      // brackets; 4d-generations.md §4). A key that is not plain is quoted, so a comma inside it can
      // never read as a second key (the source's ExtractKey selects `name(k1,k2)` as two entities).
      return `${encodeValue(p.dataClass)}(${keySegment(p.key)})`;
    case 'entitySet':
      return `${encodeValue(p.dataClass)}/$entityset/${encodeValue(p.id)}`;
  }
}

/** The full URL of a REST request: `<base>/rest/<path>?<query>`. */
export function restUrl(baseUrl: string, path: RestPath, query: RestQuery = {}): string {
  return `${baseUrl}/rest/${pathOf(path)}${queryString(query)}`;
}

/** A page request as the REST client describes it (see pageUrl). */
export interface PageQuery {
  top?: number;
  skip?: number;
  filter?: string;
  params?: unknown[];
  orderBy?: string;
  attributes?: string[];
  /** Store the selection as an entity set on the server (returns __ENTITYSET). */
  entitySet?: boolean;
  /** Entity set lifetime in seconds. */
  timeoutSeconds?: number;
  /** Read a page of this stored entity set (its id); filter/orderBy are then sent as $savedfilter/$savedorderby. */
  fromEntitySet?: string;
}

/**
 * A page of a dataclass, or of a stored entity set. Pages of a set repeat the filter and order as
 * `$savedfilter`/`$savedorderby` (with `$params`), so a server that lost the set can recreate it
 * under the same id; the caller checks that the recreated selection is the one it asked for.
 */
export function pageUrl(baseUrl: string, table: string, q: PageQuery): string {
  const common = { attributes: q.attributes, skip: q.skip ?? 0, top: q.top ?? 100 };
  if (q.fromEntitySet) {
    return restUrl(
      baseUrl,
      { kind: 'entitySet', dataClass: table, id: q.fromEntitySet },
      {
        savedFilter: q.filter,
        savedOrderBy: q.orderBy,
        params: q.params,
        ...common,
      },
    );
  }
  return restUrl(
    baseUrl,
    { kind: 'dataClass', dataClass: table },
    {
      filter: q.filter,
      params: q.params,
      orderBy: q.orderBy,
      ...(q.entitySet ? { method: 'entityset' as const, timeout: q.timeoutSeconds ?? 7200, savedFilter: q.filter, savedOrderBy: q.orderBy } : {}),
      ...common,
    },
  );
}
