/**
 * URL parsing as the 4D web server does it, in two modes (option `urlDecoding`):
 *
 * - `whole` (default, what the 4D/Wakanda source does): HTTPProtocol::ParseURL percent-decodes the WHOLE request
 *   target first (VURL::Decode: `+` stays `+`, lenient), then the REST handler splits the decoded text with
 *   VFullURL::ParseURL. A `%3D`/`%26`/`%22`/`%27` in the target is therefore a real `=`/`&`/`"`/`'` to the
 *   tokenizer; a repeated parameter name replaces the earlier value (last wins).
 * - `split` (the emulator's older reading): the quote-aware tokenizer runs on the RAW query, then each name and
 *   value is percent-decoded (`+` = space); first occurrence wins; a few parameters lose one wrapping quote pair.
 *
 * Both: names starting with `$` are lower-cased (emulator leniency); an unclosed quote in the query → 400 with
 * 1808 (single) or 1809 (double), then 1806.
 */
import { E } from './errors.js';

export type UrlDecoding = 'whole' | 'split';

export interface ParsedUrl {
  /** Path segments after `/rest/`, percent-decoded; quotes kept. */
  segments: string[];
  /** Query parameters, percent-decoded; names starting with `$` are lower-cased. */
  query: Map<string, string>;
}

/** Split mode only: parameters whose value may arrive wrapped in one extra pair of quotes (see `stripWrappingQuotes`). */
const QUOTE_LENIENT = new Set(['$filter', '$params', '$orderby', '$savedfilter', '$savedorderby', '$attributes']);

const normalizeName = (name: string) => (name.startsWith('$') ? name.toLowerCase() : name);

// ---- whole mode: VURL::Decode, then VFullURL::ParseURL ----------------------------------------------------------

const isHex = (c: string | undefined) => c !== undefined && /^[0-9A-Fa-f]$/.test(c);
const utf8 = new TextDecoder('utf-8');

/**
 * VURL::Decode: every run of consecutive `%XX` is decoded as one byte string, as UTF-8 when the run has two or
 * more bytes, as ISO-8859-1 when it has one (the source's "probably not UTF-8" rule); invalid UTF-8 becomes
 * U+FFFD. A `%` not followed by two hex digits stays literal; `+` stays `+`. The result is composed (NFC).
 * Never fails.
 */
export function decodeWhole(s: string): string {
  if (!s.includes('%')) return s.normalize('NFC');
  let out = '';
  let i = 0;
  while (i < s.length) {
    if (s[i] !== '%') {
      const next = s.indexOf('%', i);
      const end = next < 0 ? s.length : next;
      out += s.slice(i, end);
      i = end;
      continue;
    }
    const bytes: number[] = [];
    while (s[i] === '%' && isHex(s[i + 1]) && isHex(s[i + 2])) {
      bytes.push(Number.parseInt(s.slice(i + 1, i + 3), 16));
      i += 3;
    }
    if (bytes.length === 0) {
      out += '%';
      i++;
    } else out += bytes.length === 1 ? String.fromCharCode(bytes[0]!) : utf8.decode(Uint8Array.from(bytes));
  }
  return out.normalize('NFC');
}

/**
 * VFullURL::ParseURL on an already decoded URL.
 *
 * Path part: characters go to the current word; `'` or `"` opens a run closed only by the same kind, in which the
 * quotes are KEPT and `/` and `?` do not split (an unclosed run in the path is no error: it swallows the rest).
 * Outside quotes `/` ends a non-empty segment (empty segments vanish) and `?` starts the query part.
 *
 * Query part (own quote flags): inside a run, characters are appended and the closing quote of the same kind ends
 * it; the quote characters are DROPPED and the other kind is literal. Outside: `=` makes the current word the
 * variable name (a second `=` before `&` simply replaces it: the earlier name is lost), `&` stores name=word when
 * a name is pending, `'`/`"` open a run, anything else is appended. At the end an open quote → 400 (1808/1809 +
 * 1806); otherwise a pending name is stored (with the last word when a `=` was seen). Storing replaces an earlier
 * value of the same name (VValueBag::SetString), so `query` holds the stores in order and the last one wins.
 * A bare name without `=` (`$expand`) is never stored.
 */
export function parseFullUrl(url: string): { path: string[]; query: Array<[string, string]> } {
  const path: string[] = [];
  const query: Array<[string, string]> = [];
  let word = '';
  let quote: string | null = null;
  let i = 0;
  for (; i < url.length; i++) {
    const c = url[i]!;
    if (quote !== null) {
      word += c;
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') {
      word += c;
      quote = c;
    } else if (c === '/' || c === '?') {
      if (word !== '') path.push(word);
      word = '';
      if (c === '?') break;
    } else word += c;
  }
  if (i >= url.length) {
    if (word !== '') path.push(word);
    return { path, query };
  }
  let name = '';
  let waitForValue = false;
  quote = null;
  for (i++; i < url.length; i++) {
    const c = url[i]!;
    if (quote !== null) {
      if (c === quote) quote = null;
      else word += c;
    } else if (c === '=') {
      name = word;
      word = '';
      waitForValue = true;
    } else if (c === '&') {
      if (name !== '') query.push([name, word]);
      name = '';
      word = '';
      waitForValue = false;
    } else if (c === "'" || c === '"') quote = c;
    else word += c;
  }
  if (quote !== null) throw E.malformedUrl(quote);
  if (name !== '') query.push([name, waitForValue ? word : '']);
  return { path, query };
}

function parseWhole(target: string): ParsedUrl {
  const { path, query: entries } = parseFullUrl(decodeWhole(target));
  if (path[0]?.toLowerCase() !== 'rest') throw E.malformedUrl();
  const query = new Map<string, string>();
  for (const [name, value] of entries) query.set(normalizeName(name), value); // last wins
  return { segments: path.slice(1), query };
}

// ---- split mode: tokenize the raw query, then decode each part ---------------------------------------------------

/**
 * Split mode: quote-aware split of the RAW query string. Outside quotes the first `=` ends the name and `&` ends
 * the pair. A `'` or `"` opens a quoted run: the quote characters are dropped and everything up to the matching
 * quote (including `=`, `&` and the other kind of quote) is copied literally; quoted and unquoted runs join up.
 * So `$filter="name='a b'"` gives `name='a b'`. A quote left open → 400 (1808/1809 + 1806).
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
 * Split-mode leniency (not in 4D's tokenizer): clients such as the legacy server's Python client percent-encode the
 * whole `$filter` value, quotes included, so the quotes survive the raw tokenizer. After decoding, a value entirely
 * wrapped in ONE matching pair of `"` or `'` loses that pair. `'a = 1' or 'a = 2'` is not one pair and is left for
 * the filter parser (which accepts quoted conditions). Also used for entity keys (`T('A B')`) in both modes.
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

function parseSplit(target: string): ParsedUrl {
  const qm = target.indexOf('?');
  const path = qm < 0 ? target : target.slice(0, qm);
  const rawQuery = qm < 0 ? '' : target.slice(qm + 1);
  const rest = path.slice(5).replace(/^\//, ''); // drop "/rest" and one slash
  const segments = rest === '' ? [] : splitPath(rest).map((s) => decodeComponent(s, false));
  if (segments.length > 0 && segments[segments.length - 1] === '') segments.pop();
  const query = new Map<string, string>();
  for (const [rawName, rawValue] of tokenizeQuery(rawQuery)) {
    const name = normalizeName(decodeComponent(rawName, true));
    let value = decodeComponent(rawValue, true);
    if (QUOTE_LENIENT.has(name)) value = stripWrappingQuotes(value);
    if (!query.has(name)) query.set(name, value); // first wins
  }
  return { segments, query };
}

// ---- entry points --------------------------------------------------------------------------------------------

/** Parses a request target that matched `^/rest(/|?|$)` (case-insensitive). Throws RestError 400 when malformed. */
export function parseRestUrl(target: string, mode: UrlDecoding = 'whole'): ParsedUrl {
  return mode === 'whole' ? parseWhole(target) : parseSplit(target);
}

/**
 * `Name`, `Name(key)`, `Name[key]`, the key optionally quoted. `Name(22)` and `Name("IT0911AB2200")` are the v17/v18
 * docs' forms and work in every generation; `Name[22]` is the v19+ form (`brackets: false`, generation v18: a
 * bracketed segment is no entity reference, so `Name[22]` names a dataclass that does not exist → 404/1800).
 * Quotes inside brackets (`Name["IT09"]`) are documented nowhere; accepted where brackets are.
 */
export function parseEntityRef(segment: string, brackets = true): { name: string; key: string | null } {
  const m = /^([^([]+)(?:\((.*)\)|\[(.*)\])$/s.exec(segment);
  if (!m || (m[3] !== undefined && !brackets)) return { name: segment, key: null };
  return { name: m[1]!, key: stripWrappingQuotes(m[2] ?? m[3] ?? '') };
}

/** Path to test for the `/rest` prefix (query stripped). */
export function isRestPath(target: string): boolean {
  return /^\/rest(\/|\?|$)/i.test(target);
}
