/**
 * URL parsing as the 4D web server does it (VFullURL::ParseURL in the open-sourced 4D/Wakanda code).
 */
import { E } from './errors.js';

export interface ParsedUrl {
  /** Path segments after `/rest/`, percent-decoded; quotes kept; a trailing empty segment is dropped. */
  segments: string[];
  /** Query parameters, percent-decoded; names starting with `$` are lower-cased; first occurrence wins. */
  query: Map<string, string>;
}

/** Parameters whose value may arrive wrapped in one extra pair of quotes (see `stripWrappingQuotes`). */
const QUOTE_LENIENT = new Set(['$filter', '$params', '$orderby', '$savedfilter', '$savedorderby']);

/**
 * Quote-aware split of the raw query string. Outside quotes `=` ends the name and `&` ends the pair. A `'` or
 * `"` opens a quoted run: the quote characters are dropped and everything up to the matching quote (including
 * `=`, `&` and the other kind of quote) is copied literally; quoted and unquoted runs join up. So
 * `$filter="name='a b'"` gives `name='a b'`. A quote left open → 400 (1808/1809 + 1806).
 */
export function tokenizeQuery(raw: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let name = '';
  let value = '';
  let inValue = false;
  let quote: string | null = null;
  const flush = () => {
    if (name !== '' || value !== '') out.push([name, value]);
    name = '';
    value = '';
    inValue = false;
  };
  for (const ch of raw) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else if (inValue) value += ch;
      else name += ch;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '=' && !inValue) inValue = true;
    else if (ch === '&') flush();
    else if (inValue) value += ch;
    else name += ch;
  }
  if (quote !== null) throw E.malformedUrl(quote);
  flush();
  return out;
}

function decodeComponent(s: string, plusIsSpace: boolean): string {
  try {
    return decodeURIComponent(plusIsSpace ? s.replace(/\+/g, ' ') : s);
  } catch {
    throw E.malformedUrl();
  }
}

/**
 * Leniency (not in 4D's tokenizer, which runs before percent-decoding): clients such as the legacy
 * server's Python client percent-encode the whole `$filter` value, quotes included, so the quotes survive the
 * tokenizer. After decoding, a value entirely wrapped in ONE matching pair of `"` or `'` loses that pair.
 * `'a = 1' or 'a = 2'` is not one pair and is left for the filter parser (which accepts quoted conditions).
 */
export function stripWrappingQuotes(v: string): string {
  const q = v[0];
  if (v.length >= 2 && (q === '"' || q === "'") && v[v.length - 1] === q && v.indexOf(q, 1) === v.length - 1) {
    return v.slice(1, -1);
  }
  return v;
}

/** Splits a path on `/` outside quotes (a `/` inside quotes does not split; quotes are kept). */
function splitPath(path: string): string[] {
  const segs: string[] = [];
  let cur = '';
  let quote: string | null = null;
  for (const ch of path) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      cur += ch;
    } else if (ch === '/') {
      segs.push(cur);
      cur = '';
    } else cur += ch;
  }
  segs.push(cur);
  return segs;
}

/** Parses a request target that matched `^/rest(/|$)` (case-insensitive). */
export function parseRestUrl(target: string): ParsedUrl {
  const qm = target.indexOf('?');
  const path = qm < 0 ? target : target.slice(0, qm);
  const rawQuery = qm < 0 ? '' : target.slice(qm + 1);
  const rest = path.slice(5).replace(/^\//, ''); // drop "/rest" and one slash
  const segments = rest === '' ? [] : splitPath(rest).map((s) => decodeComponent(s, false));
  if (segments.length > 0 && segments[segments.length - 1] === '') segments.pop();
  const query = new Map<string, string>();
  for (const [rawName, rawValue] of tokenizeQuery(rawQuery)) {
    let name = decodeComponent(rawName, true);
    if (name.startsWith('$')) name = name.toLowerCase();
    let value = decodeComponent(rawValue, true);
    if (QUOTE_LENIENT.has(name)) value = stripWrappingQuotes(value);
    if (!query.has(name)) query.set(name, value);
  }
  return { segments, query };
}

/** `Name`, `Name(key)`, `Name[key]`, with the key optionally quoted. */
export function parseEntityRef(segment: string): { name: string; key: string | null } {
  const m = /^([^([]+)(?:\((.*)\)|\[(.*)\])$/s.exec(segment);
  if (!m) return { name: segment, key: null };
  return { name: m[1]!, key: stripWrappingQuotes(m[2] ?? m[3] ?? '') };
}

/** Path to test for the `/rest` prefix (query stripped). */
export function isRestPath(target: string): boolean {
  return /^\/rest(\/|\?|$)/i.test(target);
}
