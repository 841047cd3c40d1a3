/**
 * Converting client-supplied values (update bodies, control API, fixtures) into stored wire values.
 */
import type { AttributeDef, WireValue } from './model.js';
import { parseDateInput } from './wire.js';

export type Coerced = { ok: true; value: WireValue } | { ok: false; reason: string };

const NUMERIC = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;
const HMS = /^(\d{1,3}):(\d{2})(?::(\d{2}))?$/;

function toNumber(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  return undefined;
}

const INTEGER = /^\s*[+-]?\d+\s*$/;
const LONG64_MIN = -(2n ** 63n);
const LONG64_MAX = 2n ** 63n - 1n;

/**
 * A long64 (Integer 64 bits, -2^63 … 2^63-1): a number within 2^53, else a bigint, so that
 * `9007199254740993` stays itself. Digits beyond 2^53 come as text or a bigint (a JSON number
 * that long has already been rounded by JSON.parse).
 */
function toLong64(v: unknown): number | bigint | undefined {
  let big: bigint;
  if (typeof v === 'bigint') big = v;
  else if (typeof v === 'string' && INTEGER.test(v)) big = BigInt(v.trim());
  else {
    const n = toNumber(v);
    return n === undefined ? undefined : Math.trunc(n);
  }
  if (big < LONG64_MIN || big > LONG64_MAX) return undefined;
  return big >= -(2n ** 53n) && big <= 2n ** 53n ? Number(big) : big;
}

function keyOf(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (o.__KEY !== undefined) return keyOf(o.__KEY);
    if (o.__deferred && typeof o.__deferred === 'object') return keyOf((o.__deferred as Record<string, unknown>).__KEY);
  }
  return undefined;
}

const fail = (attr: AttributeDef, v: unknown): Coerced => ({
  ok: false,
  reason: `The value ${JSON.stringify(v) ?? String(v)} is not valid for the "${attr.name}" attribute (type ${attr.kind === 'storage' ? attr.type : attr.kind})`,
});

/**
 * Coerces `v` for `attr`. Lenient where 4D converts (numbers as strings, `"true"`, ISO dates), strict where the
 * value cannot be meant for the type. relatedEntities cannot be written (callers decide what to do).
 */
export function coerceInput(attr: AttributeDef, v: unknown): Coerced {
  if (v === null) return { ok: true, value: null };
  if (attr.kind === 'relatedEntity') {
    const k = keyOf(v);
    return k === undefined ? fail(attr, v) : { ok: true, value: k };
  }
  if (attr.kind === 'relatedEntities') return fail(attr, v);
  switch (attr.type) {
    case 'string':
      if (typeof v === 'string') return { ok: true, value: v };
      if (typeof v === 'number' || typeof v === 'boolean') return { ok: true, value: String(v) };
      return fail(attr, v);
    case 'long64': {
      const n = toLong64(v);
      return n === undefined ? fail(attr, v) : { ok: true, value: n };
    }
    case 'long':
    case 'word': {
      const n = toNumber(v);
      return n === undefined ? fail(attr, v) : { ok: true, value: Math.trunc(n) };
    }
    case 'number': {
      const n = toNumber(v);
      return n === undefined ? fail(attr, v) : { ok: true, value: n };
    }
    case 'duration': {
      const n = toNumber(v);
      if (n !== undefined) return { ok: true, value: Math.trunc(n) };
      const m = typeof v === 'string' ? HMS.exec(v) : null;
      if (m) return { ok: true, value: ((+m[1]! * 60 + +m[2]!) * 60 + +(m[3] ?? 0)) * 1000 };
      return fail(attr, v);
    }
    case 'bool':
      if (typeof v === 'boolean') return { ok: true, value: v };
      if (v === 'true' || v === 1) return { ok: true, value: true };
      if (v === 'false' || v === 0) return { ok: true, value: false };
      return fail(attr, v);
    case 'date': {
      const d = typeof v === 'string' ? parseDateInput(v) : undefined;
      return d === undefined ? fail(attr, v) : { ok: true, value: d };
    }
    case 'object':
      if (typeof v === 'object') return { ok: true, value: structuredClone(v) as WireValue };
      return fail(attr, v);
    case 'uuid': {
      const s = typeof v === 'string' ? v.replace(/-/g, '').toUpperCase() : '';
      return /^[0-9A-F]{32}$/.test(s) ? { ok: true, value: s } : fail(attr, v);
    }
    case 'image':
    case 'blob':
      // No $upload in the emulator: any non-null value (true, {"ID":...}, a deferred object) means "has data".
      return v === false ? { ok: true, value: null } : { ok: true, value: true };
  }
}

/** Deep equality of stored values (to skip saves that change nothing). */
export function sameValue(a: WireValue, b: WireValue): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
