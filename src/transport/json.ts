/**
 * JSON of a page of entities without losing digits: 4D writes a long64 (Integer 64 bits) as a JSON
 * number with all its digits, and JSON.parse reads `9007199254740993` as 9007199254740992. Node 20's
 * JSON.parse has no access to a number's source text (the reviver's `context.source` comes with
 * Node 21), so a text holding a run of 16 or more digits is read by lossless-json instead, with
 * integers beyond 2^53 as bigint; anything else is JSON.parse as before (the common case, and the fast one).
 */
import { isInteger, isSafeNumber, parse } from 'lossless-json';

const LONG_DIGITS = /\d{16}/;

/** An integer beyond 2^53 as a bigint with its exact digits; every other number as JSON.parse reads it. */
function exactNumber(text: string): number | bigint {
  return isInteger(text) && !isSafeNumber(text) ? BigInt(text) : Number(text);
}

/**
 * The value of a JSON text, integers beyond 2^53 as bigint. A text lossless-json refuses (it rejects
 * repeated names, which JSON.parse lets the last one win) is JSON.parse's: a long integer there is
 * rounded, and the export's integer converter stops at it rather than write it.
 */
export function parseExactJson(text: string): unknown {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text);
  try {
    return parse(text, null, exactNumber);
  } catch {
    return JSON.parse(text);
  }
}

/** The value as JSON.parse would have read it: every bigint of parseExactJson as the nearest number. */
export function roundedJson(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = roundedJson(value[i]);
  } else {
    for (const key of Object.keys(value)) (value as Record<string, unknown>)[key] = roundedJson((value as Record<string, unknown>)[key]);
  }
  return value;
}
