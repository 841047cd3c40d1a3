/**
 * Value conversion from the 4D wire encoding, shared by every output format (and by sync):
 * dates `D!M!YYYY` → `YYYY-MM-DD` (`0!0!0`/null → null), durations (ms since midnight) →
 * `HH:MM:SS`, relations → the related `__KEY`, pictures/blobs → null (their deferred URI with raw).
 */
import { UnrepresentableValueError } from '../errors/index.js';
import type { Attribute } from '../rest/types.js';

export type Converter = (value: unknown) => unknown;

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** `27!1!2025` → `2025-01-27`; `0!0!0`, '' and null → null; ISO and `!!YYYY-MM-DD!!` forms are accepted. */
export function fourDDateToIso(value: unknown): string | null {
  if (value === null || value === undefined || value === '') return null;
  const text = String(value).replace(/^"+|"+$/g, '');
  const bang = /^(\d{1,2})!(\d{1,2})!(\d{1,4})$/.exec(text);
  if (bang) {
    const day = Number(bang[1]);
    const month = Number(bang[2]);
    let year = Number(bang[3]);
    if (day === 0 && month === 0 && year === 0) return null;
    if (bang[3]!.length <= 2) year += year > 50 ? 1900 : 2000; // two-digit years seen on some fields
    return `${pad(year, 4)}-${pad(month)}-${pad(day)}`;
  }
  const iso = /^!*(\d{4})-(\d{2})-(\d{2})/.exec(text);
  if (iso) return iso[1] === '0000' ? null : `${iso[1]}-${iso[2]}-${iso[3]}`;
  return text;
}

/** `YYYY-MM-DD` → `D!M!YYYY` (the form the server stores). */
export function isoToFourDDate(iso: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
  if (!m) throw new Error(`not a date: ${iso}`);
  return `${Number(m[3])}!${Number(m[2])}!${Number(m[1])}`;
}

/** Milliseconds since midnight → `HH:MM:SS` (hours may exceed 24 for durations). */
export function msToTime(value: unknown): string | null {
  if (value === null || value === undefined || value === '') return null;
  const ms = Number(value);
  if (!Number.isFinite(ms)) return String(value);
  const total = Math.round(ms / 1000);
  const sign = total < 0 ? '-' : '';
  const abs = Math.abs(total);
  return `${sign}${pad(Math.floor(abs / 3600))}:${pad(Math.floor((abs % 3600) / 60))}:${pad(abs % 60)}`;
}

/** `HH:MM[:SS]` → ms since midnight. */
export function timeToMs(text: string): number {
  const m = /^(\d{1,3}):(\d{2})(?::(\d{2}))?$/.exec(text.trim());
  if (!m || Number(m[2]) > 59 || Number(m[3] ?? 0) > 59) throw new Error(`not a time: ${text}`);
  return ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3] ?? 0)) * 1000;
}

function deferred(value: unknown): { uri?: string; __KEY?: string } | undefined {
  if (value && typeof value === 'object') {
    const d = (value as { __deferred?: { uri?: string; __KEY?: string } }).__deferred;
    if (d) return d;
    if ('__KEY' in (value as object)) return { __KEY: String((value as { __KEY: unknown }).__KEY) };
  }
  return undefined;
}

export function relatedKey(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  const d = deferred(value);
  if (d?.__KEY !== undefined) return String(d.__KEY);
  if (typeof value === 'string' || typeof value === 'number') return String(value);
  return null;
}

/** The value as the server sent it (absent: null). */
export const keepValue: Converter = (v) => (v === undefined ? null : v);

/**
 * An integer attribute's value (long, long64, ...): kept as sent. A long64 beyond 2^53 arrives as a
 * bigint holding the server's exact digits (the page readers of ./output/transcode.ts and
 * ../rest/json.ts read integer tokens that long as bigint); a *number* beyond 2^53 can only come
 * from a parse that already rounded it (`9007199254740993` read as 9007199254740992), and stops
 * the export rather than write a different number, silently.
 */
export const integerValue: Converter = (v) => {
  if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) {
    throw new UnrepresentableValueError(
      `the server sent an integer beyond 2^53 (read as ${v}), which cannot be carried exactly; stopped rather than write a rounded number`,
      {
        hint: 'leave the field out with --fields, or export it as text on the server side',
      },
    );
  }
  return v === undefined ? null : v;
};

/**
 * A JSON text as `JSON.stringify` writes it, but a bigint (a long64 beyond 2^53) as its exact
 * digits, a JSON number, where JSON.stringify would throw. Bigints appear only as the values of
 * integer attributes, at the top level of a row (or of a list of keys).
 */
export function jsonText(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value) && value.some((v) => typeof v === 'bigint')) return `[${value.map((v) => (v === undefined ? 'null' : jsonText(v))).join(',')}]`;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (entries.some(([, v]) => typeof v === 'bigint')) return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** No value of its own (pictures and blobs, to-many relations). */
export const noValue: Converter = () => null;

/** `__KEY` (--meta): the key as text (a numeric key beyond 2^53 stops the export, see integerValue). */
export const keyText: Converter = (v) => (v === undefined ? null : String(integerValue(v)));

/** `__TIMESTAMP` (--meta): without the quotes some 4D versions put inside the string. */
export const unquotedTimestamp: Converter = (v) => (typeof v === 'string' ? v.replace(/^"+|"+$/g, '') : (v ?? null));

export const DATE_TYPES = new Set(['date']);
export const TIME_TYPES = new Set(['duration', 'time']);
export const NUMBER_TYPES = new Set(['long', 'long64', 'word', 'byte', 'number', 'float', 'integer', 'real']);
export const INTEGER_TYPES = new Set(['long', 'long64', 'word', 'byte', 'integer']);
export const MEDIA_TYPES = new Set(['image', 'picture', 'blob']);

/** The converter for one attribute. `raw` keeps the server's values (pictures still become their URI). */
export function converterFor(attr: Attribute, raw: boolean): Converter {
  if (attr.kind === 'relatedEntity') {
    return raw ? keepValue : relatedKey;
  }
  if (attr.kind === 'relatedEntities') {
    return raw ? (v) => deferred(v)?.uri ?? null : noValue;
  }
  if (MEDIA_TYPES.has(attr.type)) {
    return raw ? (v) => deferred(v)?.uri ?? null : noValue;
  }
  if (INTEGER_TYPES.has(attr.type)) return integerValue;
  if (raw) return keepValue;
  if (DATE_TYPES.has(attr.type)) return fourDDateToIso;
  if (TIME_TYPES.has(attr.type)) return msToTime;
  return keepValue;
}

/**
 * How a column's converted values become typed spreadsheet cells (xlsx): dates and times by the
 * catalog type (their converted text is `YYYY-MM-DD` / `HH:MM:SS`), everything else by its value.
 * With `raw` the server's encoding is kept, so nothing is read as a date or time.
 */
export function cellKindFor(attr: Attribute | undefined, raw: boolean): 'date' | 'time' | 'auto' {
  if (!attr || raw || attr.kind === 'relatedEntity' || attr.kind === 'relatedEntities') return 'auto';
  if (DATE_TYPES.has(attr.type)) return 'date';
  if (TIME_TYPES.has(attr.type)) return 'time';
  return 'auto';
}
