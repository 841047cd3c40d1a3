/**
 * CSV, JSON, NDJSON and XLSX rows straight from a scanned page's bytes (../paging/scan.ts): the export's hot path.
 *
 * The reference is the object path: `JSON.parse` of the page, the column's converter
 * (../convert.ts), then csvEncoder (./csv.ts, which hands its cell to csvTranscoder), `JSON.stringify` or the sheet's cells (./excel.ts). Every cell here either takes a
 * fast path that writes the same bytes, or, for anything the fast path does not cover, runs the
 * reference on that cell: the value read back from its byte range with `JSON.parse`, converted and
 * encoded exactly as before. A differential test (test/unit/transcode.test.ts) holds the two equal
 * on generated pages with every kind of value.
 *
 * Fast paths, by the column's converter:
 * - keepValue: strings (escapes other than \u decoded), canonical numbers, true/false/null, and
 *   objects/arrays whose text is already what `JSON.stringify` writes (canonicalJson);
 * - fourDDateToIso: `D!M!YYYY` strings; msToTime: integer milliseconds;
 * - relatedKey: `{"__deferred":{…,"__KEY":"…"}}`; noValue: nothing to read;
 * - integerValue: null and integers of any length: their digits as the server sent them (CSV,
 *   JSON), a number, or a bigint beyond 2^53 (rows), so a long64 is carried exactly where
 *   JSON.parse would round it (the reference, which stops the export at such a rounded number).
 * - keyText and unquotedTimestamp (--meta): plain strings.
 * Other converters (--raw pictures, future ones) always take the reference.
 */
import { fourDDateToIso, integerValue, jsonText, keepValue, keyText, msToTime, noValue, relatedKey, unquotedTimestamp, type Converter } from '../convert.js';
import { columnLetters, excelSerial, STYLE, timeCellTail, type CellKind } from './excel.js';
import { sameBytes, type ScannedPage } from '../paging/scan.js';

// JSON's bytes. Module-local on purpose, here and in ../paging/scan.ts: measured, the same constants
// imported from there (live module bindings) made the encoders 20% slower.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const LF = 0x0a;
const CR = 0x0d;
const APOSTROPHE = 0x27;
const BANG = 0x21;

export interface TranscodeColumn {
  name: string;
  convert: Converter;
}

/** How a column's values are read fast (Reference: the reference, cell by cell). */
const Kind = { Reference: 0, Value: 1, Date: 2, Time: 3, Related: 4, None: 5, Text: 6, Timestamp: 7, Integer: 8 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

function kindOf(convert: Converter): Kind {
  if (convert === keepValue) return Kind.Value;
  if (convert === integerValue) return Kind.Integer;
  if (convert === fourDDateToIso) return Kind.Date;
  if (convert === msToTime) return Kind.Time;
  if (convert === relatedKey) return Kind.Related;
  if (convert === noValue) return Kind.None;
  if (convert === keyText) return Kind.Text;
  if (convert === unquotedTimestamp) return Kind.Timestamp;
  return Kind.Reference;
}

/** A growing output buffer; `take()` hands its bytes out and starts a new one. */
export class ByteSink {
  private buf: Buffer;
  pos = 0;

  constructor(private size = 1 << 16) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }

  ensure(n: number): Buffer {
    if (this.pos + n > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
      this.buf.copy(next, 0, 0, this.pos);
      this.buf = next;
    }
    return this.buf;
  }

  byte(c: number): void {
    this.ensure(1)[this.pos++] = c;
  }

  bytes(src: Buffer, start: number, end: number): void {
    const n = end - start;
    const buf = this.ensure(n);
    if (n > 48) {
      // Measured: a loop is faster up to about 48 bytes, a copy beyond.
      src.copy(buf, this.pos, start, end);
      this.pos += n;
    } else {
      let p = this.pos;
      for (let k = start; k < end; k++) buf[p++] = src[k]!;
      this.pos = p;
    }
  }

  /** A JS string as UTF-8 (lone surrogates become U+FFFD, as in a stream write). */
  text(text: string): void {
    const buf = this.ensure(text.length * 3);
    this.pos += buf.write(text, this.pos, 'utf8');
  }

  /** Latin-1 text of known ASCII content. */
  ascii(text: string): void {
    const buf = this.ensure(text.length);
    for (let k = 0; k < text.length; k++) buf[this.pos++] = text.charCodeAt(k);
  }

  /** The bytes appended since the last take; the sink goes on in a buffer of its own. */
  take(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    // The next page is about as large as this one.
    this.size = Math.max(1 << 12, Math.ceil(this.pos * 1.25));
    const at = this.spare.findIndex((b) => b.length >= this.size);
    this.buf = at >= 0 ? this.spare.splice(at, 1)[0]! : Buffer.allocUnsafeSlow(this.size);
    this.pos = 0;
    return out;
  }

  /**
   * Bytes from take() that the output no longer holds (they reached the file or the pipe): their
   * buffer is used again, so pages do not each leave a buffer behind for the GC.
   */
  recycle(bytes: Buffer): void {
    if (this.spare.length < 2) this.spare.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.buffer.byteLength - bytes.byteOffset));
  }

  private readonly spare: Buffer[] = [];
}

// ---- JSON tokens -------------------------------------------------------------------------------

/**
 * Is the number token [s, e) written exactly as JavaScript writes its value (`String(n)`)? True for
 * integers and decimals of at most 15 significant digits (which round-trip through a double),
 * without exponent, leading zeros, trailing fraction zeros or minus zero, between 1e-6 and 1e21.
 */
export function canonicalNumber(b: Uint8Array, s: number, e: number): boolean {
  let i = s;
  if (b[i] === MINUS) i++;
  const intStart = i;
  while (i < e && b[i]! >= ZERO && b[i]! <= NINE) i++;
  const intDigits = i - intStart;
  if (intDigits === 0 || (intDigits > 1 && b[intStart] === ZERO)) return false;
  let significant = b[intStart] === ZERO ? 0 : intDigits;
  if (intDigits > 21) return false;
  if (i < e) {
    if (b[i] !== DOT) return false; // an exponent
    i++;
    const fracStart = i;
    while (i < e && b[i]! >= ZERO && b[i]! <= NINE) i++;
    if (i !== e || i === fracStart || b[e - 1] === ZERO) return false;
    if (significant === 0) {
      // 0.000001 is written as such, 0.0000001 as 1e-7.
      let zeros = 0;
      while (b[fracStart + zeros] === ZERO) zeros++;
      if (zeros > 5) return false;
      significant = e - fracStart - zeros;
    } else {
      significant += e - fracStart;
    }
  } else if (significant === 0 && b[s] === MINUS) {
    return false; // -0 is written 0
  }
  return significant <= 15;
}

/** integerValue's fast cells: null, or an integer of at most 15 digits (exact); longer ones: longInteger. */
function shortIntegerOrNull(b: Uint8Array, s: number, e: number): boolean {
  return b[s] === 0x6e || !Number.isNaN(integerToken(b, s, e));
}

/** Is the token [s, e) an integer of more than 15 digits, as JSON writes one (no leading zero)? */
function longInteger(b: Uint8Array, s: number, e: number): boolean {
  const from = b[s] === MINUS ? s + 1 : s;
  if (e - from <= 15 || b[from] === ZERO) return false;
  for (let i = from; i < e; i++) if (b[i]! < ZERO || b[i]! > NINE) return false;
  return true;
}

/** An integer token of more than 15 digits as a value: a number within 2^53, else a bigint with its exact digits. */
function longIntegerValue(b: Buffer, s: number, e: number): number | bigint {
  const big = BigInt(b.toString('latin1', s, e));
  return big >= MIN_SAFE && big <= MAX_SAFE ? Number(big) : big;
}
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The integer a token [s, e) holds when it is one of at most 15 digits (else NaN). */
function integerToken(b: Uint8Array, s: number, e: number): number {
  let i = s;
  const negative = b[i] === MINUS;
  if (negative) i++;
  if (e - i < 1 || e - i > 15) return NaN;
  let n = 0;
  for (; i < e; i++) {
    const c = b[i]!;
    if (c < ZERO || c > NINE) return NaN;
    n = n * 10 + (c - ZERO);
  }
  return negative ? -n : n;
}

/** A string token [s, e) whose text `JSON.stringify` writes the same: no `\/` and no `\u` escapes. */
function verbatimString(b: Uint8Array, s: number, e: number): boolean {
  for (let i = s + 1; i < e - 1; i++) {
    if (b[i] === BACKSLASH) {
      const c = b[i + 1];
      if (c === 0x2f || c === 0x75) return false;
      i++;
    }
  }
  return true;
}

function allDigits(b: Uint8Array, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i]! < ZERO || b[i]! > NINE) return false;
  return true;
}

function sameRange(b: Uint8Array, s1: number, e1: number, s2: number, e2: number): boolean {
  if (e1 - s1 !== e2 - s2) return false;
  for (let k = 0; k < e1 - s1; k++) if (b[s1 + k] !== b[s2 + k]) return false;
  return true;
}

const MAX_CANONICAL_DEPTH = 64;
/** Names seen in the objects being checked (start, end pairs), shared to allocate nothing. */
const names = new Int32Array(1024);

/**
 * End of the canonical value at `i`, or -1: text that `JSON.stringify(JSON.parse(text))` gives back
 * unchanged (no whitespace, verbatim strings, canonical numbers, no repeated or integer-like names,
 * which `JSON.parse` would merge or move to the front).
 */
function canonicalValue(b: Uint8Array, i: number, end: number, depth: number, named: number): number {
  const c = b[i];
  if (c === QUOTE) {
    let k = i + 1;
    while (k < end) {
      const d = b[k]!;
      if (d === QUOTE) return verbatimString(b, i, k + 1) ? k + 1 : -1;
      k += d === BACKSLASH ? 2 : 1;
    }
    return -1;
  }
  if (c === LBRACE || c === LBRACKET) {
    if (depth >= MAX_CANONICAL_DEPTH) return -1;
    const object = c === LBRACE;
    const close = object ? RBRACE : RBRACKET;
    let k = i + 1;
    if (b[k] === close) return k + 1;
    // This object's names go to names[base...], above those of the objects it is inside.
    const base = named;
    for (;;) {
      if (object) {
        if (b[k] !== QUOTE) return -1;
        const keyEnd = canonicalValue(b, k, end, depth + 1, named);
        if (keyEnd < 0 || allDigits(b, k + 1, keyEnd - 1)) return -1;
        for (let n = base; n < named; n += 2) if (sameRange(b, names[n]!, names[n + 1]!, k, keyEnd)) return -1;
        if (named + 2 > names.length) return -1;
        names[named++] = k;
        names[named++] = keyEnd;
        if (b[keyEnd] !== COLON) return -1;
        k = keyEnd + 1;
      }
      k = canonicalValue(b, k, end, depth + 1, named);
      if (k < 0) return -1;
      if (b[k] === close) return k + 1;
      if (b[k] !== COMMA) return -1;
      k++;
    }
  }
  if (c === 0x74) return i + 4;
  if (c === 0x66) return i + 5;
  if (c === 0x6e) return i + 4;
  let k = i;
  while (k < end && (b[k] === MINUS || b[k] === DOT || (b[k]! >= ZERO && b[k]! <= NINE) || b[k] === 0x65 || b[k] === 0x45 || b[k] === PLUS)) k++;
  return canonicalNumber(b, i, k) ? k : -1;
}

/** Is the (valid) object or array token [s, e) written as `JSON.stringify` writes its value? */
export function canonicalJson(b: Uint8Array, s: number, e: number): boolean {
  return canonicalValue(b, s, e, 0, 0) === e;
}

/** In the (valid) object token [s, e): where the value of its one member `name` starts; -1 when there is none, or more than one. */
function memberValue(b: Uint8Array, s: number, e: number, name: Uint8Array): number {
  let found = -1;
  let k = s + 1;
  // Walk this object's members: at a quote a name starts, and its value is skipped whole.
  while (k < e - 1) {
    if (b[k] !== QUOTE) {
      k++;
      continue;
    }
    let q = k + 1;
    while (b[q] !== QUOTE) {
      if (b[q] === BACKSLASH) return -1; // an escaped name could be this one: the reference decides
      q++;
    }
    let v = q + 1;
    while (b[v] !== COLON) v++;
    v++;
    while (b[v] === 0x20 || b[v] === LF || b[v] === CR || b[v] === 0x09) v++;
    const valueEnd = valueEndIn(b, v, e - 1);
    if (sameBytes(b, k + 1, q, name)) {
      if (found >= 0) return -1;
      found = v;
    }
    k = valueEnd;
  }
  return found;
}

/** End of the (valid) value starting at `i`, within `limit`. */
function valueEndIn(b: Uint8Array, i: number, limit: number): number {
  const c = b[i];
  if (c === QUOTE) {
    let q = i + 1;
    while (b[q] !== QUOTE) q += b[q] === BACKSLASH ? 2 : 1;
    return q + 1;
  }
  if (c === LBRACE || c === LBRACKET) {
    let depth = 0;
    let k = i;
    while (k < limit + 1) {
      const d = b[k]!;
      if (d === QUOTE) {
        k++;
        while (b[k] !== QUOTE) k += b[k] === BACKSLASH ? 2 : 1;
      } else if (d === LBRACE || d === LBRACKET) {
        depth++;
      } else if (d === RBRACE || d === RBRACKET) {
        depth--;
        if (depth === 0) return k + 1;
      }
      k++;
    }
    return limit;
  }
  let k = i;
  while (k < limit && b[k] !== COMMA && b[k] !== RBRACE && b[k] !== RBRACKET && b[k] !== 0x20 && b[k] !== LF && b[k] !== CR && b[k] !== 0x09) k++;
  return k;
}

const DEFERRED = Buffer.from('__deferred');
const KEY = Buffer.from('__KEY');

/** relatedKey's fast path: where the string token of `__deferred.__KEY` starts in the object token [s, e), or -1 (its end: stringEnd). */
function relatedKeyStart(b: Uint8Array, s: number, e: number): number {
  if (b[s] !== LBRACE) return -1;
  const deferred = memberValue(b, s, e, DEFERRED);
  if (deferred < 0 || b[deferred] !== LBRACE) return -1;
  const key = memberValue(b, deferred, valueEndIn(b, deferred, e - 1), KEY);
  return key >= 0 && b[key] === QUOTE ? key : -1;
}

/** End (after the closing quote) of the (valid) string token starting at `i`. */
function stringEnd(b: Uint8Array, i: number): number {
  let q = i + 1;
  while (b[q] !== QUOTE) q += b[q] === BACKSLASH ? 2 : 1;
  return q + 1;
}

/** End of the run of at most `max` digits from `i` (before `last`). */
function digitsEnd(b: Uint8Array, i: number, last: number, max: number): number {
  let k = i;
  while (k < last && k - i < max && b[k]! >= ZERO && b[k]! <= NINE) k++;
  return k;
}

/** The value of the digits [i, end). */
function digitsValue(b: Uint8Array, i: number, end: number): number {
  let n = 0;
  for (let k = i; k < end; k++) n = n * 10 + (b[k]! - ZERO);
  return n;
}

/** `D!M!YYYY` in the string token [s, e): the ISO date fourDDateToIso makes of it, as bytes into `out`; 0 none, -1 not handled. */
function isoDate(b: Uint8Array, s: number, e: number, out: Uint8Array): number {
  const last = e - 1;
  const dayEnd = digitsEnd(b, s + 1, last, 2);
  if (dayEnd === s + 1 || b[dayEnd] !== BANG) return -1;
  const monthEnd = digitsEnd(b, dayEnd + 1, last, 2);
  if (monthEnd === dayEnd + 1 || b[monthEnd] !== BANG) return -1;
  const yearStart = monthEnd + 1;
  const yearEnd = digitsEnd(b, yearStart, last, 4);
  if (yearEnd === yearStart || yearEnd !== last) return -1;
  const day = digitsValue(b, s + 1, dayEnd);
  const month = digitsValue(b, dayEnd + 1, monthEnd);
  let year = digitsValue(b, yearStart, yearEnd);
  if (day === 0 && month === 0 && year === 0) return 0;
  if (yearEnd - yearStart <= 2) year += year > 50 ? 1900 : 2000;
  out[0] = ZERO + Math.floor(year / 1000);
  out[1] = ZERO + (Math.floor(year / 100) % 10);
  out[2] = ZERO + (Math.floor(year / 10) % 10);
  out[3] = ZERO + (year % 10);
  out[4] = MINUS;
  out[5] = ZERO + Math.floor(month / 10);
  out[6] = ZERO + (month % 10);
  out[7] = MINUS;
  out[8] = ZERO + Math.floor(day / 10);
  out[9] = ZERO + (day % 10);
  return 10;
}

// ---- encoders ----------------------------------------------------------------------------------

/** Appends one row per entity of a scanned page, the bytes the reference writes for that row. */
export interface Transcoder {
  entity(sink: ByteSink, page: ScannedPage, i: number): void;
}

/** Slots of the columns in a page's layout (computed once per layout). */
function slotsFor(columns: readonly TranscodeColumn[]): (page: ScannedPage) => Int32Array {
  let layout: unknown;
  let slots = new Int32Array(0);
  return (page) => {
    if (page.layout !== layout) {
      layout = page.layout;
      slots = Int32Array.from(columns.map((c) => page.layout.slot(c.name)));
      if (slots.some((s) => s < 0)) throw new Error('a column is missing from the scan layout');
    }
    return slots;
  };
}

const FORMULA_FIRST = new Set([0x3d, 0x2b, MINUS, 0x40]); // = + - @ (TAB and CR are escapes in JSON)

/**
 * CSV cells as csvEncoder (./csv.ts) writes them; `reference` is its cell, with the same delimiter
 * and excelSafe, for what the fast path leaves. Undefined for a delimiter that is not one ASCII
 * character (the reference handles those).
 */
export function csvTranscoder(
  columns: readonly TranscodeColumn[],
  options: { delimiter?: string; excelSafe?: boolean; reference: (value: unknown) => string },
): Transcoder | undefined {
  const delimiter = options.delimiter ?? ',';
  if (delimiter.length !== 1 || delimiter.charCodeAt(0) >= 0x80) return undefined;
  const delim = delimiter.charCodeAt(0);
  const excelSafe = options.excelSafe === true;
  const { reference } = options;
  // Dates are written as digits and '-': with such a delimiter they would need quotes.
  const datesFast = !/[0-9-]/.test(delimiter);
  const date = Buffer.alloc(10);

  /** Bytes that hold no escapes, quoted when they contain the delimiter, a quote, CR or LF. */
  const plain = (sink: ByteSink, b: Buffer, s: number, e: number): void => {
    let quote = false;
    let quotes = 0;
    for (let k = s; k < e; k++) {
      const c = b[k]!;
      if (c === delim || c === LF || c === CR) quote = true;
      else if (c === QUOTE) quotes++;
    }
    if (!quote && quotes === 0) {
      sink.bytes(b, s, e);
      return;
    }
    const buf = sink.ensure(e - s + quotes + 2);
    let p = sink.pos;
    buf[p++] = QUOTE;
    for (let k = s; k < e; k++) {
      const c = b[k]!;
      buf[p++] = c;
      if (c === QUOTE) buf[p++] = QUOTE;
    }
    buf[p++] = QUOTE;
    sink.pos = p;
  };

  /** A string token as a cell; false (nothing written) for \u escapes, or any escape when `plainOnly`. */
  const string = (sink: ByteSink, b: Buffer, s: number, e: number, plainOnly: boolean): boolean => {
    const from = s + 1;
    const to = e - 1;
    let quote = false;
    let escaped = false;
    for (let k = from; k < to; k++) {
      const c = b[k]!;
      if (c === BACKSLASH) {
        escaped = true;
        break;
      }
      if (c === delim) quote = true;
    }
    if (!escaped) {
      let lead = from;
      while (lead < to && b[lead] === APOSTROPHE) lead++;
      const formula = excelSafe && lead < to && FORMULA_FIRST.has(b[lead]!);
      if (formula && delim === APOSTROPHE) quote = true;
      const buf = sink.ensure(to - from + 3);
      if (quote) buf[sink.pos++] = QUOTE;
      if (formula) buf[sink.pos++] = APOSTROPHE;
      sink.bytes(b, from, to);
      if (quote) sink.byte(QUOTE);
      return true;
    }
    if (plainOnly) return false;
    // Escapes: decode them (the text is what JSON.parse makes of them), quote and double quotes.
    quote = false;
    let extra = 0;
    // The first character after any leading 's: get-table --excel-safe escapes `'=x` too.
    let first = -1;
    for (let k = from; k < to; k++) {
      let c = b[k]!;
      if (c === BACKSLASH) {
        c = escapedChar(b[++k]!);
        if (c < 0) return false;
      }
      if (first < 0 && c !== APOSTROPHE) first = c;
      if (c === QUOTE) {
        quote = true;
        extra++;
      } else if (c === delim || c === LF || c === CR) {
        quote = true;
      }
    }
    const formula = excelSafe && (FORMULA_FIRST.has(first) || first === 0x09 || first === CR);
    if (formula && delim === APOSTROPHE) quote = true;
    const buf = sink.ensure(to - from + extra + 3);
    let p = sink.pos;
    if (quote) buf[p++] = QUOTE;
    if (formula) buf[p++] = APOSTROPHE;
    for (let k = from; k < to; k++) {
      let c = b[k]!;
      if (c === BACKSLASH) c = escapedChar(b[++k]!);
      buf[p++] = c;
      if (c === QUOTE) buf[p++] = QUOTE;
    }
    if (quote) buf[p++] = QUOTE;
    sink.pos = p;
    return true;
  };

  /** keepValue's cell; false when the reference must write it. */
  const value = (sink: ByteSink, b: Buffer, s: number, e: number): boolean => {
    const c = b[s]!;
    if (c === QUOTE) return string(sink, b, s, e, false);
    if (c === 0x6e) return true; // null
    if (c === LBRACE || c === LBRACKET) {
      if (!canonicalJson(b, s, e)) return false;
    } else if (c !== 0x74 && c !== 0x66 && !canonicalNumber(b, s, e)) {
      return false;
    }
    plain(sink, b, s, e);
    return true;
  };

  /** A long64 beyond 15 digits: the server's digits, exact (quoted when they hold the delimiter). */
  const longIntegerCell = (sink: ByteSink, b: Buffer, s: number, e: number): boolean => {
    if (!longInteger(b, s, e)) return false;
    plain(sink, b, s, e);
    return true;
  };

  const cell = (sink: ByteSink, kind: Kind, b: Buffer, s: number, e: number): boolean => {
    if (s < 0) return kind !== Kind.Reference; // absent: null, an empty cell
    switch (kind) {
      case Kind.Value:
        return value(sink, b, s, e);
      case Kind.Integer:
        return shortIntegerOrNull(b, s, e) ? value(sink, b, s, e) : longIntegerCell(sink, b, s, e);
      case Kind.None:
        return true;
      case Kind.Date: {
        if (b[s] === 0x6e) return true;
        if (b[s] !== QUOTE || !datesFast) return false;
        const n = isoDate(b, s, e, date);
        if (n > 0) sink.bytes(date, 0, n);
        return n >= 0;
      }
      case Kind.Time: {
        if (b[s] === 0x6e) return true;
        const ms = integerToken(b, s, e);
        if (Number.isNaN(ms)) return false;
        sink.text(reference(msToTime(ms)));
        return true;
      }
      case Kind.Related: {
        if (b[s] === 0x6e) return true;
        const k = relatedKeyStart(b, s, e);
        return k >= 0 && string(sink, b, k, stringEnd(b, k), false);
      }
      case Kind.Text:
        return b[s] === QUOTE && string(sink, b, s, e, false);
      case Kind.Timestamp:
        if (b[s] === 0x6e) return true;
        return b[s] === QUOTE && string(sink, b, s, e, true);
      default:
        return false;
    }
  };

  return rowEncoder(columns, cell, {
    before: (sink, col) => {
      if (col > 0) sink.byte(delim);
    },
    reference,
    after: (sink) => sink.byte(LF),
  });
}

/**
 * A transcoder from an encoder's parts: per entity and column `before` (a separator, a name), the
 * cell from its bytes (`cell`, which writes it or says no) or else `reference` of the converted
 * value (read back with JSON.parse), then `after`.
 */
function rowEncoder(
  columns: readonly TranscodeColumn[],
  cell: (sink: ByteSink, kind: Kind, b: Buffer, s: number, e: number) => boolean,
  parts: { before(sink: ByteSink, col: number): void; reference(value: unknown): string; after(sink: ByteSink): void },
): Transcoder {
  const kinds = columns.map((c) => kindOf(c.convert));
  const slotsOf = slotsFor(columns);
  return {
    entity(sink, page, i) {
      const slots = slotsOf(page);
      const b = page.body;
      for (let col = 0; col < kinds.length; col++) {
        parts.before(sink, col);
        const slot = slots[col]!;
        const s = page.start(i, slot);
        if (!cell(sink, kinds[col]!, b, s, s < 0 ? s : page.end(i, slot))) sink.text(parts.reference(columns[col]!.convert(page.value(i, slot))));
      }
      parts.after(sink);
    },
  };
}

/** The character a JSON escape letter stands for (\u excluded: -1). */
function escapedChar(letter: number): number {
  switch (letter) {
    case QUOTE:
      return QUOTE;
    case BACKSLASH:
      return BACKSLASH;
    case 0x2f:
      return 0x2f;
    case 0x62:
      return 0x08;
    case 0x66:
      return 0x0c;
    case 0x6e:
      return LF;
    case 0x72:
      return CR;
    case 0x74:
      return 0x09;
    default:
      return -1;
  }
}

/**
 * JSON objects, one per row, keys in column order, as `JSON.stringify` writes them. Undefined when
 * the columns would not make such an object (a repeated name, or one JavaScript orders differently:
 * integer-like names, `__proto__`): the reference handles those.
 */
export function jsonTranscoder(columns: readonly TranscodeColumn[]): Transcoder | undefined {
  const names = columns.map((c) => c.name);
  if (new Set(names).size !== names.length || names.some((n) => n === '__proto__' || /^\d+$/.test(n))) return undefined;
  // `{"a":` then `,"b":` ...
  const heads = names.map((n, i) => Buffer.from(`${i === 0 ? '{' : ','}${JSON.stringify(n)}:`, 'utf8'));
  const date = Buffer.alloc(12);
  const NULL = Buffer.from('null');

  const value = (sink: ByteSink, b: Buffer, s: number, e: number): boolean => {
    const c = b[s]!;
    if (c === QUOTE) {
      if (!verbatimString(b, s, e)) return false;
    } else if (c === LBRACE || c === LBRACKET) {
      if (!canonicalJson(b, s, e)) return false;
    } else if (c !== 0x6e && c !== 0x74 && c !== 0x66 && !canonicalNumber(b, s, e)) {
      return false;
    }
    sink.bytes(b, s, e);
    return true;
  };

  /** A long64 beyond 15 digits: the server's digits, exact, a JSON number. */
  const longIntegerCell = (sink: ByteSink, b: Buffer, s: number, e: number): boolean => {
    if (!longInteger(b, s, e)) return false;
    sink.bytes(b, s, e);
    return true;
  };

  const cell = (sink: ByteSink, kind: Kind, b: Buffer, s: number, e: number): boolean => {
    if (s < 0 || (b[s] === 0x6e && kind !== Kind.Text)) {
      // Absent, or null: null for every converter but keyText (String(null)).
      if (kind === Kind.Reference || kind === Kind.Text) return false;
      sink.bytes(NULL, 0, 4);
      return true;
    }
    switch (kind) {
      case Kind.Value:
        return value(sink, b, s, e);
      case Kind.Integer:
        return shortIntegerOrNull(b, s, e) ? value(sink, b, s, e) : longIntegerCell(sink, b, s, e);
      case Kind.None:
        sink.bytes(NULL, 0, 4);
        return true;
      case Kind.Date: {
        if (b[s] !== QUOTE) return false;
        const n = isoDate(b, s, e, date.subarray(1));
        if (n < 0) return false;
        if (n === 0) {
          sink.bytes(NULL, 0, 4);
        } else {
          date[0] = QUOTE;
          date[11] = QUOTE;
          sink.bytes(date, 0, 12);
        }
        return true;
      }
      case Kind.Time: {
        const ms = integerToken(b, s, e);
        if (Number.isNaN(ms)) return false;
        sink.byte(QUOTE);
        sink.ascii(msToTime(ms)!);
        sink.byte(QUOTE);
        return true;
      }
      case Kind.Related: {
        const k = relatedKeyStart(b, s, e);
        if (k < 0) return false;
        const end = stringEnd(b, k);
        if (!verbatimString(b, k, end)) return false;
        sink.bytes(b, k, end);
        return true;
      }
      case Kind.Text:
        if (b[s] !== QUOTE || !verbatimString(b, s, e)) return false;
        sink.bytes(b, s, e);
        return true;
      case Kind.Timestamp:
        for (let k = s + 1; k < e - 1; k++) if (b[k] === BACKSLASH) return false;
        if (b[s] !== QUOTE) return false;
        sink.bytes(b, s, e);
        return true;
      default:
        return false;
    }
  };

  return rowEncoder(columns, cell, {
    before: (sink, col) => sink.bytes(heads[col]!, 0, heads[col]!.length),
    reference: jsonText,
    after: (sink) => {
      if (columns.length === 0) sink.byte(LBRACE);
      sink.byte(RBRACE);
    },
  });
}

/**
 * The rows of the reference (each column's converter applied to the value JSON.parse reads),
 * built from a scanned page without parsing it whole: for exportRows (sync, --xlsx, --table).
 */
export function rowTranscoder(columns: readonly TranscodeColumn[]): (page: ScannedPage, i: number) => unknown[] {
  const kinds = columns.map((c) => kindOf(c.convert));
  const slotsOf = slotsFor(columns);
  const date = Buffer.alloc(10);

  /** A string token's text: its bytes when it has no escapes, else what JSON.parse makes of it. */
  const string = (b: Buffer, s: number, e: number): string => {
    for (let k = s + 1; k < e - 1; k++) if (b[k] === BACKSLASH) return JSON.parse(b.toString('utf8', s, e)) as string;
    return b.toString('utf8', s + 1, e - 1);
  };

  /** The value as JSON.parse reads it, quicker for strings and integers. */
  const value = (b: Buffer, s: number, e: number): unknown => {
    const c = b[s]!;
    if (c === QUOTE) return string(b, s, e);
    if (c === 0x6e) return null;
    if (c === 0x74) return true;
    if (c === 0x66) return false;
    if (c !== LBRACE && c !== LBRACKET) {
      const n = integerToken(b, s, e);
      if (!Number.isNaN(n)) return n;
    }
    return JSON.parse(b.toString('utf8', s, e));
  };

  /** The converted value, or `undefined` for the reference to make it. */
  const cell = (kind: Kind, b: Buffer, s: number, e: number): unknown => {
    switch (kind) {
      case Kind.Value:
        return value(b, s, e);
      case Kind.Integer: {
        if (b[s] === 0x6e) return null;
        const n = integerToken(b, s, e);
        if (!Number.isNaN(n)) return n;
        return longInteger(b, s, e) ? longIntegerValue(b, s, e) : undefined;
      }
      case Kind.None:
        return null;
      case Kind.Date: {
        if (b[s] === 0x6e) return null;
        if (b[s] !== QUOTE) return undefined;
        const n = isoDate(b, s, e, date);
        return n < 0 ? undefined : n === 0 ? null : date.toString('latin1', 0, 10);
      }
      case Kind.Time: {
        if (b[s] === 0x6e) return null;
        const ms = integerToken(b, s, e);
        return Number.isNaN(ms) ? undefined : msToTime(ms);
      }
      case Kind.Related: {
        if (b[s] === 0x6e) return null;
        const k = relatedKeyStart(b, s, e);
        return k >= 0 ? string(b, k, stringEnd(b, k)) : undefined;
      }
      case Kind.Text:
        return b[s] === QUOTE ? string(b, s, e) : undefined;
      case Kind.Timestamp: {
        if (b[s] === 0x6e) return null;
        if (b[s] !== QUOTE) return undefined;
        for (let k = s + 1; k < e - 1; k++) if (b[k] === BACKSLASH) return undefined;
        return b.toString('utf8', s + 1, e - 1);
      }
      default:
        return undefined;
    }
  };

  return (page, i) => {
    const slots = slotsOf(page);
    const b = page.body;
    const row = new Array<unknown>(kinds.length);
    for (let col = 0; col < kinds.length; col++) {
      const slot = slots[col]!;
      const s = page.start(i, slot);
      const fast = s < 0 ? undefined : cell(kinds[col]!, b, s, page.end(i, slot));
      row[col] = fast !== undefined ? fast : columns[col]!.convert(page.value(i, slot));
    }
    return row;
  };
}

// ---- xlsx --------------------------------------------------------------------------------------

const AMP = 0x26;
const LT = 0x3c;
const GT = 0x3e;
const UNDERSCORE = 0x5f;
/** ./excel.ts's EXCEL_MAX_CELL_TEXT, module-local (see above). */
const EXCEL_MAX_CELL_TEXT = 32_767;

const XML_AMP = Buffer.from('&amp;');
const XML_LT = Buffer.from('&lt;');
const XML_GT = Buffer.from('&gt;');
const XML_QUOT = Buffer.from('&quot;');
const XML_CR = Buffer.from('&#13;');
const X_UNDERSCORE = Buffer.from('_x005F_');
const X_BACKSPACE = Buffer.from('_x0008_');
const X_FORMFEED = Buffer.from('_x000C_');
const X_FFFE = Buffer.from('_xFFFE_');
const X_FFFF = Buffer.from('_xFFFF_');
const CELL_NUMBER = Buffer.from('><v>');
const CELL_END = Buffer.from('</v></c>');
const CELL_TRUE = Buffer.from(' t="b"><v>1</v></c>');
const CELL_FALSE = Buffer.from(' t="b"><v>0</v></c>');
const CELL_DATE = Buffer.from(` s="${STYLE.date}"><v>`);
const CELL_TEXT = Buffer.from(' t="inlineStr"><is><t>');
const CELL_TEXT_SPACE = Buffer.from(' t="inlineStr"><is><t xml:space="preserve">');
const CELL_TEXT_END = Buffer.from('</t></is></c>');
const ROW_START = Buffer.from('<row r="');
const ROW_END = Buffer.from('</row>');

function put(out: Buffer, p: number, lit: Buffer): number {
  for (let k = 0; k < lit.length; k++) out[p++] = lit[k]!;
  return p;
}

/** Decimal digits of a non-negative integer into `out` at `p`; the position after them. */
function putDigits(out: Uint8Array, p: number, n: number): number {
  let len = 1;
  for (let m = n; m >= 10; m = Math.floor(m / 10)) len++;
  for (let k = p + len - 1; k >= p; k--) {
    out[k] = ZERO + (n % 10);
    n = Math.floor(n / 10);
  }
  return p + len;
}

function isHexDigit(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** The code point of the (valid) UTF-8 character starting at `k`; astral ones as 0x10000 (only ever tested for whitespace). */
function codePointAt(b: Uint8Array, k: number): number {
  const c = b[k]!;
  if (c < 0x80) return c;
  if (c < 0xe0) return ((c & 0x1f) << 6) | (b[k + 1]! & 0x3f);
  if (c < 0xf0) return ((c & 0x0f) << 12) | ((b[k + 1]! & 0x3f) << 6) | (b[k + 2]! & 0x3f);
  return 0x10000;
}

/** Whitespace to JavaScript's `\s` (the reference's test for xml:space="preserve"). */
export function jsWhitespace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    c === 0x20 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/**
 * The text [from, to) as xmlText writes it (./excel.ts), into `out` at `p` (room for 7 bytes per
 * byte): `decode`, the contents of a JSON string whose escapes other than \u are decoded (\b and \f
 * become ST_Xstring escapes, \r `&#13;`); else text taken as it is (JSON text, digits).
 */
function xmlBytes(out: Buffer, p: number, b: Buffer, from: number, to: number, decode: boolean): number {
  for (let k = from; k < to; k++) {
    // A run of bytes that stay as they are, copied at once.
    let run = k;
    while (run < to && XML_PLAIN[b[run]!] === 1) run++;
    if (run - k > 48) {
      b.copy(out, p, k, run);
      p += run - k;
    } else {
      while (k < run) out[p++] = b[k++]!;
    }
    k = run;
    if (k >= to) break;
    const c = b[k]!;
    if (c === BACKSLASH && decode) {
      const d = escapedChar(b[++k]!);
      if (d === QUOTE) p = put(out, p, XML_QUOT);
      else if (d === CR) p = put(out, p, XML_CR);
      else if (d === 0x08) p = put(out, p, X_BACKSPACE);
      else if (d === 0x0c) p = put(out, p, X_FORMFEED);
      else out[p++] = d;
    } else if (c === AMP) {
      p = put(out, p, XML_AMP);
    } else if (c === LT) {
      p = put(out, p, XML_LT);
    } else if (c === GT) {
      p = put(out, p, XML_GT);
    } else if (c === QUOTE) {
      p = put(out, p, XML_QUOT);
    } else if (
      c === UNDERSCORE &&
      k + 6 < to &&
      b[k + 1] === 0x78 &&
      isHexDigit(b[k + 2]!) &&
      isHexDigit(b[k + 3]!) &&
      isHexDigit(b[k + 4]!) &&
      isHexDigit(b[k + 5]!) &&
      b[k + 6] === UNDERSCORE
    ) {
      p = put(out, p, X_UNDERSCORE);
    } else if (c === 0xef && b[k + 1] === 0xbf && (b[k + 2] === 0xbe || b[k + 2] === 0xbf)) {
      p = put(out, p, b[k + 2] === 0xbe ? X_FFFE : X_FFFF);
      k += 2;
    } else {
      out[p++] = c;
    }
  }
  return p;
}

/** Bytes xmlBytes copies as they are (everything but markup, `\\`, `_` and the lead byte of U+FFFE/U+FFFF). */
const XML_PLAIN = new Uint8Array(256).fill(1);
for (const c of [AMP, LT, GT, QUOTE, BACKSLASH, UNDERSCORE, 0xef]) XML_PLAIN[c] = 0;

/** Writes one row of a sheet (`<row r="N">…</row>`) per entity of a scanned page, the bytes ./xlsx.ts writes for it. */
export interface XlsxRowTranscoder {
  entity(sink: ByteSink, page: ScannedPage, i: number, row: number): void;
}

/**
 * Sheet rows as the reference writes them (./excel.ts cellEncoder, `reference`, the cells of
 * converted values), for columns of the given cell kinds.
 */
export function xlsxTranscoder(
  columns: readonly TranscodeColumn[],
  cellKinds: readonly CellKind[],
  reference: (ref: string, value: unknown, kind: CellKind) => string,
): XlsxRowTranscoder {
  const cellKindOf = columns.map((_, i) => cellKinds[i] ?? 'auto');
  // A cell kind other than the converter's (a date column read raw) takes the reference.
  const kinds = columns.map((c, i): Kind => {
    const kind = kindOf(c.convert);
    const cellKind = cellKindOf[i];
    if (kind === Kind.None) return kind;
    if (kind === Kind.Date) return cellKind === 'date' ? kind : Kind.Reference;
    if (kind === Kind.Time) return cellKind === 'time' ? kind : Kind.Reference;
    return cellKind === 'auto' ? kind : Kind.Reference;
  });
  const letters = columns.map((_, i) => columnLetters(i));
  const heads = letters.map((l) => Buffer.from(`<c r="${l}`));
  const slotsOf = slotsFor(columns);
  const date = Buffer.alloc(10);
  /** Time cells after their reference, by whole seconds (the first four days). */
  const timeTails = new Array<Buffer | undefined>(4 * 86_400);
  /** The digits of the row being written. */
  const rowDigits = Buffer.alloc(16);
  let rowLength = 0;

  /** `<c r="A12"`, with room for `n` bytes after it; the buffer to write them to (at sink.pos). */
  const head = (sink: ByteSink, col: number, n: number): Buffer => {
    const h = heads[col]!;
    const buf = sink.ensure(h.length + rowLength + 1 + n);
    let p = put(buf, sink.pos, h);
    for (let k = 0; k < rowLength; k++) buf[p++] = rowDigits[k]!;
    buf[p++] = QUOTE;
    sink.pos = p;
    return buf;
  };

  const literal = (sink: ByteSink, col: number, lit: Buffer): void => {
    const buf = head(sink, col, lit.length);
    sink.pos = put(buf, sink.pos, lit);
  };

  /** A number cell of the token [s, e) (written as String(value) writes it). */
  const numberCell = (sink: ByteSink, col: number, b: Buffer, s: number, e: number): void => {
    const buf = head(sink, col, e - s + 12);
    let p = put(buf, sink.pos, CELL_NUMBER);
    for (let k = s; k < e; k++) buf[p++] = b[k]!;
    sink.pos = put(buf, p, CELL_END);
  };

  /** An inline string cell of the text [from, to) (see xmlBytes), its first and last characters known. */
  const textCell = (sink: ByteSink, col: number, b: Buffer, from: number, to: number, decode: boolean, preserve: boolean): void => {
    const open = preserve ? CELL_TEXT_SPACE : CELL_TEXT;
    const buf = head(sink, col, open.length + (to - from) * 7 + CELL_TEXT_END.length);
    const p = xmlBytes(buf, put(buf, sink.pos, open), b, from, to, decode);
    sink.pos = put(buf, p, CELL_TEXT_END);
  };

  /**
   * The cell of a JSON string token [s, e) (nothing for ''); false for what the reference writes
   * (\u escapes, text that may be longer than Excel's limit: never more characters than bytes).
   */
  const stringCell = (sink: ByteSink, col: number, b: Buffer, s: number, e: number): boolean => {
    const from = s + 1;
    const to = e - 1;
    if (to - from > EXCEL_MAX_CELL_TEXT) return false;
    if (to === from) return true;
    let escaped = false;
    for (let k = from; k < to; k++) {
      if (b[k] === BACKSLASH) {
        escaped = true;
        break;
      }
    }
    let last = to - 1;
    if (!escaped) {
      while ((b[last]! & 0xc0) === 0x80) last--; // back to the start of the last character
    } else {
      for (let k = from; k < to; k++) {
        const c = b[k]!;
        if ((c & 0xc0) === 0x80) continue; // inside a character
        last = k;
        if (c === BACKSLASH) {
          if (escapedChar(b[k + 1]!) < 0) return false;
          k++;
        }
      }
    }
    const first = b[from] === BACKSLASH ? escapedChar(b[from + 1]!) : codePointAt(b, from);
    const end = b[last] === BACKSLASH ? escapedChar(b[last + 1]!) : codePointAt(b, last);
    textCell(sink, col, b, from, to, true, jsWhitespace(first) || jsWhitespace(end));
    return true;
  };

  const cell = (sink: ByteSink, col: number, kind: Kind, b: Buffer, s: number, e: number): boolean => {
    if (s < 0) return kind !== Kind.Reference; // absent: null, no cell
    const c = b[s]!;
    switch (kind) {
      case Kind.Value:
        if (c === QUOTE) return stringCell(sink, col, b, s, e);
        if (c === 0x6e) return true;
        if (c === 0x74 || c === 0x66) {
          literal(sink, col, c === 0x74 ? CELL_TRUE : CELL_FALSE);
          return true;
        }
        if (c === LBRACE || c === LBRACKET) {
          // JSON.stringify's text (no whitespace around it), within Excel's limit.
          if (e - s > EXCEL_MAX_CELL_TEXT || !canonicalJson(b, s, e)) return false;
          textCell(sink, col, b, s, e, false, false);
          return true;
        }
        // At most 15 significant digits: below 1e15 when an integer.
        if (!canonicalNumber(b, s, e)) return false;
        numberCell(sink, col, b, s, e);
        return true;
      case Kind.Integer:
        if (c === 0x6e) return true;
        if (canonicalNumber(b, s, e)) {
          numberCell(sink, col, b, s, e);
          return true;
        }
        // 16 digits and more: text (the number's or the bigint's digits: the token's).
        if (!longInteger(b, s, e)) return false;
        textCell(sink, col, b, s, e, false, false);
        return true;
      case Kind.None:
        return true;
      case Kind.Date: {
        if (c === 0x6e) return true;
        if (c !== QUOTE) return false;
        const n = isoDate(b, s, e, date);
        if (n <= 0) return n === 0;
        const year = (date[0]! - ZERO) * 1000 + (date[1]! - ZERO) * 100 + (date[2]! - ZERO) * 10 + (date[3]! - ZERO);
        const serial = excelSerial(year, (date[5]! - ZERO) * 10 + (date[6]! - ZERO), (date[8]! - ZERO) * 10 + (date[9]! - ZERO));
        if (serial === undefined) {
          textCell(sink, col, date, 0, 10, false, false);
        } else {
          const buf = head(sink, col, CELL_DATE.length + 16 + CELL_END.length);
          const p = putDigits(buf, put(buf, sink.pos, CELL_DATE), serial);
          sink.pos = put(buf, p, CELL_END);
        }
        return true;
      }
      case Kind.Time: {
        if (c === 0x6e) return true;
        const ms = integerToken(b, s, e);
        if (Number.isNaN(ms)) return false;
        // The cell depends on the whole seconds only (msToTime rounds to them): cached per second.
        const seconds = Math.round(ms / 1000);
        if (seconds >= 0 && seconds < timeTails.length) {
          let cached = timeTails[seconds];
          if (cached === undefined) {
            cached = Buffer.from(timeCellTail(msToTime(ms)!)!, 'latin1');
            timeTails[seconds] = cached;
          }
          literal(sink, col, cached);
          return true;
        }
        const text = msToTime(ms)!;
        const tail = timeCellTail(text);
        if (tail === undefined) {
          // A negative duration: text.
          head(sink, col, 0);
          sink.ascii(` t="inlineStr"><is><t>${text}</t></is></c>`);
        } else {
          head(sink, col, 0);
          sink.ascii(tail);
        }
        return true;
      }
      case Kind.Related: {
        if (c === 0x6e) return true;
        const k = relatedKeyStart(b, s, e);
        return k >= 0 && stringCell(sink, col, b, k, stringEnd(b, k));
      }
      case Kind.Text:
        return c === QUOTE && stringCell(sink, col, b, s, e);
      case Kind.Timestamp:
        if (c === 0x6e) return true;
        if (c !== QUOTE) return false;
        // The converter cuts quotes, which only an escape (\") can put there.
        for (let k = s + 1; k < e - 1; k++) if (b[k] === BACKSLASH) return false;
        return stringCell(sink, col, b, s, e);
      default:
        return false;
    }
  };

  return {
    entity(sink, page, i, row) {
      rowLength = putDigits(rowDigits, 0, row);
      const slots = slotsOf(page);
      const b = page.body;
      const start = sink.ensure(ROW_START.length + rowLength + 2);
      let p = put(start, sink.pos, ROW_START);
      for (let k = 0; k < rowLength; k++) start[p++] = rowDigits[k]!;
      start[p++] = QUOTE;
      start[p++] = GT;
      sink.pos = p;
      for (let col = 0; col < kinds.length; col++) {
        const slot = slots[col]!;
        const s = page.start(i, slot);
        if (!cell(sink, col, kinds[col]!, b, s, s < 0 ? s : page.end(i, slot))) {
          sink.text(reference(`${letters[col]}${row}`, columns[col]!.convert(page.value(i, slot)), cellKindOf[col]!));
        }
      }
      const buf = sink.ensure(ROW_END.length);
      sink.pos = put(buf, sink.pos, ROW_END);
    },
  };
}
