/**
 * Row checks: does a row the server sent satisfy the conditions we asked for?
 *
 * A server that drops or misreads `$filter` answers 200 with rows the filter excludes. Where the
 * client can evaluate a condition exactly, every row is checked before it is written, so such an
 * answer stops the run instead of becoming a wrong file. A check answers true (satisfied), false
 * (certainly not satisfied) or undefined (cannot tell: text outside plain ASCII, where 4D's
 * case/diacritic rules and collation decide; empty dates; `<`/`>` on text). Only a certain false
 * counts, so a check never rejects a row the server was right to send.
 */
import type { Attribute } from '../rest/types.js';
import { DATE_TYPES, NUMBER_TYPES, TIME_TYPES, fourDDateToIso } from './convert.js';

/** An entity's raw (wire) values by attribute name. */
export type RawRow = Record<string, unknown>;

export type RowCheck = {
  /** true / false / undefined (cannot tell). */
  test(row: RawRow): boolean | undefined;
  /** The condition as the user wrote it, for messages. */
  text: string;
  /** Attributes the check reads (requested from the server even when not exported). */
  fields: string[];
};

const INTEGER_TYPES = new Set(['long', 'long64', 'word', 'byte', 'integer']);
const PLAIN = /^[\x20-\x7e]*$/;

function compare(op: string, a: number | string, b: number | string): boolean {
  switch (op) {
    case '=':
      return a === b;
    case '!=':
      return a !== b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    default:
      throw new Error(`no such operator ${op}`);
  }
}

/** 4D text equality for plain ASCII: case-insensitive, `@` matches any run of characters. */
function textEquals(value: string, pattern: string): boolean | undefined {
  if (!PLAIN.test(value) || !PLAIN.test(pattern)) return undefined;
  const v = value.toLowerCase();
  const p = pattern.toLowerCase();
  if (!p.includes('@')) return v === p;
  const re = new RegExp(
    `^${p
      .split('@')
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('[\\s\\S]*')}$`,
  );
  return re.test(v);
}

function not(result: boolean | undefined): boolean | undefined {
  return result === undefined ? undefined : !result;
}

/**
 * A check for `<attr> <op> <value>` with the value typed as it was sent in `$params` (null: the
 * `= null` / `!= null` forms). Returns undefined when the condition cannot be checked at all.
 */
export function conditionCheck(attr: Attribute, op: string, value: unknown, text: string): RowCheck | undefined {
  const name = attr.name;
  const make = (test: (v: unknown) => boolean | undefined): RowCheck => ({
    test: (row) => test(Object.hasOwn(row, name) ? row[name] : undefined),
    text,
    fields: [name],
  });
  if (value === null) {
    // Blank values (an empty date 0!0!0, an empty text) may or may not count as null to 4D: cannot tell.
    const blank = (v: unknown) => v === '' || v === '0!0!0';
    if (op === '=') return make((v) => (blank(v) ? undefined : v === null || v === undefined));
    if (op === '!=') return make((v) => (blank(v) ? undefined : v !== null && v !== undefined));
    return undefined;
  }
  if (NUMBER_TYPES.has(attr.type) && typeof value === 'number') {
    // Reals: 4D may compare with a tolerance of its own; values that close cannot be judged here.
    const epsilon = INTEGER_TYPES.has(attr.type) ? 0 : 1e-6;
    return make((v) => {
      if (typeof v !== 'number') return undefined;
      if (epsilon > 0 && Math.abs(v - value) <= epsilon * Math.max(1, Math.abs(v), Math.abs(value))) return undefined;
      return compare(op, v, value);
    });
  }
  if (TIME_TYPES.has(attr.type) && typeof value === 'number') {
    return make((v) => (typeof v === 'number' ? compare(op, v, value) : undefined));
  }
  if (attr.type === 'bool' && typeof value === 'boolean') {
    if (op !== '=' && op !== '!=') return undefined;
    return make((v) => (typeof v === 'boolean' ? compare(op, v ? 1 : 0, value ? 1 : 0) : undefined));
  }
  if (DATE_TYPES.has(attr.type) && typeof value === 'string') {
    return make((v) => {
      const iso = fourDDateToIso(v);
      // An empty date's order against real dates is the server's business: cannot tell.
      if (iso === null || !/^\d{4}-\d{2}-\d{2}$/.test(iso)) return undefined;
      return compare(op, iso, value);
    });
  }
  if (typeof value === 'string' && (attr.type === 'string' || attr.type === 'text' || attr.type === 'uuid')) {
    if (op === '=') return make((v) => (typeof v === 'string' ? textEquals(v, value) : undefined));
    if (op === '!=') return make((v) => (typeof v === 'string' ? not(textEquals(v, value)) : undefined));
    if (op === 'begin') {
      if (value.includes('@')) return undefined;
      return make((v) => (typeof v === 'string' ? textEquals(v, `${value}@`) : undefined));
    }
  }
  return undefined;
}

/** Every check must hold (a false anywhere is false; otherwise undefined if any is undefined). */
export function allOf(checks: RowCheck[]): RowCheck | undefined {
  if (checks.length === 0) return undefined;
  if (checks.length === 1) return checks[0];
  return {
    text: checks.map((c) => c.text).join(' AND '),
    fields: [...new Set(checks.flatMap((c) => c.fields))],
    test(row) {
      let unknown = false;
      for (const c of checks) {
        const r = c.test(row);
        if (r === false) return false;
        if (r === undefined) unknown = true;
      }
      return unknown ? undefined : true;
    },
  };
}

/** At least one check must hold (true anywhere is true; false only when every one is false). */
export function anyOf(checks: RowCheck[], text: string): RowCheck | undefined {
  if (checks.length === 0) return undefined;
  return {
    text,
    fields: [...new Set(checks.flatMap((c) => c.fields))],
    test(row) {
      let unknown = false;
      for (const c of checks) {
        const r = c.test(row);
        if (r === true) return true;
        if (r === undefined) unknown = true;
      }
      return unknown ? undefined : false;
    },
  };
}

/** `Ort='Berlin'` for a message, bounded. */
export function describeValues(check: RowCheck, row: RawRow): string {
  return check.fields
    .map((f) => {
      const shown = JSON.stringify((Object.hasOwn(row, f) ? row[f] : undefined) ?? null);
      return `${f}=${shown.length > 60 ? `${shown.slice(0, 60)}…` : shown}`;
    })
    .join(', ');
}
