/**
 * URL building for the 4D REST API.
 *
 * Every value is fully percent-encoded (including ' ( ) * ! which encodeURIComponent leaves),
 * so 4D's quote-aware query tokenizer never sees a raw quote, '&' or '='. `$params` is a JSON
 * array in which a single quote is written \u0027, as the 4D docs prescribe, wrapped in single
 * quotes; user values therefore never change the structure of a query.
 */
import type { PageQuery } from './types.js';

export function encodeValue(value: string): string {
  return encodeURIComponent(value).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** JSON for $params: quotes inside strings escaped as \u0027 / \u0022 as 4D documents. */
export function paramsJson(params: unknown[]): string {
  return `'${JSON.stringify(params).replace(/'/g, '\\u0027')}'`;
}

export function dataClassPath(baseUrl: string, table: string): string {
  return `${baseUrl}/rest/${encodeValue(table)}`;
}

/** Key in square brackets (v19+ syntax, the form the legacy server's own URIs use). */
export function entityPath(baseUrl: string, table: string, key: string): string {
  return `${dataClassPath(baseUrl, table)}[${encodeValue(key)}]`;
}

export function queryString(pairs: Array<[string, string | number | undefined]>): string {
  const parts: string[] = [];
  for (const [name, value] of pairs) {
    if (value === undefined) continue;
    parts.push(`${name}=${typeof value === 'number' ? value : encodeValue(value)}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

export function pageUrl(baseUrl: string, table: string, q: PageQuery): string {
  const pairs: Array<[string, string | number | undefined]> = [];
  const base = q.fromEntitySet ? `${dataClassPath(baseUrl, table)}/$entityset/${encodeValue(q.fromEntitySet)}` : dataClassPath(baseUrl, table);
  if (q.fromEntitySet) {
    // If the set is gone (expired, or the session was replaced), 4D recreates it under the same id.
    pairs.push(['$savedfilter', q.filter], ['$savedorderby', q.orderBy]);
    if (q.filter && q.params?.length) pairs.push(['$params', paramsJson(q.params)]);
  } else {
    pairs.push(['$filter', q.filter]);
    if (q.params?.length) pairs.push(['$params', paramsJson(q.params)]);
    pairs.push(['$orderby', q.orderBy]);
  }
  if (q.attributes?.length) pairs.push(['$attributes', q.attributes.join(',')]);
  if (q.entitySet) {
    pairs.push(['$method', 'entityset'], ['$timeout', q.timeoutSeconds ?? 7200]);
    pairs.push(['$savedfilter', q.filter], ['$savedorderby', q.orderBy]);
  }
  pairs.push(['$skip', q.skip ?? 0], ['$top', q.top ?? 100]);
  return `${base}${queryString(pairs)}`;
}
