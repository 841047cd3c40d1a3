/**
 * Field, filter and order checks against the catalog, and `--where` → 4D query with `$params`
 * placeholders (values are never spliced into the query text).
 */
import { BadDataError, NotFoundError, UsageError } from '../../errors/index.js';
import { didYouMean } from '../../errors/suggest.js';
import type { Attribute, DataClass } from '../../rest/types.js';
import { DATE_TYPES, NUMBER_TYPES, TIME_TYPES, timeToMs } from '../convert.js';
import { allOf, conditionCheck, type RowCheck } from '../verify.js';

export function attributeNamed(dc: DataClass, name: string, what: string): Attribute {
  const attr = dc.attributes.find((a) => a.name === name);
  if (!attr) {
    const hint = didYouMean(
      name,
      dc.attributes.map((a) => a.name),
    );
    throw new NotFoundError(`unknown ${what} '${name}' in table ${dc.name}${hint ? ` (${hint})` : ''}`, {
      hint: `see the attributes with 'legacy describe ${dc.name}'`,
    });
  }
  return attr;
}

export function splitList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export interface Condition {
  field: string;
  op: string;
  value: string;
}

const OPERATOR = /^\s*(.+?)\s*(!=|<=|>=|=|<|>)\s*(.*)$/s;
const BEGIN = /^\s*(\S+)\s+begin\s+(.*)$/is;

export function parseCondition(text: string): Condition {
  const begin = BEGIN.exec(text);
  if (begin) return { field: begin[1]!, op: 'begin', value: begin[2]! };
  const m = OPERATOR.exec(text);
  if (!m?.[1]) {
    throw new UsageError(`--where '${text}' is not <field><op><value>`, { hint: "operators: = != < > <= >= begin, e.g. --where 'Nummer>=1000'" });
  }
  return { field: m[1], op: m[2]!, value: m[3]! };
}

const INTEGER_TYPES = new Set(['long', 'long64', 'word', 'byte', 'integer']);
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A value typed for the attribute, for `$params`. */
export function typedValue(attr: Attribute, value: string, context: string): unknown {
  if (NUMBER_TYPES.has(attr.type)) {
    // Decimal only (Number() would take 0x10 and 1e3 for an integer), and integers exactly: a key
    // past 2^53 would silently become another record's.
    const text = value.trim();
    const integer = INTEGER_TYPES.has(attr.type);
    const n = Number(text);
    if (!(integer ? /^[+-]?\d+$/ : DECIMAL).test(text) || !Number.isFinite(n)) {
      throw new BadDataError(`${context}: ${attr.name} is a number field (${attr.type}); '${value}' is not a${integer ? ' whole' : ''} number`);
    }
    if (integer && !Number.isSafeInteger(n))
      throw new BadDataError(`${context}: ${attr.name}: ${value} is too large to compare exactly (at most ${Number.MAX_SAFE_INTEGER})`);
    return n;
  }
  if (TIME_TYPES.has(attr.type)) {
    if (/^\d+$/.test(value)) return Number(value);
    try {
      return timeToMs(value);
    } catch {
      throw new BadDataError(`${context}: ${attr.name} is a time field; use HH:MM[:SS], got '${value}'`);
    }
  }
  if (attr.type === 'bool') {
    const v = value.trim().toLowerCase();
    if (['true', '1', 'yes', 'ja'].includes(v)) return true;
    if (['false', '0', 'no', 'nein'].includes(v)) return false;
    throw new BadDataError(`${context}: ${attr.name} is a boolean field; use true or false, got '${value}'`);
  }
  if (DATE_TYPES.has(attr.type)) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value.trim());
    const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
    if (!m || !d || d.getUTCDate() !== Number(m[3])) {
      throw new BadDataError(`${context}: ${attr.name} is a date field; use YYYY-MM-DD, got '${value}'`);
    }
    return value.trim();
  }
  return value;
}

/**
 * How a condition goes to the server. `>` and `<` on a date attribute go as `>=` the next day and
 * `<=` the day before: 4D dates have no time of day, so both forms select the same rows, but some
 * servers refuse strict comparisons on dates (4D error 1112 "Wrong comparison operator") while every
 * server takes `>=` and `<=` (the documented comparators; sync's date windows use them too).
 */
function asSent(attr: Attribute, op: string, value: unknown): { op: string; value: unknown } {
  if (!DATE_TYPES.has(attr.type) || (op !== '>' && op !== '<') || typeof value !== 'string') return { op, value };
  const day = Date.parse(`${value}T00:00:00Z`) + (op === '>' ? 86_400_000 : -86_400_000);
  const text = new Date(day).toISOString().slice(0, 10);
  // Past the years a 4D date literal can spell (0001-9999): keep the comparison as written.
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text) || text.startsWith('0000')) return { op, value };
  return { op: op === '>' ? '>=' : '<=', value: text };
}

export interface BuiltQuery {
  filter?: string;
  params: unknown[];
  /** What every returned row must satisfy, where the client can tell (the --where conditions). */
  check?: RowCheck;
  /** Every condition of the filter is checked on the rows (no raw --filter, a check for each --where). */
  rowsChecked: boolean;
}

/**
 * A raw `--filter` is sent inside double quotes (see protocol/url.ts): a double quote in it would
 * end the quoted run, and the server would read a different query or none.
 */
export function checkRawFilter(rawFilter: string): string {
  const text = rawFilter.trim();
  if (text.includes('"')) {
    throw new UsageError('--filter cannot contain a double quote ("): 4D servers would read it as the end of the query', {
      hint: `write text values in single quotes, e.g. --filter "Ort = 'Dresden'", or use --where Ort=Dresden`,
    });
  }
  return text;
}

/** Combine `--filter` (raw) and `--where` conditions (placeholders) into one 4D query. */
export function buildQuery(dc: DataClass, where: string[], rawFilter?: string): BuiltQuery {
  const parts: string[] = [];
  const params: unknown[] = [];
  const checks: RowCheck[] = [];
  if (rawFilter?.trim()) {
    const text = checkRawFilter(rawFilter);
    parts.push(where.length ? `(${text})` : text);
  }
  for (const text of where) {
    const cond = parseCondition(text);
    const attr = attributeNamed(dc, cond.field, 'field in --where');
    if (attr.kind !== 'storage') throw new UsageError(`--where: ${attr.name} is a relation; filter on a stored field`);
    if (cond.value === '' && (cond.op === '=' || cond.op === '!=')) {
      parts.push(`${attr.name} ${cond.op === '=' ? '=' : '!='} null`);
      const check = conditionCheck(attr, cond.op, null, text);
      if (check) checks.push(check);
      continue;
    }
    const value = typedValue(attr, cond.value, `--where '${text}'`);
    const sent = asSent(attr, cond.op, value);
    params.push(sent.value);
    parts.push(`${attr.name} ${sent.op} :${params.length}`);
    const check = conditionCheck(attr, cond.op, value, text);
    if (check) checks.push(check);
  }
  return {
    filter: parts.length ? parts.join(' AND ') : undefined,
    params,
    check: allOf(checks),
    rowsChecked: !rawFilter?.trim() && checks.length === where.length,
  };
}

/** Validate `--order-by "a desc, b"` and add the key as a tie-breaker so paging is stable. */
export function buildOrderBy(dc: DataClass, spec: string | undefined): string | undefined {
  const keyName = dc.key[0]?.name;
  const items: string[] = [];
  const seen = new Set<string>();
  if (spec) {
    for (const part of splitList(spec)) {
      const m = /^(\S+)(?:\s+(asc|desc))?$/i.exec(part);
      if (!m) throw new UsageError(`--order-by '${part}' is not "<field> [asc|desc]"`);
      const attr = attributeNamed(dc, m[1]!, 'field in --order-by');
      items.push(`${attr.name} ${(m[2] ?? 'asc').toLowerCase()}`);
      seen.add(attr.name);
    }
  }
  if (keyName && !seen.has(keyName)) items.push(`${keyName} asc`);
  return items.length ? items.join(',') : undefined;
}
