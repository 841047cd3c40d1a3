/**
 * `$filter` and `$orderby`: the subset of 4D's ORDA query language the emulator understands.
 *
 * Grammar (keywords case-insensitive):
 *   expr       := andExpr (('or' | '|' | '||') andExpr)*
 *   andExpr    := unary (('and' | '&' | '&&' | 'except' | '^') unary)*      -- EXCEPT = AND NOT
 *   unary      := ('not' | '!') unary | primary
 *   primary    := '(' expr ')' | 'quoted condition' | path comparator value
 *   comparator := = == === != !== # < <= > >= % begin in | IS (= ===) | IS NOT (= !==)
 *   value      := 'str' | "str" | number | true | false | null | bareword | :n | [v, ...]
 * AND binds tighter than OR (the references do not say; this is the usual reading).
 *
 * A quoted string where a condition is expected, not followed by a comparator, is parsed as a condition:
 * the real server accepted `'Nummer = 803721' or 'Nummer = 731671'` and `'Familie_ = "7464..."'`.
 * OData operators (`eq`, `gt`) are not comparators here: the real server answered them with 500.
 *
 * Semantics:
 * - strings: case- and diacritic-insensitive; `@` is the wildcard for = == != # (also inside placeholder
 *   values, as in 4D: `API/DataClassClass.md`, query()); `*` is an ordinary character; === / IS and !== / IS NOT
 *   take `@` literally; `%` matches a whole word; begin = prefix.
 * - numbers/durations/bools/dates compare by the attribute's type; placeholder strings are converted.
 * - dates: literals 'YYYY-MM-DD' (also ISO date-times, truncated to the UTC day, and D!M!YYYY); an empty date
 *   (0!0!0) only matches comparisons against the empty date; strict < and > on a date attribute are evaluated
 *   unless strictDateCompare='reject' (500/1162; an older reading of the legacy server's 500s, which were the
 *   attribute `created_date+` of a `+`-encoded space, not a date rule).
 * - a placeholder without a value fails with 1279, unless missingPlaceholder='match-all' (the comparison then
 *   matches every row: a lost entity set recreated from `$savedfilter` without `$params`, savedFilterWithoutParams).
 * - null never matches a comparison except `= null` (and `!= null` matches every non-null value).
 * - paths: `attr`, `relatedEntity.attr...`, `objectAttr.prop`, `objectAttr.coll[].prop`, and
 *   `relatedEntities.attr` (true when any related entity matches).
 * - `__KEY`, `__STAMP`, `__TIMESTAMP` are not attributes (filtering on __TIMESTAMP gave 500 on the real server).
 *   `__GlobalStamp` of a tracked table and the `__DeletedRecords` fields are ordinary attributes (tracking.ts).
 */
import type { DataStore } from './datastore.js';
import { E } from './errors.js';
import type { AttributeDef, WireValue } from './model.js';
import { NUMERIC_TYPES } from './model.js';
import type { Selection, Table } from './table.js';
import { ArraySelection } from './table.js';
import { dateOrdinal, parseDateInput } from './wire.js';

type Literal = string | number | boolean | null;

type Tok =
  | { t: 'word'; v: string }
  | { t: 'num'; v: number; raw: string }
  | { t: 'str'; v: string }
  | { t: 'ph'; n: number }
  | { t: 'op'; v: string }
  | { t: 'lp' }
  | { t: 'rp' }
  | { t: 'arr'; items: Literal[] };

type CmpOp = '=' | '==' | '===' | '!=' | '!==' | '#' | '<' | '<=' | '>' | '>=' | '%' | 'begin' | 'in';

type ValueNode = { t: 'lit'; v: Literal | Literal[] } | { t: 'ph'; n: number };

type Node = { t: 'and' | 'or' | 'except'; l: Node; r: Node } | { t: 'not'; e: Node } | { t: 'cmp'; path: string; op: CmpOp; value: ValueNode };

export type Predicate = (row: number) => boolean;

export interface QueryContext {
  store: DataStore;
  /** `$params` (a JSON array), or null when absent. */
  params: unknown[] | null;
  strictDateCompare: 'reject' | 'allow';
  /** A placeholder with no value: 'error' (1279) or 'match-all' (the comparison holds for every row). Default 'error'. */
  missingPlaceholder?: 'error' | 'match-all';
}

// ---- lexer -----------------------------------------------------------------------------------------------------

const OPS = ['===', '!==', '==', '!=', '<=', '>=', '&&', '||', '=', '<', '>', '#', '%', '&', '|', '^', '!'];
const COMPARATOR_OPS = new Set(['=', '==', '===', '!=', '!==', '#', '<', '<=', '>', '>=', '%']);
const WORD_STOP = new Set([...'()\'"=!<>#%&|^,']);
const NUMBER = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/;
const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

function literalOf(raw: string): Literal {
  const s = raw.trim();
  if ((s.startsWith('"') && s.endsWith('"')) || (s.startsWith("'") && s.endsWith("'"))) return s.slice(1, -1);
  if (NUMBER.test(s)) return Number(s);
  if (s === 'true') return true;
  if (s === 'false') return false;
  if (s === 'null') return null;
  return s;
}

function lexArray(src: string, start: number): { tok: Tok; end: number } {
  const items: string[] = [];
  let cur = '';
  let quote: string | null = null;
  for (let i = start + 1; i < src.length; i++) {
    const c = src[i]!;
    if (quote) {
      if (c === quote) quote = null;
      cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      cur += c;
    } else if (c === ',' || c === ']') {
      if (cur.trim() !== '' || c === ',') items.push(cur);
      cur = '';
      if (c === ']') return { tok: { t: 'arr', items: items.map(literalOf) }, end: i + 1 };
    } else cur += c;
  }
  throw E.queryInvalid('"[" without a matching "]"');
}

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (isSpace(c)) {
      i++;
    } else if (c === '(') {
      out.push({ t: 'lp' });
      i++;
    } else if (c === ')') {
      out.push({ t: 'rp' });
      i++;
    } else if (c === '"' || c === "'") {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw E.queryInvalid(`unterminated string starting at position ${i}`);
      out.push({ t: 'str', v: src.slice(i + 1, end) });
      i = end + 1;
    } else if (c === ':' && /\d/.test(src[i + 1] ?? '')) {
      let j = i + 1;
      while (j < src.length && /\d/.test(src[j]!)) j++;
      out.push({ t: 'ph', n: Number(src.slice(i + 1, j)) });
      i = j;
    } else if (c === '[') {
      const { tok, end } = lexArray(src, i);
      out.push(tok);
      i = end;
    } else {
      const op = OPS.find((o) => src.startsWith(o, i));
      if (op) {
        out.push({ t: 'op', v: op });
        i += op.length;
        continue;
      }
      let j = i;
      while (j < src.length && !WORD_STOP.has(src[j]!) && !isSpace(src[j]!)) j++;
      if (j === i) throw E.queryInvalid(`unexpected "${c}" at position ${i}`);
      const w = src.slice(i, j);
      out.push(NUMBER.test(w) ? { t: 'num', v: Number(w), raw: w } : { t: 'word', v: w });
      i = j;
    }
  }
  return out;
}

// ---- parser ----------------------------------------------------------------------------------------------------

const OR_WORDS = new Set(['or']);
const COMPARATOR_WORDS = new Set(['begin', 'in', 'is']);
const AND_WORDS = new Set(['and']);

function describe(t: Tok | undefined): string {
  if (!t) return 'end of filter';
  switch (t.t) {
    case 'word':
    case 'op':
      return `"${t.v}"`;
    case 'num':
      return `"${t.raw}"`;
    case 'str':
      return `'${t.v}'`;
    case 'ph':
      return `:${t.n}`;
    case 'lp':
      return '"("';
    case 'rp':
      return '")"';
    case 'arr':
      return 'a list';
  }
}

class Parser {
  private pos = 0;
  constructor(private readonly toks: Tok[]) {}

  static parse(src: string, depth = 0): Node {
    if (src.trim() === '') throw E.queryInvalid('the filter is empty');
    if (depth > 20) throw E.queryInvalid('too deeply nested');
    const p = new Parser(lex(src));
    const node = p.expr(depth);
    if (p.pos < p.toks.length) throw E.queryInvalid(`unexpected ${describe(p.toks[p.pos])}`);
    return node;
  }

  private peek(k = 0): Tok | undefined {
    return this.toks[this.pos + k];
  }

  private isWord(t: Tok | undefined, words: Set<string>): boolean {
    return t?.t === 'word' && words.has(t.v.toLowerCase());
  }

  private isComparator(t: Tok | undefined): boolean {
    if (!t) return false;
    if (t.t === 'op') return COMPARATOR_OPS.has(t.v);
    return t.t === 'word' && COMPARATOR_WORDS.has(t.v.toLowerCase());
  }

  private expr(depth: number): Node {
    let l = this.and(depth);
    for (;;) {
      const t = this.peek();
      if (this.isWord(t, OR_WORDS) || (t?.t === 'op' && (t.v === '|' || t.v === '||'))) {
        this.pos++;
        l = { t: 'or', l, r: this.and(depth) };
      } else return l;
    }
  }

  private and(depth: number): Node {
    let l = this.unary(depth);
    for (;;) {
      const t = this.peek();
      if (this.isWord(t, AND_WORDS) || (t?.t === 'op' && (t.v === '&' || t.v === '&&'))) {
        this.pos++;
        l = { t: 'and', l, r: this.unary(depth) };
      } else if ((t?.t === 'word' && t.v.toLowerCase() === 'except') || (t?.t === 'op' && t.v === '^')) {
        this.pos++;
        l = { t: 'except', l, r: this.unary(depth) };
      } else return l;
    }
  }

  private unary(depth: number): Node {
    const t = this.peek();
    const isNot = (t?.t === 'word' && t.v.toLowerCase() === 'not' && !this.isComparator(this.peek(1))) || (t?.t === 'op' && t.v === '!');
    if (isNot) {
      this.pos++;
      return { t: 'not', e: this.unary(depth) };
    }
    return this.primary(depth);
  }

  private primary(depth: number): Node {
    const t = this.peek();
    if (t?.t === 'lp') {
      this.pos++;
      const e = this.expr(depth);
      if (this.peek()?.t !== 'rp') throw E.queryInvalid(`expected ")" but found ${describe(this.peek())}`);
      this.pos++;
      return e;
    }
    if (t?.t === 'str' && !this.isComparator(this.peek(1))) {
      // the quoted-condition form: 'Nummer = 803721' or 'Nummer = 731671'
      this.pos++;
      return Parser.parse(t.v, depth + 1);
    }
    if (t?.t !== 'word' && t?.t !== 'str') throw E.queryInvalid(`expected an attribute but found ${describe(t)}`);
    this.pos++;
    const c = this.peek();
    if (!this.isComparator(c)) throw E.queryInvalid(`${describe(c)} is not a valid comparison operator after "${t.v}"`);
    this.pos++;
    let op = (c!.t === 'word' ? c!.v.toLowerCase() : (c as { v: string }).v) as CmpOp | 'is';
    if (op === 'is') {
      // IS = ===, IS NOT = !== (DataClassClass.md, query())
      const n = this.peek();
      if (n?.t === 'word' && n.v.toLowerCase() === 'not') {
        this.pos++;
        op = '!==';
      } else op = '===';
    }
    return { t: 'cmp', path: t.v, op, value: this.value() };
  }

  private value(): ValueNode {
    const t = this.peek();
    this.pos++;
    switch (t?.t) {
      case 'str':
        return { t: 'lit', v: t.v };
      case 'num':
        return { t: 'lit', v: t.v };
      case 'ph':
        return { t: 'ph', n: t.n };
      case 'arr':
        return { t: 'lit', v: t.items };
      case 'word':
        return { t: 'lit', v: t.v === 'true' ? true : t.v === 'false' ? false : t.v === 'null' ? null : t.v };
      default:
        throw E.queryInvalid(`expected a value but found ${describe(t)}`);
    }
  }
}

// ---- path resolution -------------------------------------------------------------------------------------------

type Resolved =
  /** a storage attribute (or a relation's key when the path ends on a relatedEntity) */
  | { kind: 'value'; attr: AttributeDef; get: (row: number) => WireValue; table: Table }
  /** a property path inside an object attribute */
  | { kind: 'object'; get: (row: number) => WireValue; props: string[] }
  /** `relatedEntities.rest`: true when any related entity matches */
  | { kind: 'many'; parent: Table; target: Table; backAttr: number; rest: string; keyOf: (row: number) => string | null };

function resolvePath(base: Table, path: string, store: DataStore): Resolved {
  const segs = path.split('.');
  let cur = base;
  let map: (row: number) => number = (r) => r;
  for (let k = 0; k < segs.length; k++) {
    const seg = segs[k]!;
    const a = cur.attr(seg);
    if (a < 0) throw E.attributeNotFound(seg, cur.name);
    const def = cur.attrs[a]!;
    const last = k === segs.length - 1;
    const table = cur;
    const m = map;
    const get = (row: number): WireValue => {
      const r = m(row);
      return r < 0 ? null : table.get(r, a);
    };
    if (def.kind === 'storage') {
      if (def.type === 'object' && !last) return { kind: 'object', get, props: segs.slice(k + 1) };
      if (!last) throw E.attributeNotFound(segs[k + 1]!, `${cur.name}.${seg}`);
      return { kind: 'value', attr: def, get, table: cur };
    }
    const target = store.table(def.related!)!;
    if (def.kind === 'relatedEntity') {
      if (last) return { kind: 'value', attr: def, get, table: cur };
      map = (row) => {
        const key = get(row);
        return key === null ? -1 : target.indexOfKey(String(key));
      };
      cur = target;
      continue;
    }
    // relatedEntities
    if (last) throw E.queryInvalid(`"${seg}" is a relatedEntities attribute; compare one of its attributes`);
    return {
      kind: 'many',
      parent: cur,
      target,
      backAttr: target.attr(def.path!),
      rest: segs.slice(k + 1).join('.'),
      keyOf: (row) => {
        const r = m(row);
        return r < 0 ? null : table.keyOf(r);
      },
    };
  }
  throw E.queryInvalid(`bad attribute path "${path}"`);
}

// ---- comparisons -----------------------------------------------------------------------------------------------

const NEGATED = new Set<CmpOp>(['!=', '!==', '#']);
const EQUALITY = new Set<CmpOp>(['=', '==', '===', '!=', '!==', '#', 'in']);

const NON_ASCII = /[^\x00-\x7f]/;
const DIACRITICS = /[\u0300-\u036f]/g;
/** Case- and diacritic-insensitive form (as 4D compares text). */
function fold(s: string): string {
  const l = s.toLowerCase();
  return NON_ASCII.test(l) ? l.normalize('NFD').replace(DIACRITICS, '') : l;
}

function wildcardMatcher(pattern: string): (s: string) => boolean {
  const parts = fold(pattern).split('@');
  if (parts.length === 1) {
    const p = parts[0]!;
    return (s) => s === p;
  }
  const first = parts[0]!;
  const lastPart = parts[parts.length - 1]!;
  const middle = parts.slice(1, -1);
  return (s) => {
    if (s.length < first.length + lastPart.length || !s.startsWith(first) || !s.endsWith(lastPart)) return false;
    let at = first.length;
    const end = s.length - lastPart.length;
    for (const m of middle) {
      const found = s.indexOf(m, at);
      if (found < 0 || found + m.length > end) return false;
      at = found + m.length;
    }
    return true;
  };
}

/** A test on a folded string for op against a literal string (or list for IN). */
function stringTest(op: CmpOp, lit: Literal | Literal[]): (s: string) => boolean {
  if (op === 'in') {
    if (!Array.isArray(lit)) throw E.badQueryValue('IN needs a list such as ["a","b"]');
    const set = new Set(lit.map((x) => fold(String(x))));
    return (s) => set.has(s);
  }
  if (Array.isArray(lit)) throw E.badQueryValue(`a list cannot be compared with ${op}`);
  const v = String(lit);
  const fv = fold(v);
  switch (op) {
    case '=':
    case '==':
      return wildcardMatcher(v);
    case '!=':
    case '#': {
      const m = wildcardMatcher(v);
      return (s) => !m(s);
    }
    case '===':
      return (s) => s === fv;
    case '!==':
      return (s) => s !== fv;
    case '<':
      return (s) => s < fv;
    case '<=':
      return (s) => s <= fv;
    case '>':
      return (s) => s > fv;
    case '>=':
      return (s) => s >= fv;
    case 'begin':
      return (s) => s.startsWith(fv);
    case '%':
      return (s) => s.split(/[^\p{L}\p{N}]+/u).includes(fv);
  }
}

function numberTest(op: CmpOp, n: number): (x: number) => boolean {
  switch (op) {
    case '=':
    case '==':
    case '===':
      return (x) => x === n;
    case '!=':
    case '!==':
    case '#':
      return (x) => x !== n;
    case '<':
      return (x) => x < n;
    case '<=':
      return (x) => x <= n;
    case '>':
      return (x) => x > n;
    case '>=':
      return (x) => x >= n;
    default:
      throw E.queryInvalid(`the "${op}" comparator cannot be used with a number`);
  }
}

function toNumberLit(v: Literal, attr: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && NUMBER.test(v.trim())) return Number(v);
  throw E.badQueryValue(`${JSON.stringify(v)} is not a number (attribute "${attr}")`);
}

function toBoolLit(v: Literal, attr: string): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 1 || v === 0) return v === 1;
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  throw E.badQueryValue(`${JSON.stringify(v)} is not a boolean (attribute "${attr}")`);
}

function toDateLit(v: Literal, attr: string): number {
  const wire = typeof v === 'string' ? parseDateInput(v) : undefined;
  if (wire === undefined) throw E.badQueryValue(`${JSON.stringify(v)} is not a date; use 'YYYY-MM-DD' (attribute "${attr}")`);
  return dateOrdinal(wire)!;
}

/** Applies `test` to a value list for IN, or to the single value. */
function listOrOne<T>(op: CmpOp, lit: Literal | Literal[], conv: (v: Literal) => T, test: (op: CmpOp, v: T) => (x: T) => boolean): (x: T) => boolean {
  if (op === 'in') {
    if (!Array.isArray(lit)) throw E.badQueryValue('IN needs a list such as [1,2]');
    const set = new Set(lit.map(conv));
    return (x) => set.has(x);
  }
  if (Array.isArray(lit)) throw E.badQueryValue(`a list cannot be compared with ${op}`);
  return test(op, conv(lit));
}

function compileValue(r: Extract<Resolved, { kind: 'value' }>, op: CmpOp, lit: Literal | Literal[], ctx: QueryContext): Predicate {
  const { attr, get } = r;
  if (attr.kind === 'relatedEntity') {
    if (!EQUALITY.has(op)) throw E.queryInvalid(`the "${op}" comparator cannot be used with the relation "${attr.name}"`);
    const test = stringTest(op === '=' || op === '==' ? '===' : op === '#' || op === '!=' ? '!==' : op, lit);
    return (row) => {
      const v = get(row);
      return v !== null && test(fold(String(v)));
    };
  }
  switch (attr.type) {
    case 'string':
    case 'uuid': {
      const test = stringTest(op, lit);
      return (row) => {
        const v = get(row);
        return v !== null && test(fold(String(v)));
      };
    }
    case 'bool': {
      if (!EQUALITY.has(op)) throw E.queryInvalid(`the "${op}" comparator cannot be used with the boolean "${attr.name}"`);
      const test = listOrOne(
        op,
        lit,
        (v) => toBoolLit(v, attr.name),
        (o, b) => (NEGATED.has(o) ? (x: boolean) => x !== b : (x: boolean) => x === b),
      );
      return (row) => {
        const v = get(row);
        return v !== null && test(v as boolean);
      };
    }
    case 'date': {
      if ((op === '<' || op === '>') && ctx.strictDateCompare === 'reject') {
        throw E.queryInvalid(`the "${op}" comparator is not supported on the date attribute "${attr.name}"; use <= or >=`);
      }
      if (op === 'begin' || op === '%') throw E.queryInvalid(`the "${op}" comparator cannot be used with the date "${attr.name}"`);
      const litOrds = op === 'in' ? null : toDateLit(lit as Literal, attr.name);
      const test = listOrOne(op, lit, (v) => toDateLit(v, attr.name), numberTest);
      return (row) => {
        const ord = dateOrdinal(get(row));
        if (ord === null) return false;
        if (ord === 0 && litOrds !== 0) return false; // the empty date only matches the empty date
        return test(ord);
      };
    }
    case 'image':
    case 'blob':
    case 'object':
      throw E.queryInvalid(`the ${attr.type} attribute "${attr.name}" can only be compared with null`);
    default: {
      if (!NUMERIC_TYPES.has(attr.type)) throw E.queryInvalid(`cannot compare "${attr.name}"`);
      const test = listOrOne(op, lit, (v) => toNumberLit(v, attr.name), numberTest);
      return (row) => {
        const v = get(row);
        return typeof v === 'number' && test(v);
      };
    }
  }
}

/** Values at an object property path; `coll[]` fans out over collection elements. */
function objectValues(root: WireValue, props: string[]): unknown[] {
  let cur: unknown[] = [root];
  for (const p of props) {
    const fan = p.endsWith('[]');
    const name = fan ? p.slice(0, -2) : p;
    const next: unknown[] = [];
    for (const c of cur) {
      if (c === null || typeof c !== 'object') continue;
      const v = (c as Record<string, unknown>)[name];
      if (fan && Array.isArray(v)) next.push(...v);
      else if (v !== undefined) next.push(v);
    }
    cur = next;
  }
  return cur;
}

function compileObject(get: (row: number) => WireValue, props: string[], op: CmpOp, lit: Literal | Literal[]): Predicate {
  const positive: CmpOp = op === '!=' || op === '#' ? '=' : op === '!==' ? '===' : op;
  let test: (x: unknown) => boolean;
  const sample = Array.isArray(lit) ? lit[0] : lit;
  if (typeof sample === 'number') {
    const t = listOrOne(positive, lit, (v) => toNumberLit(v, props.join('.')), numberTest);
    test = (x) => (typeof x === 'number' || (typeof x === 'string' && NUMBER.test(x))) && t(Number(x));
  } else if (typeof sample === 'boolean') {
    const t = listOrOne(
      positive,
      lit,
      (v) => toBoolLit(v, props.join('.')),
      (_o, b) => (x: boolean) => x === b,
    );
    test = (x) => typeof x === 'boolean' && t(x);
  } else {
    const t = stringTest(positive, lit);
    test = (x) => (typeof x === 'string' || typeof x === 'number') && t(fold(String(x)));
  }
  const negate = NEGATED.has(op);
  return (row) => {
    const vals = objectValues(get(row), props);
    const any = vals.some(test);
    return negate ? vals.length > 0 && !any : any;
  };
}

function nullTest(r: Resolved, op: CmpOp): Predicate {
  if (r.kind === 'many') throw E.queryInvalid('a relatedEntities path cannot be compared with null');
  const isNull = r.kind === 'object' ? (row: number) => objectValues(r.get(row), r.props).every((v) => v === null) : (row: number) => r.get(row) === null;
  if (op === '=' || op === '==' || op === '===') return isNull;
  if (NEGATED.has(op)) return (row) => !isNull(row);
  throw E.queryInvalid(`null can only be compared with = or !=`);
}

function resolveValue(v: ValueNode, ctx: QueryContext): Literal | Literal[] {
  if (v.t === 'lit') return v.v;
  const p = ctx.params?.[v.n - 1];
  if (p === undefined || p === null) throw E.placeholderMissing(v.n);
  if (Array.isArray(p)) {
    if (p.some((x) => x !== null && typeof x === 'object')) throw E.badQueryValue(`placeholder :${v.n} holds objects`);
    return p as Literal[];
  }
  if (typeof p === 'object') throw E.badQueryValue(`placeholder :${v.n} holds an object`);
  return p as Literal;
}

function compileCmp(table: Table, path: string, op: CmpOp, value: ValueNode, ctx: QueryContext): Predicate {
  const r = resolvePath(table, path, ctx.store);
  if (value.t === 'ph' && ctx.missingPlaceholder === 'match-all' && (ctx.params?.[value.n - 1] ?? null) === null) return () => true;
  const lit = resolveValue(value, ctx);
  if (r.kind === 'many') {
    // any related entity matches: find them once, then test the parent key
    const sub = compileCmp(r.target, r.rest, op, value, ctx);
    const keys = new Set<string>();
    const all = r.target.all();
    for (let p = 0; p < all.size; p++) {
      const row = all.at(p);
      if (sub(row)) {
        const k = r.target.get(row, r.backAttr);
        if (k !== null) keys.add(r.parent.normalizeKey(String(k)));
      }
    }
    return (row) => {
      const k = r.keyOf(row);
      return k !== null && keys.has(k);
    };
  }
  if (lit === null) return nullTest(r, op);
  if (r.kind === 'object') return compileObject(r.get, r.props, op, lit);
  return compileValue(r, op, lit, ctx);
}

function compileNode(n: Node, table: Table, ctx: QueryContext): Predicate {
  switch (n.t) {
    case 'cmp':
      return compileCmp(table, n.path, n.op, n.value, ctx);
    case 'not': {
      const e = compileNode(n.e, table, ctx);
      return (row) => !e(row);
    }
    case 'and': {
      const l = compileNode(n.l, table, ctx);
      const r = compileNode(n.r, table, ctx);
      return (row) => l(row) && r(row);
    }
    case 'or': {
      const l = compileNode(n.l, table, ctx);
      const r = compileNode(n.r, table, ctx);
      return (row) => l(row) || r(row);
    }
    case 'except': {
      const l = compileNode(n.l, table, ctx);
      const r = compileNode(n.r, table, ctx);
      return (row) => l(row) && !r(row);
    }
  }
}

/** Parses `$params` (a JSON array). */
export function parseParams(raw: string | undefined): unknown[] | null {
  if (raw === undefined) return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw E.queryInvalid('$params is not a valid JSON array');
  }
  if (!Array.isArray(v)) throw E.queryInvalid('$params must be a JSON array');
  return v;
}

/** Compiles a `$filter` for `table`; throws RestError (HTTP 500) on any problem — a filter is never ignored. */
export function compileFilter(src: string, table: Table, ctx: QueryContext): Predicate {
  return compileNode(Parser.parse(src), table, ctx);
}

/** Rows of `sel` (live ones only) for which `pred` holds, in the same order. */
export function filterSelection(table: Table, sel: Selection, pred: Predicate): Selection {
  let out = new Int32Array(Math.min(sel.size, 1024));
  let n = 0;
  for (let p = 0; p < sel.size; p++) {
    const row = sel.at(p);
    if (!table.isLive(row) || !pred(row)) continue;
    if (n === out.length) {
      const bigger = new Int32Array(Math.min(sel.size, out.length * 2));
      bigger.set(out);
      out = bigger;
    }
    out[n++] = row;
  }
  return new ArraySelection(out.slice(0, n));
}

// ---- order by ----------------------------------------------------------------------------------------------------

type SortKey = string | number | null;

/** Sorts `sel` by `$orderby` ("a desc, b.c asc"); nulls first when ascending; ties keep the natural order. */
export function sortSelection(table: Table, sel: Selection, orderby: string, store: DataStore): Selection {
  const terms = orderby
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (terms.length === 0) throw E.badOrderBy(orderby, table.name);
  const keyFns = terms.map((term) => {
    const m = /^(\S+)(?:\s+(asc|desc))?$/i.exec(term);
    if (!m) throw E.badOrderBy(term, table.name);
    let r: Resolved;
    try {
      r = resolvePath(table, m[1]!, store);
    } catch {
      throw E.badOrderBy(m[1]!, table.name);
    }
    const dir = m[2]?.toLowerCase() === 'desc' ? -1 : 1;
    return { key: sortKeyFn(r, m[1]!, table), dir };
  });
  const n = sel.size;
  const rows = new Int32Array(n);
  for (let p = 0; p < n; p++) rows[p] = sel.at(p);
  const keys = keyFns.map(({ key }) => {
    const arr = new Array<SortKey>(n);
    for (let p = 0; p < n; p++) arr[p] = table.isLive(rows[p]!) ? key(rows[p]!) : null;
    return arr;
  });
  const order = new Uint32Array(n);
  for (let p = 0; p < n; p++) order[p] = p;
  order.sort((a, b) => {
    for (let t = 0; t < keys.length; t++) {
      const ka = keys[t]![a]!;
      const kb = keys[t]![b]!;
      if (ka === kb) continue;
      const c = ka === null ? -1 : kb === null ? 1 : ka < kb ? -1 : 1;
      return c * keyFns[t]!.dir;
    }
    return a - b;
  });
  const out = new Int32Array(n);
  for (let p = 0; p < n; p++) out[p] = rows[order[p]!]!;
  return new ArraySelection(out);
}

function sortKeyFn(r: Resolved, path: string, table: Table): (row: number) => SortKey {
  if (r.kind === 'many') throw E.badOrderBy(path, table.name);
  if (r.kind === 'object') {
    return (row) => {
      const v = objectValues(r.get(row), r.props)[0];
      return typeof v === 'number' ? v : typeof v === 'string' ? fold(v) : typeof v === 'boolean' ? Number(v) : null;
    };
  }
  const { attr, get } = r;
  if (attr.kind === 'storage' && (attr.type === 'object' || attr.type === 'image' || attr.type === 'blob')) {
    throw E.badOrderBy(path, table.name);
  }
  if (attr.kind === 'storage' && attr.type === 'date') return (row) => dateOrdinal(get(row));
  if (attr.kind === 'storage' && (NUMERIC_TYPES.has(attr.type) || attr.type === 'bool')) {
    return (row) => {
      const v = get(row);
      return v === null ? null : Number(v);
    };
  }
  return (row) => {
    const v = get(row);
    return v === null ? null : fold(String(v));
  };
}
