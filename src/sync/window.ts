/**
 * How an incremental sync finds what changed, most exact first:
 *
 * - `global stamp`: the table has 4D's `__GlobalStamp` attribute and the catalog a
 *   `__DeletedRecords` dataclass (data change tracking). Every change, whatever the dates say,
 *   gets a new stamp: read `__GlobalStamp >= cursor`, and the deletions from `__DeletedRecords`.
 *   The cursor is taken before the pass reads anything, so a change during the pass is read again
 *   next time (re-reads are harmless: upserts compare `__STAMP`).
 * - `date+time`: a modification date with a time beside it, where the server accepts `>` on dates:
 *   rows modified (or created) at or after the cursor's second, minus the lookback.
 * - `date`: whole days: rows modified (or created) on or after the cursor's day, minus the lookback.
 * - `full`: no way to tell (no cursor fields, no cursor yet, or `--full`).
 *
 * Date windows miss rows whose dates do not move (a script that does not touch `modified_date`,
 * an import that keeps old dates): that is what `--reconcile` (key and stamp of every row) and
 * `sync verify` are for.
 */
import type { SyncTableConfig } from '../config/store.js';
import type { Attribute, DataClass } from '../rest/types.js';
import { attributeNamed } from '../table/plan/query.js';
import { anyOf, conditionCheck, type RowCheck } from '../table/verify.js';
import { fourDDateToIso } from '../table/convert.js';

export type Tracking = 'global stamp' | 'date+time' | 'date' | 'full';

export const GLOBAL_STAMP = '__GlobalStamp';
export const DELETED_RECORDS = '__DeletedRecords';

/** The read of one pass: the filter (none: every row), what every row must satisfy, and the kind. */
export interface Window {
  tracking: Tracking;
  filter?: string;
  params: unknown[];
  check?: RowCheck;
}

const DEFAULT_CURSOR = [
  ['modified_date', 'modified_time'],
  ['created_date', 'created_time'],
] as const;

/** Cursor field pairs [date, time] that exist in the dataclass, most specific first. */
export function cursorFields(dc: DataClass, config: SyncTableConfig): Array<[Attribute, Attribute | undefined]> {
  const names: string[][] = config.cursor?.length ? [config.cursor] : DEFAULT_CURSOR.map((p) => [...p]);
  const pairs: Array<[Attribute, Attribute | undefined]> = [];
  for (const [dateName, timeName] of names as Array<[string, string | undefined]>) {
    const date = dc.attributes.find((a) => a.name === dateName && a.kind === 'storage');
    if (!date) continue;
    const time = timeName ? dc.attributes.find((a) => a.name === timeName && a.kind === 'storage') : undefined;
    pairs.push([date, time]);
  }
  if (config.cursor?.length && pairs.length === 0) {
    attributeNamed(dc, config.cursor[0]!, 'cursor field'); // throws with suggestions
  }
  return pairs;
}

/** The table's `__GlobalStamp` attribute when the server tracks its changes (and lists `__DeletedRecords`). */
export function globalStampOf(dc: DataClass, catalogNames: string[]): Attribute | undefined {
  if (!catalogNames.includes(DELETED_RECORDS)) return undefined;
  return dc.attributes.find((a) => a.name === GLOBAL_STAMP && a.kind === 'storage');
}

/** `2025-01-27T20:35:41` → [day, ms since midnight], `lookbackMs` earlier. */
function splitCursor(cursor: string, lookbackMs: number): [string, number] {
  const t = Date.parse(`${cursor.length === 10 ? `${cursor}T00:00:00` : cursor}Z`) - lookbackMs;
  const iso = new Date(t).toISOString();
  const [h, m, s] = iso.slice(11, 19).split(':').map(Number) as [number, number, number];
  return [iso.slice(0, 10), ((h * 60 + m) * 60 + s) * 1000];
}

/** A row's date and time at or after [day, ms]: `d > day`, or the same day at or after ms (or no time). */
function dateTimeCheck(date: Attribute, time: Attribute, day: string, ms: number): RowCheck {
  return {
    text: `${date.name}+${time.name}>=${day}T${ms}ms`,
    fields: [date.name, time.name],
    test(row) {
      const d = fourDDateToIso(row[date.name]);
      if (d === null || !/^\d{4}-\d{2}-\d{2}$/.test(d)) return undefined;
      if (d !== day) return d > day;
      const t = row[time.name];
      return t === null || t === undefined ? true : typeof t === 'number' ? t >= ms : undefined;
    },
  };
}

export interface WindowInput {
  dc: DataClass;
  pairs: Array<[Attribute, Attribute | undefined]>;
  /** The table's `__GlobalStamp` when the server tracks changes. */
  globalStamp?: Attribute;
  /** The stored cursors (none: the first pass). */
  dateCursor: string | null;
  stampCursor: number | null;
  full: boolean;
  lookbackMs: number;
  /** Whether the server accepts `>` on dates (a finer window), as probed. */
  strictDates: boolean;
}

/** The read of this pass (see the header). */
export function chooseWindow(input: WindowInput): Window {
  const { pairs, globalStamp, full } = input;
  if (globalStamp) {
    if (full || input.stampCursor === null) return { tracking: 'global stamp', params: [] };
    const check = conditionCheck(globalStamp, '>=', input.stampCursor, `${globalStamp.name}>=${input.stampCursor}`);
    return { tracking: 'global stamp', filter: `${globalStamp.name} >= :1`, params: [input.stampCursor], check };
  }
  if (full || !input.dateCursor || pairs.length === 0)
    return { tracking: pairs.length ? (input.strictDates && pairs.every(([, t]) => t) ? 'date+time' : 'date') : 'full', params: [] };
  const [day, ms] = splitCursor(input.dateCursor, input.lookbackMs);
  if (input.strictDates && pairs.every(([, t]) => t)) {
    const parts = pairs.map(([d, t]) => `(${d.name} > :1 OR (${d.name} = :1 AND (${t!.name} >= :2 OR ${t!.name} = null)))`);
    const text = parts.join(' OR ');
    return {
      tracking: 'date+time',
      filter: text,
      params: [day, ms],
      check: anyOf(
        pairs.map(([d, t]) => dateTimeCheck(d, t!, day, ms)),
        text,
      ),
    };
  }
  const parts = pairs.map(([date]) => `${date.name} >= :1`);
  const checks = pairs.map(([date]) => conditionCheck(date, '>=', day, `${date.name}>=${day}`)).filter((c): c is RowCheck => c !== undefined);
  return { tracking: 'date', filter: parts.join(' OR '), params: [day], check: checks.length === pairs.length ? anyOf(checks, parts.join(' OR ')) : undefined };
}
