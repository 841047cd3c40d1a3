/**
 * `legacy watch`: a change feed built on the sync engine (../sync). A consumer's state is a sync
 * copy of its tables (keys, stamps and rows, in SQLite in the data directory): each poll is a sync
 * pass, and every row the pass creates, updates or marks deleted in that copy is an event. The copy
 * tells created from updated and names the changed fields; the pass finds changes exactly as sync
 * does (4D's global stamp and `__DeletedRecords` where the server tracks changes; a date window,
 * plus the key-and-stamp reconcile every --reconcile-interval and at the end of --once, where it
 * does not).
 *
 * Delivery: the store tells the feed each transaction's changes before it commits
 * (SyncStore.changeObserver); the feed hands them to the sink and returns only when the sink took
 * them, so the copy (the feed's cursor) never runs ahead of what was delivered. A crash, kill -9 or
 * a sink failure rolls the batch back and the next poll finds the same changes again: at least
 * once, with duplicates (same event ids) only from the batch in flight.
 *
 * The feed reads state, not a log: several changes of a record between two polls arrive as one
 * event with the latest state, never none.
 */
import type { SyncTableConfig } from '../config/store.js';
import { UnavailableError, exitCodeFor, formatErrorLine } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { RestClient } from '../rest/index.js';
import { Syncer, newRunId, type SyncStore, type TableResult } from '../sync/index.js';
import { sleep } from '../transport/index.js';
import { eventOf, inChangeOrder } from './events.js';
import type { Sink } from './sinks.js';

export interface FeedOptions {
  env: string;
  tables: SyncTableConfig[];
  /** Where a new consumer starts: `now` (a silent snapshot first) or `beginning` (every record as created). */
  from: 'now' | 'beginning';
  intervalMs: number;
  /** Idle polls back off (doubling) up to this. */
  maxIntervalMs: number;
  /** Where the server does not track changes: how often the key-and-stamp reconcile runs. */
  reconcileIntervalMs: number;
  /** One round (with a reconcile where needed), then return. */
  once: boolean;
  pageSize?: number;
  concurrency?: number;
  logger: Logger;
  signal?: AbortSignal;
  /** Told after each delivered batch. */
  onDelivered?: (counts: EventCounts) => void;
  /** Told after each poll: whether it completed. */
  onPoll?: (ok: boolean) => void | Promise<void>;
  /** Told after each table's pass. */
  onTable?: (result: TableResult) => void | Promise<void>;
  /** Told after each round: whether it found changes, and the wait before the next. */
  onRound?: (round: number, changed: number, waitMs: number) => void;
}

export interface EventCounts {
  created: number;
  updated: number;
  deleted: number;
}

export interface FeedSummary {
  rounds: number;
  events: EventCounts;
  /** Tables started from a silent snapshot in this run (new consumer, --from now). */
  snapshots: string[];
}

/** The sink did not take a batch: the feed stops (retrying the server would not help). */
export class SinkFailedError extends UnavailableError {}

const RUN_HISTORY_MS = 60 * 60 * 1000;

/**
 * Follow `options.tables` until the signal (or one round with `once`). Without a sink it only keeps
 * the copy current (`sync --follow`): the same polling, no events.
 */
export async function runFeed(client: RestClient, store: SyncStore, sink: Sink | undefined, options: FeedOptions): Promise<FeedSummary> {
  const { logger, signal } = options;
  const summary: FeedSummary = { rounds: 0, events: { created: 0, updated: 0, deleted: 0 }, snapshots: [] };
  let muted = false;
  store.changeObserver = sink && {
    beforeCommit: async (changes) => {
      if (muted) return;
      const events = inChangeOrder(changes).map((c) => eventOf(options.env, c));
      try {
        await sink.send(events);
      } catch (error) {
        if (signal?.aborted) throw error;
        throw error instanceof UnavailableError
          ? new SinkFailedError(error.message, { hint: error.hint })
          : new SinkFailedError(`${sink.name}: ${formatErrorLine(error)}; nothing was committed`);
      }
      const counts: EventCounts = { created: 0, updated: 0, deleted: 0 };
      for (const c of changes) counts[c.kind]++;
      summary.events.created += counts.created;
      summary.events.updated += counts.updated;
      summary.events.deleted += counts.deleted;
      options.onDelivered?.(counts);
    },
  };
  const reconciledAt = new Map<string, number>();
  const serverStamps = new Map<string, number>();
  let wait = options.intervalMs;
  let failures = 0;
  try {
    for (let round = 1; ; round++) {
      let changed = 0;
      try {
        await client.nextPoll();
        changed = await pollRound(client, store, options, { reconciledAt, serverStamps }, summary, (m) => {
          muted = m;
        });
        failures = 0;
        await options.onPoll?.(true);
      } catch (error) {
        if (signal?.aborted) return summary;
        await options.onPoll?.(false);
        const code = exitCodeFor(error);
        // The server restarting, licences all in use, a lost network: wait and go on (nothing was committed).
        if (error instanceof SinkFailedError || options.once || (code !== 69 && code !== 75)) throw error;
        failures++;
        logger.warn(`poll failed (${formatErrorLine(error)}); trying again`);
      } finally {
        muted = false;
      }
      summary.rounds = round;
      if (options.once) return summary;
      wait = failures
        ? Math.min(options.maxIntervalMs, options.intervalMs * 2 ** Math.min(failures, 10))
        : changed
          ? options.intervalMs
          : Math.min(wait * 2, options.maxIntervalMs);
      options.onRound?.(round, changed, wait);
      if (round % 600 === 0) await store.pruneRuns(new Date(Date.now() - RUN_HISTORY_MS).toISOString()).catch(() => 0);
      try {
        await sleep(wait, signal);
      } catch {
        return summary;
      }
    }
  } finally {
    store.changeObserver = undefined;
  }
}

async function pollRound(
  client: RestClient,
  store: SyncStore,
  options: FeedOptions,
  seen: { reconciledAt: Map<string, number>; serverStamps: Map<string, number> },
  summary: FeedSummary,
  mute: (muted: boolean) => void,
): Promise<number> {
  const runId = newRunId();
  // What this round learns (the global stamp each pass saw, when it reconciled) counts only once
  // the round committed: a rolled-back pass must not let the next one skip __DeletedRecords.
  const staged = { reconciledAt: new Map(seen.reconciledAt), serverStamps: new Map(seen.serverStamps) };
  const learn = () => {
    for (const [k, v] of staged.reconciledAt) seen.reconciledAt.set(k, v);
    for (const [k, v] of staged.serverStamps) seen.serverStamps.set(k, v);
  };
  // Every table has a cursor: one transaction for the round, so its events go out in one order
  // (4D's global stamp) across the tables. A first pass (a snapshot) commits as it goes instead.
  let fresh = 0;
  for (const table of options.tables) if (!(await store.state(table.name))?.last_success) fresh++;
  const ordered = fresh === 0 && options.tables.length > 1 && store.changeObserver !== undefined;
  if (!ordered) {
    const changed = await pollTables(client, store, options, runId, staged, summary, mute);
    learn();
    return changed;
  }
  await store.beginRound();
  try {
    const changed = await pollTables(client, store, options, runId, staged, summary, mute);
    await store.commitRound();
    learn();
    return changed;
  } catch (error) {
    await store.rollbackRound().catch(() => undefined);
    throw error;
  }
}

async function pollTables(
  client: RestClient,
  store: SyncStore,
  options: FeedOptions,
  runId: string,
  seen: { reconciledAt: Map<string, number>; serverStamps: Map<string, number> },
  summary: FeedSummary,
  mute: (muted: boolean) => void,
): Promise<number> {
  let changed = 0;
  for (const table of options.tables) {
    if (options.signal?.aborted) return changed;
    const state = await store.state(table.name);
    const fresh = !state?.last_success;
    // Where the server tracks changes, deletions and every write are in the global stamp: no reconcile.
    const tracked = state?.tracking === 'global stamp';
    const last = seen.reconciledAt.get(table.name) ?? (state?.last_reconcile ? Date.parse(state.last_reconcile) : 0);
    const due = options.once || Date.now() - last >= options.reconcileIntervalMs;
    const reconcile = !fresh && !tracked && due;
    // Skipping __DeletedRecords while 4D's global stamp stands still rests on the docs (every save and
    // delete moves it), not on a server we watched: every --reconcile-interval it is asked regardless.
    const askDeletions = tracked && due;
    if (fresh && options.from === 'now') {
      mute(true);
      if (!summary.snapshots.includes(table.name)) summary.snapshots.push(table.name);
    }
    const syncer = new Syncer(client, store, {
      reconcile,
      logger: options.logger,
      signal: options.signal,
      pageSize: options.pageSize,
      concurrency: options.concurrency,
      // A poll's window is usually empty or small: one request, no entity set to make and release.
      entitySet: fresh ? true : 'auto',
      serverStampBefore: askDeletions ? undefined : seen.serverStamps.get(table.name),
    });
    const result = await syncer.syncTable(table, runId);
    mute(false);
    await options.onTable?.(result);
    if (!fresh) changed += result.inserted + result.updated + result.deleted;
    if (result.serverStamp) seen.serverStamps.set(table.name, result.serverStamp);
    if (reconcile || askDeletions) seen.reconciledAt.set(table.name, Date.now());
    if (fresh && store.changeObserver)
      options.logger.info(
        `${result.table}: ${options.from === 'now' ? 'snapshot taken, following changes from now' : `${result.inserted} record(s) sent as created`}`,
      );
  }
  return changed;
}
