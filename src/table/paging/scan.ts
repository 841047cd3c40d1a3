/**
 * Reading a page of entities from its JSON bytes without building objects (the export's hot path).
 *
 * Profiling a 200,000-row CSV export showed the client's time in UTF-8 decoding of the page
 * (`Buffer.toString`), `JSON.parse`, the garbage collector and CSV encoding, all of it spent on
 * objects that live for one page. `scanPage` instead walks the bytes once, checks that they are
 * JSON, and notes where each wanted attribute's value starts and ends in each entity; the encoders
 * of ../output/transcode.ts then copy or convert those byte ranges straight into the output.
 *
 * The rule that keeps this exact: the scanner accepts nothing `JSON.parse` would reject, and it
 * gives up (returns undefined, and the caller parses the page the old way) on anything it does not
 * handle: bytes that are not valid UTF-8 (decoding would replace them), entities that are not
 * objects, a repeated `__ENTITIES`, nesting deeper than MAX_DEPTH.
 * A value read back from its range with `JSON.parse` equals the value `JSON.parse` of the whole
 * page holds (duplicate attributes: the last one wins in both).
 */
import { isUtf8 } from 'node:buffer';
import type { Envelope } from '../../rest/types.js';
import type { RawRow } from '../verify.js';

// JSON's bytes. Module-local on purpose, here and in ../output/transcode.ts: measured, the same constants
// exported or imported (live module bindings) made the scan 35% and the encoders 20% slower.
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
const UNDERSCORE = 0x5f;
const MAX_DEPTH = 256;

/** JSON whitespace: space, tab, LF, CR. */
function ws(b: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
  return i;
}

function isHex(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Just past the string opening at `i`, or -1 when it is not a valid JSON string. */
export function skipString(b: Uint8Array, i: number, end: number): number {
  i++;
  while (i < end) {
    const c = b[i]!;
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) {
      if (i + 1 >= end) return -1;
      const e = b[i + 1]!;
      if (e === 0x75) {
        if (i + 5 >= end || !isHex(b[i + 2]!) || !isHex(b[i + 3]!) || !isHex(b[i + 4]!) || !isHex(b[i + 5]!)) return -1;
        i += 6;
      } else if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
      } else {
        return -1;
      }
    } else if (c < 0x20) {
      return -1;
    } else {
      i++;
    }
  }
  return -1;
}

function skipDigits(b: Uint8Array, i: number, end: number): number {
  while (i < end && b[i]! >= ZERO && b[i]! <= NINE) i++;
  return i;
}

/** Just past the number starting at `i` (JSON grammar), or -1. */
export function skipNumber(b: Uint8Array, i: number, end: number): number {
  if (i < end && b[i] === MINUS) i++;
  if (i >= end) return -1;
  const c = b[i]!;
  if (c === ZERO) {
    i++;
  } else if (c > ZERO && c <= NINE) {
    i = skipDigits(b, i + 1, end);
  } else {
    return -1;
  }
  if (i < end && b[i] === DOT) {
    i++;
    const digits = i;
    i = skipDigits(b, i, end);
    if (i === digits) return -1;
  }
  if (i < end && (b[i] === 0x65 || b[i] === 0x45)) {
    i++;
    if (i < end && (b[i] === PLUS || b[i] === MINUS)) i++;
    const digits = i;
    i = skipDigits(b, i, end);
    if (i === digits) return -1;
  }
  return i;
}

const TRUE = [0x74, 0x72, 0x75, 0x65];
const FALSE = [0x66, 0x61, 0x6c, 0x73, 0x65];
const NULL = [0x6e, 0x75, 0x6c, 0x6c];

function skipLiteral(b: Uint8Array, i: number, end: number, word: readonly number[]): number {
  if (i + word.length > end) return -1;
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word[k]) return -1;
  return i + word.length;
}

/** Just past the JSON value starting at `i` (no leading whitespace), or -1 when invalid (or nested too deep). */
export function skipValue(b: Uint8Array, i: number, end: number, depth = 0): number {
  if (i >= end) return -1;
  const c = b[i]!;
  if (c === QUOTE) return skipString(b, i, end);
  if (c === LBRACE || c === LBRACKET) {
    if (depth >= MAX_DEPTH) return -1;
    const object = c === LBRACE;
    const close = object ? RBRACE : RBRACKET;
    i = ws(b, i + 1, end);
    if (i < end && b[i] === close) return i + 1;
    for (;;) {
      if (object) {
        if (i >= end || b[i] !== QUOTE) return -1;
        i = skipString(b, i, end);
        if (i < 0) return -1;
        i = ws(b, i, end);
        if (i >= end || b[i] !== COLON) return -1;
        i = ws(b, i + 1, end);
      }
      i = skipValue(b, i, end, depth + 1);
      if (i < 0) return -1;
      i = ws(b, i, end);
      if (i >= end) return -1;
      const sep = b[i]!;
      if (sep === close) return i + 1;
      if (sep !== COMMA) return -1;
      i = ws(b, i + 1, end);
    }
  }
  if (c === 0x74) return skipLiteral(b, i, end, TRUE);
  if (c === 0x66) return skipLiteral(b, i, end, FALSE);
  if (c === 0x6e) return skipLiteral(b, i, end, NULL);
  return skipNumber(b, i, end);
}

/** The attributes a scan looks for in every entity. */
export class ScanLayout {
  /** The names as UTF-8 bytes. */
  readonly keys: Buffer[];
  /** Slot of `__STAMP` (a deleted row's placeholder is told by it). */
  readonly stamp: number;
  /** Slots of the attributes a row check reads, with their names. */
  readonly checked: Array<{ name: string; slot: number }>;

  constructor(
    readonly names: readonly string[],
    checkFields: readonly string[] = [],
  ) {
    const all = [...new Set([...names, '__STAMP', ...checkFields])];
    this.names = all;
    // A name with a lone surrogate has no UTF-8 form (Buffer.from would write U+FFFD and match
    // another name): it gets bytes no key can have, and is only found through its escaped form.
    this.keys = all.map((n) => (/\p{Cs}/u.test(n) ? Buffer.from([0xff]) : Buffer.from(n, 'utf8')));
    this.stamp = all.indexOf('__STAMP');
    this.checked = [...new Set(checkFields)].map((name) => ({ name, slot: all.indexOf(name) }));
  }

  slot(name: string): number {
    return this.names.indexOf(name);
  }
}

/**
 * Buffers for page bodies (the transport reads a page straight into one) and for their ranges,
 * handed back when the page has been written, so the export's memory stays flat. Measured: V8 moves
 * the page-sized buffers that outlive a young GC (pages wait for their turn) to the old generation,
 * where a fresh buffer per page piled up as 60 MB of garbage between full GCs.
 */
export class PagePool {
  private readonly bodies: Buffer[] = [];
  private readonly ranges: Int32Array[] = [];
  private readonly mine = new WeakSet<ArrayBufferLike>();

  /** A buffer of `length` bytes for a page body. */
  body(length: number): Buffer {
    const at = this.bodies.findIndex((b) => b.length >= length);
    // A little room, so that the next, slightly larger page fits too.
    const slab = at >= 0 ? this.bodies.splice(at, 1)[0]! : Buffer.allocUnsafeSlow(Math.ceil((length * 1.25) / 65536) * 65536);
    this.mine.add(slab.buffer);
    return slab.subarray(0, length);
  }

  range(length: number): Int32Array {
    const at = this.ranges.findIndex((r) => r.length >= length);
    return at >= 0 ? this.ranges.splice(at, 1)[0]! : new Int32Array(length);
  }

  release(body: Buffer, ranges: Int32Array): void {
    if (this.bodies.length < 8 && this.mine.has(body.buffer)) this.bodies.push(Buffer.from(body.buffer));
    if (this.ranges.length < 8) this.ranges.push(ranges);
  }
}

/** A page read by `scanPage`: the envelope's other values, and where each entity's wanted values are. */
export class ScannedPage {
  constructor(
    public body: Buffer,
    readonly layout: ScanLayout,
    /** The envelope without `__ENTITIES` (`__COUNT`, `__ENTITYSET`, ...), parsed. */
    readonly envelope: Omit<Envelope, '__ENTITIES'>,
    /** Entities in the page. */
    readonly size: number,
    /** Per entity and slot: start and end (exclusive) of the value's bytes; -1 when absent. */
    private readonly ranges: Int32Array,
    /** Per entity: 1 when every attribute name starts with `__`. */
    private readonly metaOnly: Uint8Array,
    private readonly pool?: PagePool,
  ) {}

  /** Done with this page: its buffers go back to the pool (it must not be read again). */
  release(): void {
    if (!this.pool) return;
    this.pool.release(this.body, this.ranges);
    this.body = Buffer.alloc(0);
  }

  /** Where entity `i`'s value for `slot` starts (-1: absent). */
  start(i: number, slot: number): number {
    return this.ranges[(i * this.layout.keys.length + slot) * 2]!;
  }

  end(i: number, slot: number): number {
    return this.ranges[(i * this.layout.keys.length + slot) * 2 + 1]!;
  }

  /** The value as `JSON.parse` of the whole page has it (undefined when absent). */
  value(i: number, slot: number): unknown {
    const start = this.start(i, slot);
    return start < 0 ? undefined : JSON.parse(this.body.toString('utf8', start, this.end(i, slot)));
  }

  /** A row deleted after the entity set was made: {__KEY, __STAMP: 0} and nothing else. */
  isPlaceholder(i: number): boolean {
    return this.metaOnly[i] === 1 && this.value(i, this.layout.stamp) === 0;
  }

  /** The entity's `__KEY` as text (undefined when the layout does not read it, or it is absent). */
  key(i: number): string | undefined {
    const slot = this.layout.slot('__KEY');
    const value = slot < 0 ? undefined : this.value(i, slot);
    return value === undefined || value === null ? undefined : String(value);
  }

  /** The wire values a row check reads (export.ts checks every row with them). */
  raw(i: number): RawRow {
    const row: RawRow = Object.create(null) as RawRow;
    for (const { name, slot } of this.layout.checked) {
      const value = this.value(i, slot);
      if (value !== undefined) row[name] = value;
    }
    return row;
  }
}

/**
 * Scan a page body. Undefined when the scanner does not handle it: the caller then parses the body
 * with `JSON.parse`, which either reads it as before or rejects it as before.
 */
export function scanPage(body: Buffer, layout: ScanLayout, pool?: PagePool): ScannedPage | undefined {
  if (!isUtf8(body)) return undefined;
  const b = body;
  const end = b.length;
  const width = layout.keys.length;
  const keys = layout.keys;
  const envelope: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  let ranges: Int32Array = new Int32Array(0);
  let metaOnly = new Uint8Array(0);
  let size = -1;
  // The slot matched at each attribute position of the previous entity: entities list their
  // attributes in the same order, so a guess checked byte for byte is almost always right.
  const guess = new Int32Array(64).fill(-2);

  let i = ws(b, 0, end);
  if (i >= end || b[i] !== LBRACE) return undefined;
  i = ws(b, i + 1, end);
  if (i < end && b[i] === RBRACE) return undefined;
  for (;;) {
    if (i >= end || b[i] !== QUOTE) return undefined;
    const keyStart = i;
    i = skipString(b, i, end);
    if (i < 0) return undefined;
    const key = JSON.parse(b.toString('utf8', keyStart, i)) as string;
    i = ws(b, i, end);
    if (i >= end || b[i] !== COLON) return undefined;
    i = ws(b, i + 1, end);
    if (key === '__ENTITIES') {
      if (size >= 0 || i >= end || b[i] !== LBRACKET) return undefined;
      // Entities, one object each.
      let capacity = 1024;
      ranges = pool ? pool.range(capacity * width * 2) : new Int32Array(capacity * width * 2);
      capacity = Math.floor(ranges.length / (width * 2));
      metaOnly = new Uint8Array(capacity);
      size = 0;
      i = ws(b, i + 1, end);
      if (i < end && b[i] === RBRACKET) {
        i++;
      } else {
        for (;;) {
          if (i >= end || b[i] !== LBRACE) return undefined;
          if (size === capacity) {
            capacity *= 2;
            const more = new Int32Array(capacity * width * 2);
            more.set(ranges);
            ranges = more;
            const flags = new Uint8Array(capacity);
            flags.set(metaOnly);
            metaOnly = flags;
          }
          const base = size * width * 2;
          ranges.fill(-1, base, base + width * 2);
          let meta = 1;
          i = ws(b, i + 1, end);
          if (i < end && b[i] === RBRACE) {
            i++;
          } else {
            for (let position = 0; ; position++) {
              if (i >= end || b[i] !== QUOTE) return undefined;
              const ks = i + 1;
              let ke = plainKeyEnd(b, ks, end);
              let slot: number;
              if (ke >= 0) {
                if (ke - ks < 2 || b[ks] !== UNDERSCORE || b[ks + 1] !== UNDERSCORE) meta = 0;
                slot = position < 64 ? guess[position]! : -2;
                if (slot < 0 || !sameBytes(b, ks, ke, keys[slot]!)) {
                  slot = findKey(b, ks, ke, keys);
                  if (position < 64) guess[position] = slot;
                }
              } else {
                // A name with escapes (rare): compared as JSON.parse reads it.
                ke = skipString(b, i, end) - 1;
                if (ke < 0) return undefined;
                const name = JSON.parse(b.toString('utf8', i, ke + 1)) as string;
                if (!name.startsWith('__')) meta = 0;
                slot = layout.names.indexOf(name);
              }
              i = ws(b, ke + 1, end);
              if (i >= end || b[i] !== COLON) return undefined;
              i = ws(b, i + 1, end);
              const vs = i;
              i = skipValue(b, i, end);
              if (i < 0) return undefined;
              if (slot >= 0) {
                ranges[base + slot * 2] = vs;
                ranges[base + slot * 2 + 1] = i;
              }
              i = separator(b, i, end, RBRACE);
              if (i < 0) return undefined;
              if (b[i++] === RBRACE) break;
              i = ws(b, i, end);
            }
          }
          metaOnly[size] = meta;
          size++;
          i = separator(b, i, end, RBRACKET);
          if (i < 0) return undefined;
          if (b[i++] === RBRACKET) break;
          i = ws(b, i, end);
        }
      }
    } else {
      const vs = i;
      i = skipValue(b, i, end);
      if (i < 0) return undefined;
      envelope[key] = JSON.parse(b.toString('utf8', vs, i));
    }
    i = separator(b, i, end, RBRACE);
    if (i < 0) return undefined;
    if (b[i++] === RBRACE) break;
    i = ws(b, i, end);
  }
  if (ws(b, i, end) !== end || size < 0) return undefined;
  return new ScannedPage(body, layout, envelope as unknown as Omit<Envelope, '__ENTITIES'>, size, ranges, metaOnly, pool);
}

/** After a member or an element: where the comma or the `close` that follows is (whitespace skipped), or -1. */
function separator(b: Uint8Array, i: number, end: number, close: number): number {
  i = ws(b, i, end);
  return i < end && (b[i] === COMMA || b[i] === close) ? i : -1;
}

/** End (the closing quote) of a name without escapes starting at `i`, or -1 (escaped, or invalid). */
function plainKeyEnd(b: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = b[i]!;
    if (c === QUOTE) return i;
    if (c === BACKSLASH || c < 0x20) return -1;
    i++;
  }
  return -1;
}

/** Are the bytes [start, end) of `b` those of `key`? */
export function sameBytes(b: Uint8Array, start: number, end: number, key: Uint8Array): boolean {
  if (end - start !== key.length) return false;
  for (let k = 0; k < key.length; k++) if (b[start + k] !== key[k]) return false;
  return true;
}

function findKey(b: Uint8Array, start: number, end: number, keys: readonly Uint8Array[]): number {
  for (let k = 0; k < keys.length; k++) if (sameBytes(b, start, end, keys[k]!)) return k;
  return -1;
}
