/**
 * Input values for push-field, coerced with the catalog type into the 4D wire encoding, and the
 * canonical comparison that decides "unchanged".
 */
import { BadDataError } from '../errors/index.js';
import type { Attribute } from '../rest/types.js';
import { DATE_TYPES, MEDIA_TYPES, NUMBER_TYPES, TIME_TYPES, fourDDateToIso, isoToFourDDate, msToTime, timeToMs } from '../table/convert.js';

export type ValueType = 'auto' | 'string' | 'number' | 'bool' | 'date' | 'time' | 'json';

/** The value type implied by an attribute's catalog type. */
export function typeOf(attr: Attribute): Exclude<ValueType, 'auto'> {
  if (NUMBER_TYPES.has(attr.type)) return 'number';
  if (attr.type === 'bool') return 'bool';
  if (DATE_TYPES.has(attr.type)) return 'date';
  if (TIME_TYPES.has(attr.type)) return 'time';
  if (attr.type === 'object') return 'json';
  return 'string';
}

function invalid(attr: Attribute, type: string, value: string, why: string): BadDataError {
  const shown = value.length > 60 ? `${value.slice(0, 60)}…` : value;
  return new BadDataError(`invalid value for ${attr.name} (${type}): ${JSON.stringify(shown)} ${why}`);
}

/** Coerce text (or an already-typed NDJSON value) to the value sent to the server. */
export function coerce(attr: Attribute, input: unknown, requested: ValueType = 'auto'): unknown {
  if (attr.kind !== 'storage') throw new BadDataError(`${attr.name} is a relation (${attr.kind}); push-field updates stored fields only`);
  if (MEDIA_TYPES.has(attr.type)) throw new BadDataError(`${attr.name} is a ${attr.type} field; push-field cannot upload media`);
  const type = requested === 'auto' ? typeOf(attr) : requested;
  const expected = typeOf(attr);
  if (requested !== 'auto' && requested !== expected && !(requested === 'string' && expected === 'string')) {
    throw new BadDataError(`--type ${requested} does not match ${attr.name}, which is a ${attr.type} field (${expected})`);
  }
  const text =
    typeof input === 'string' ? input : input === null || input === undefined ? '' : typeof input === 'object' ? JSON.stringify(input) : String(input);
  switch (type) {
    case 'number': {
      const n = typeof input === 'number' ? input : Number(text.trim().replace(/_/g, ''));
      if ((typeof input !== 'number' && text.trim() === '') || !Number.isFinite(n)) throw invalid(attr, attr.type, text, 'is not a number');
      if (['long', 'word', 'byte', 'integer', 'long64'].includes(attr.type) && !Number.isInteger(n))
        throw invalid(attr, attr.type, text, 'is not a whole number');
      // Never a rounded write: a double holds every integer up to 2^53 and no more (as --from's values.ts).
      if (Number.isInteger(n) && !Number.isSafeInteger(n)) throw invalid(attr, attr.type, text, 'is beyond 2^53 and cannot be carried exactly');
      return n;
    }
    case 'bool': {
      if (typeof input === 'boolean') return input;
      const v = text.trim().toLowerCase();
      if (['true', '1', 'yes', 'y', 'ja'].includes(v)) return true;
      if (['false', '0', 'no', 'n', 'nein'].includes(v)) return false;
      throw invalid(attr, attr.type, text, 'is not a boolean (true/false/1/0/yes/no)');
    }
    case 'date': {
      if (text.trim() === '') return '0!0!0'; // an empty value clears the date
      const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text.trim());
      const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
      if (!m || !d || d.getUTCMonth() !== Number(m[2]) - 1 || d.getUTCDate() !== Number(m[3]))
        throw invalid(attr, attr.type, text, 'is not a date (YYYY-MM-DD)');
      return isoToFourDDate(text.trim());
    }
    case 'time': {
      if (typeof input === 'number' && Number.isInteger(input)) return input;
      try {
        return timeToMs(text);
      } catch {
        throw invalid(attr, attr.type, text, 'is not a time (HH:MM or HH:MM:SS)');
      }
    }
    case 'json': {
      if (input !== null && typeof input === 'object') return input;
      try {
        const parsed = JSON.parse(text);
        if (parsed === null || typeof parsed !== 'object') throw new Error('not an object');
        return parsed;
      } catch {
        throw invalid(attr, attr.type, text, 'is not a JSON object');
      }
    }
    default:
      if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(text)) throw invalid(attr, attr.type, text, 'contains control characters');
      return text;
  }
}

function canonical(attr: Attribute, value: unknown): string {
  if (value === undefined || value === null) return typeOf(attr) === 'string' ? '' : 'null';
  switch (typeOf(attr)) {
    case 'date':
      return String(fourDDateToIso(value) ?? 'null');
    case 'number':
      return String(Number(value));
    case 'time':
      // To the second: the text form (HH:MM:SS) has no milliseconds.
      return String(Math.round(Number(value) / 1000));
    case 'json':
      return stableJson(value);
    default:
      return typeof value === 'object' ? stableJson(value) : String(value);
  }
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Do two values (server encoding or coerced) mean the same for this attribute? */
export function sameValue(attr: Attribute, a: unknown, b: unknown): boolean {
  return canonical(attr, a) === canonical(attr, b);
}

/** A value for reports and the audit log: dates ISO, times HH:MM:SS, numbers, booleans, objects as they are. */
export function displayValue(attr: Attribute, value: unknown): unknown {
  if (value === undefined || value === null) return null;
  switch (typeOf(attr)) {
    case 'date':
      return fourDDateToIso(value);
    case 'time':
      return msToTime(value);
    case 'number':
      return typeof value === 'number' ? value : Number(value);
    default:
      return value;
  }
}
