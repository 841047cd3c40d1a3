/**
 * A stored change as a CloudEvent 1.0 (JSON, structured mode), built and validated by the
 * CloudEvents SDK (12.7 µs per event measured against 3.5 µs for a bare JSON.stringify: nothing at
 * a feed's rates, and the SDK checks every required attribute and the time format).
 *
 * - `id`: a hash of environment, table, key, kind and the record's stamp: the same change gets the
 *   same id whenever it is emitted again (after a crash before the cursor was committed), so a
 *   consumer drops duplicates by id.
 * - `source`: `urn:legacy:<environment>:<table>`; `type`: `legacy.record.created|updated|deleted`;
 *   `subject`: the record's key as a string; `time`: the record's `__TIMESTAMP` (else now).
 * - `data`: `table`, `key`, `stamp` (`__STAMP`), `globalStamp` where 4D tracks changes, `row` (after
 *   the change; null when deleted) and, for updates, `changedFields`.
 */
import { createHash } from 'node:crypto';
import { CloudEvent } from 'cloudevents';
import type { StoredChange } from '../sync/store.js';

export const EVENT_TYPE_PREFIX = 'legacy.record.';

export interface FeedEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  data: {
    table: string;
    key: unknown;
    stamp: number | null;
    globalStamp?: number | null;
    row: Record<string, unknown> | null;
    changedFields?: string[];
  };
}

/** JSON-safe values: 64-bit integers beyond 2^53 as exact text, never rounded. */
function jsonSafe(value: unknown): unknown {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  return value;
}

function isoTime(timestamp: string | null): string {
  const t = timestamp ? Date.parse(timestamp) : Number.NaN;
  return new Date(Number.isFinite(t) ? t : Date.now()).toISOString();
}

export function eventOf(env: string, change: StoredChange): FeedEvent {
  const source = `urn:legacy:${env}:${change.table}`;
  const key = jsonSafe(change.key);
  // The same change, whenever it is sent: the record's stamp and its global stamp or time, which a
  // record deleted and created again under the same key does not share with the first one.
  const when = change.globalStamp ?? (change.kind === 'deleted' ? change.previousTimestamp : change.timestamp) ?? null;
  const id = createHash('sha256')
    .update(JSON.stringify([env, change.table, String(key), change.kind, change.stamp, when]))
    .digest('hex')
    .slice(0, 32);
  const row = change.row ? Object.fromEntries(Object.entries(change.row).map(([k, v]) => [k, jsonSafe(v)])) : null;
  const event = new CloudEvent<FeedEvent['data']>({
    specversion: '1.0',
    id,
    source,
    type: `${EVENT_TYPE_PREFIX}${change.kind}`,
    subject: String(key),
    time: isoTime(change.timestamp),
    datacontenttype: 'application/json',
    data: {
      table: change.table,
      key,
      stamp: change.stamp,
      ...(change.globalStamp !== null ? { globalStamp: change.globalStamp } : {}),
      row,
      ...(change.changedFields ? { changedFields: change.changedFields } : {}),
    },
  });
  return event.toJSON() as unknown as FeedEvent;
}

/**
 * The changes of a batch in change order: by 4D's global stamp when every one has it (tracked
 * tables); otherwise by time, a deletion found without a stamp counting as now (when it was found,
 * after every change stored of the record). Stable: ties keep the order they were noted in.
 */
export function inChangeOrder(changes: StoredChange[], now = Date.now()): StoredChange[] {
  if (changes.every((c) => c.globalStamp !== null)) return [...changes].sort((a, b) => a.globalStamp! - b.globalStamp!);
  const at = (c: StoredChange) => (c.timestamp ? Date.parse(c.timestamp) : Number.NaN);
  return changes
    .map((c, i) => ({ c, i, t: Number.isFinite(at(c)) ? at(c) : now }))
    .sort((x, y) => x.t - y.t || x.i - y.i)
    .map((x) => x.c);
}
