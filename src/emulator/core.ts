/**
 * The emulator's state: data, sessions, entity sets, faults, statistics and runtime options. The HTTP layer
 * (server.ts), the REST router (rest.ts) and the control API (control.ts) all work on one EmulatorCore.
 */
import { type DataStore, dataStoreFactory } from './datastore.js';
import { EntitySetStore } from './entitysets.js';
import { FaultInjector } from './faults.js';
import { applyRuntimePatch, DEFAULT_APP_NAME, OptionError, type ResolvedOptions, type RuntimeOptions } from './options.js';
import { compileFilter, filterSelection, parseParams, sortSelection } from './query.js';
import { Renderer } from './render.js';
import { SessionManager } from './sessions.js';
import type { Selection, Table } from './table.js';
import type { EmulatorStats, FaultKind, RuntimeOptionsPatch } from './types.js';
import { FAULT_KINDS } from './types.js';
import { Updater } from './update.js';
import { hashString, hex8, mix32 } from './util/random.js';

type Counters = Omit<EmulatorStats, 'liveSessions' | 'occupiedSessions' | 'guestSessions' | 'entitySets'>;

function zeroCounters(): Counters {
  const faults = Object.fromEntries([...FAULT_KINDS, 'expire'].map((k) => [k, 0])) as Record<FaultKind | 'expire', number>;
  return {
    sessionsCreated: 0,
    maxLiveSessions: 0,
    guestSessionsCreated: 0,
    authentifyCalls: 0,
    authentifyFailures: 0,
    permissionRefusals: 0,
    rejected402: 0,
    duplicateCookieRejections: 0,
    authFailures: 0,
    logins: 0,
    logouts: 0,
    requests: 0,
    requestsWithoutCookie: 0,
    dataRequests: 0,
    updateRequests: 0,
    updates: 0,
    conflicts: 0,
    faults,
  };
}

export interface SelectQuery {
  filter?: string;
  params?: string;
  orderby?: string;
  /** A comparison whose placeholder has no value matches every row instead of failing with 1279 (savedFilterWithoutParams). */
  placeholdersMatchAll?: boolean;
}

const QUERY_CACHE_SIZE = 32;

export class EmulatorCore {
  opts: RuntimeOptions;
  store: DataStore;
  renderer: Renderer;
  updater: Updater;
  counters: Counters = zeroCounters();
  readonly appName: string;
  readonly uniqId: string;
  readonly sessions: SessionManager;
  readonly sets = new EntitySetStore();
  readonly faults: FaultInjector;
  private readonly makeStore: () => DataStore;
  /** Recent query results over whole tables (key includes the table version), so paging a filter is cheap. */
  private readonly queryCache = new Map<string, Selection>();
  /** One-shot changes applied by "another user" just before the next update of that row (control: before-update). */
  private beforeUpdate: Array<{ table: string; key: string; apply: () => void }> = [];

  constructor(readonly initial: ResolvedOptions) {
    this.opts = initial.runtime;
    this.makeStore = dataStoreFactory(initial.data, initial.seed, initial.rows, initial.changeTracking);
    this.store = this.makeStore();
    this.appName = initial.appName ?? this.store.appName ?? DEFAULT_APP_NAME;
    this.uniqId = hex8(mix32(initial.seed)) + hex8(hashString(this.appName)) + hex8(mix32(initial.seed + 1)) + hex8(mix32(initial.seed + 2));
    this.renderer = new Renderer(
      this.store,
      () => this.opts.quotedTimestamps,
      () => this.opts.generation === 'v18',
    );
    this.updater = new Updater(this.renderer, this.appName, (t, k) => this.runBeforeUpdate(t, k));
    this.sessions = new SessionManager(
      () => this.opts,
      (id) => this.sets.dropOwner(id),
    );
    this.faults = new FaultInjector(() => this.opts);
    this.checkTables('readOnlyTables', this.opts.readOnlyTables);
  }

  get sessionCookie(): string {
    return `4DSID_${this.appName}`;
  }

  /**
   * The session cookies of the generation: `set` on a new session, `read` in lookup order. A server reads only the
   * names it sets; v20r reads both (WASID4D first) and, with `scalable: false`, sets only WASID4D as before.
   */
  cookieNames(): { set: string[]; read: string[] } {
    const sid = this.sessionCookie;
    switch (this.opts.generation) {
      case 'v18':
        return { set: ['WASID4D'], read: ['WASID4D'] };
      case 'v20':
      case 'v21':
        return { set: [sid], read: [sid] };
      default:
        return { set: this.opts.scalable ? ['WASID4D', sid] : ['WASID4D'], read: ['WASID4D', sid] };
    }
  }

  /** Force login (generation v21): requests without a licensed session run in guest sessions. */
  get forceLogin(): boolean {
    return this.opts.generation === 'v21';
  }

  private checkTables(option: string, names: readonly string[]): void {
    for (const n of names) if (!this.store.table(n)) throw new OptionError(`${option}: unknown table "${n}"`);
  }

  setOptions(patch: RuntimeOptionsPatch): void {
    const next = applyRuntimePatch(this.opts, patch);
    this.checkTables('readOnlyTables', next.readOnlyTables);
    this.opts = next;
    if (patch.faults !== undefined) this.faults.restart();
  }

  /** Whether `table` is read-only for REST sessions (`readOnlyTables`). */
  readOnly(table: Table): boolean {
    return this.opts.readOnlyTables.length > 0 && this.opts.readOnlyTables.includes(table.name);
  }

  /** Back to the start state: sessions, sets, stats, data; runtime options as started, faults off. */
  reset(): void {
    this.sessions.clear();
    this.sets.clear();
    this.queryCache.clear();
    this.store = this.makeStore();
    this.renderer = new Renderer(
      this.store,
      () => this.opts.quotedTimestamps,
      () => this.opts.generation === 'v18',
    );
    this.updater = new Updater(this.renderer, this.appName, (t, k) => this.runBeforeUpdate(t, k));
    this.opts = { ...this.initial.runtime, faults: { ...this.initial.runtime.faults, rate: 0, expireEvery: 0 } };
    this.faults.clear();
    this.faults.restart();
    this.beforeUpdate = [];
    this.counters = zeroCounters();
  }

  /** Registers a change to run right before the next `$method=update` item for `table`/`key`. */
  addBeforeUpdate(table: Table, key: string, apply: () => void): number {
    this.beforeUpdate.push({ table: table.name, key: table.normalizeKey(key), apply });
    return this.beforeUpdate.length;
  }

  /** Runs (and drops) the before-update hooks for this row; called by the updater before each item. */
  runBeforeUpdate(table: Table, key: string): void {
    const k = table.normalizeKey(key);
    const due = this.beforeUpdate.filter((h) => h.table === table.name && h.key === k);
    if (due.length === 0) return;
    this.beforeUpdate = this.beforeUpdate.filter((h) => !due.includes(h));
    for (const h of due) h.apply();
  }

  stats(): EmulatorStats {
    const c = this.counters;
    return {
      ...c,
      faults: { ...c.faults },
      liveSessions: this.sessions.liveCount(),
      occupiedSessions: this.sessions.occupiedCount(),
      guestSessions: this.sessions.guestCount(),
      entitySets: this.sets.live().length,
    };
  }

  /** Counts a created REST session and updates the live-session high-water mark. */
  noteSessionCreated(): void {
    this.counters.sessionsCreated++;
    this.counters.maxLiveSessions = Math.max(this.counters.maxLiveSessions, this.sessions.liveCount());
  }

  /** Phantom sessions (occupy) count as created sessions too, but not in maxLiveSessions. */
  occupy(count: number): number {
    this.counters.sessionsCreated += count;
    return this.sessions.occupy(count);
  }

  /**
   * Filter and sort `base` (default: the whole table). Whole-table results are cached by table version.
   * Throws RestError for bad filters (500) and bad orderby (404).
   */
  select(table: Table, q: SelectQuery, base?: Selection): Selection {
    if (q.filter === undefined && q.orderby === undefined) return base ?? table.all();
    const cacheKey = base
      ? null
      : [table.name, table.version, q.filter ?? '', q.params ?? '', q.orderby ?? '', this.opts.strictDateCompare, q.placeholdersMatchAll ? 1 : 0].join(
          '\u0000',
        );
    if (cacheKey !== null) {
      const hit = this.queryCache.get(cacheKey);
      if (hit) {
        this.queryCache.delete(cacheKey);
        this.queryCache.set(cacheKey, hit);
        return hit;
      }
    }
    let sel = base ?? table.all();
    if (q.filter !== undefined) {
      const pred = compileFilter(q.filter, table, {
        store: this.store,
        params: parseParams(q.params),
        strictDateCompare: this.opts.strictDateCompare,
        missingPlaceholder: q.placeholdersMatchAll ? 'match-all' : 'error',
      });
      sel = filterSelection(table, sel, pred);
    }
    if (q.orderby !== undefined) sel = sortSelection(table, sel, q.orderby, this.store);
    if (cacheKey !== null) {
      this.queryCache.set(cacheKey, sel);
      if (this.queryCache.size > QUERY_CACHE_SIZE) this.queryCache.delete(this.queryCache.keys().next().value!);
    }
    return sel;
  }
}
