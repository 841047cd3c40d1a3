/**
 * The plan of an export: which columns (checked against the catalog, converted from the wire),
 * which rows (the filter with `$params`, the order, what each row is checked against), and how
 * they are paged. ./query.ts builds the query; ../paging/read.ts carries the plan out.
 */
import { UsageError } from '../../errors/index.js';
import type { RestClient } from '../../rest/index.js';
import type { Attribute, DataClass } from '../../rest/types.js';
import { converterFor, keepValue, keyText, unquotedTimestamp, type Converter } from '../convert.js';
import { DEFAULT_PAGES_IN_FLIGHT } from '../paging/concurrency.js';
import { allOf, conditionCheck, type RowCheck } from '../verify.js';
import { attributeNamed, buildOrderBy, buildQuery, typedValue } from './query.js';

export interface ExportOptions {
  table: string;
  fields?: string[];
  where?: string[];
  filter?: string;
  orderBy?: string;
  limit?: number;
  skip?: number;
  pageSize?: number;
  /** Pages in flight; absent: adapted to the server, from 3 up to 8 (../paging/concurrency.ts). */
  concurrency?: number;
  raw?: boolean;
  meta?: boolean;
  /**
   * Page a server-side entity set (default true). 'auto': ask the first page without one and make
   * the set only when more than one page is there (a poll of a small window: one request, no set to
   * release; a larger one asks its first page again with the set).
   */
  entitySet?: boolean | 'auto';
}

export interface Column {
  name: string;
  attribute?: Attribute;
  convert: Converter;
}

export interface ExportPlan {
  dataClass: DataClass;
  columns: Column[];
  query: {
    filter?: string;
    params: unknown[];
    orderBy?: string;
    attributes?: string[];
    /** What every row must satisfy (checked before it is written), where the client can tell. */
    check?: RowCheck;
    /** Every condition of the filter is in `check` (see ./query.ts): a cached canary may then be trusted. */
    rowsChecked?: boolean;
    /** A row failing the check: stop the export (default), or count it (sync: extra rows are harmless). */
    onMismatch?: 'fail' | 'count';
  };
  options: Required<Pick<ExportOptions, 'pageSize' | 'concurrency' | 'skip'>> & ExportOptions & { adaptive?: boolean };
}

const META: Array<{ name: string; convert: Converter }> = [
  { name: '__KEY', convert: keyText },
  { name: '__STAMP', convert: keepValue },
  { name: '__TIMESTAMP', convert: unquotedTimestamp },
];

/** Check names against the catalog and work out columns, query and order. */
export async function planExport(client: RestClient, options: ExportOptions): Promise<ExportPlan> {
  const dc = await client.dataClass(options.table);
  const raw = options.raw === true;
  let attrs: Attribute[];
  if (options.fields?.length) {
    attrs = options.fields.map((f) => attributeNamed(dc, f, 'field'));
  } else {
    // Every stored attribute and to-one relation; to-many relations have no value of their own.
    attrs = dc.attributes.filter((a) => a.kind === 'storage' || a.kind === 'relatedEntity');
  }
  const columns: Column[] = [
    ...(options.meta ? META.map((m) => ({ ...m })) : []),
    ...attrs.map((a) => ({ name: a.name, attribute: a, convert: converterFor(a, raw) })),
  ];
  const built = buildQuery(dc, options.where ?? [], options.filter);
  const orderBy = buildOrderBy(dc, options.orderBy);
  // The checked fields are read too (not written) so every row can be checked.
  const attributes = options.fields?.length ? [...new Set([...attrs.map((a) => a.name), ...(built.check?.fields ?? [])])] : undefined;
  return {
    dataClass: dc,
    columns,
    query: { ...built, orderBy, attributes },
    options: {
      ...options,
      pageSize: options.pageSize ?? 1000,
      concurrency: options.concurrency ?? DEFAULT_PAGES_IN_FLIGHT,
      adaptive: options.concurrency === undefined,
      skip: options.skip ?? 0,
    },
  };
}

/**
 * The rest of a plan after `done` of its rows, the last with the key `after` (a resumed export,
 * ../output/resume.ts): the rows whose primary key comes after it, in the same key order, by a key filter
 * rather than a position in an entity set that may be gone. --skip is behind us; --limit counts
 * what is left. The key condition is checked on every row where the client can tell (numbers).
 */
export function planAfter(plan: ExportPlan, after: string, done: number): ExportPlan {
  const dc = plan.dataClass;
  const keyName = dc.key[0]?.name;
  if (!keyName) throw new UsageError(`${dc.name} has no primary key: its export cannot carry on after a row`);
  const attr = attributeNamed(dc, keyName, 'key');
  const value = typedValue(attr, after, `resuming after key ${after}`);
  const params = [...plan.query.params, value];
  const condition = `${attr.name} > :${params.length}`;
  const check = conditionCheck(attr, '>', value, `${attr.name}>${after}`);
  const checks = allOf([...(plan.query.check ? [plan.query.check] : []), ...(check ? [check] : [])]);
  const { limit } = plan.options;
  return {
    ...plan,
    query: {
      ...plan.query,
      filter: plan.query.filter ? `(${plan.query.filter}) AND ${condition}` : condition,
      params,
      check: checks,
      rowsChecked: (plan.query.rowsChecked ?? !plan.query.filter) && check !== undefined,
      attributes: plan.query.attributes && checks ? [...new Set([...plan.query.attributes, ...checks.fields])] : plan.query.attributes,
    },
    options: { ...plan.options, skip: 0, limit: limit === undefined ? undefined : Math.max(0, limit - done) },
  };
}
