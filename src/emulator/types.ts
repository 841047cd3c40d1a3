/**
 * Public types of the 4D REST server emulator. The rest of the CLI and the tests rely on these shapes;
 * keep them stable.
 */

/**
 * '500' (HTML body) and '503' (plain text) look like a proxy or web server failing; '4d500' and '4d503' are the
 * 4D server itself answering a transient failure with an `__ERROR` body (errCode 1000, not a query, permission or
 * conflict code).
 */
export type FaultKind = '500' | '503' | '4d500' | '4d503' | 'reset' | 'truncate' | 'slow' | 'reset-after-update';

export const FAULT_KINDS: readonly FaultKind[] = ['500', '503', '4d500', '4d503', 'reset', 'truncate', 'slow', 'reset-after-update'];

/**
 * Kinds used when fault injection is switched on without naming kinds. 'slow' is opt-in (it stalls for seconds);
 * so are '4d500' and '4d503' (tests name them in `kinds` or queue them).
 */
export type Generation = 'v18' | 'v20' | 'v20r' | 'v21';

export const GENERATIONS: readonly Generation[] = ['v18', 'v20', 'v20r', 'v21'];

export const DEFAULT_FAULT_KINDS: readonly FaultKind[] = ['500', '503', 'reset', 'truncate', 'reset-after-update'];

export interface FaultOptions {
  /** Probability per data request, e.g. 0.1. */
  rate?: number;
  /** Chosen uniformly among these (those applicable to the request) when a fault fires. */
  kinds?: FaultKind[];
  /** Fault RNG seed (reproducible). */
  seed?: number;
  /** Delay for 'slow', default 5000. */
  slowMs?: number;
  /** Force-expire the requesting session every N data requests (0 = off). */
  expireEvery?: number;
}

export interface EmulatorOptions {
  host?: string;
  port?: number;
  data?: 'demo' | string;
  rows?: Record<string, number>;
  seed?: number;
  maxSessions?: number;
  sessionTimeoutMs?: number;
  auth?: { user: string; password: string } | null;
  appName?: string;
  scalable?: boolean;
  latencyMs?: number;
  faults?: FaultOptions;
  quiet?: boolean;
  verbose?: boolean;
  duplicateCookie?: 'reject' | 'first-wins';
  /** `<` and `>` on a date attribute: evaluate them (default 'allow') or answer 500/1162 ('reject'). */
  strictDateCompare?: 'reject' | 'allow';
  /**
   * How the request target is decoded. 'whole' (default, the 4D source): percent-decode the whole target, then
   * split it quote-aware (last parameter wins). 'split': split the raw query, then decode each part (first wins,
   * wrapping quotes stripped from a few parameters). See url.ts.
   */
  urlDecoding?: 'whole' | 'split';
  /** A server that silently drops `$filter`/`$params` (and `$savedfilter` on recreation): 200 with every row. Default false. */
  ignoreFilters?: boolean;
  /**
   * The 2014 source's recreation of a lost entity set from `$savedfilter` without `$params`: a comparison whose
   * placeholder has no value then matches every row (the recreated set silently widens). Default false.
   */
  savedFilterWithoutParams?: boolean;
  /**
   * A server whose paging is broken, for the client's page checks (not modelled on any 4D version):
   * 'ignore-top' sends every row from `$skip` on, 'ignore-skip' starts every page at row 0 (`__FIRST` 0),
   * 'short' sends one row less than `$top` asked. Default 'none'.
   */
  brokenPaging?: 'none' | 'ignore-top' | 'ignore-skip' | 'short';
  /** Unit of `$info.sessionInfo[].lifeTime`: 'seconds' (default, the 4D docs: 3600) or 'minutes' (real v16/v17 output: 60). */
  lifeTimeUnit?: 'minutes' | 'seconds';
  /**
   * Which 4D generation to play (see NOTES.md). 'v18': `WASID4D` only, `Table(key)` only; 'v20': `4DSID_<app>`
   * only; 'v20r' (default): both cookies, same id; 'v21': `4DSID_<app>` only and force login (guest sessions,
   * `POST /rest/$catalog/authentify`). A server reads only the cookie names it sets.
   */
  generation?: Generation;
  /** HTTP status of privilege errors (force-login refusals, `readOnlyTables`, `infoAdminOnly`): 401 (default, the docs) or 403. */
  refusalStatus?: 401 | 403;
  /** The credentials property the emulated `authentify()` reads the user from: 'name' (default, the docs' example) or 'identifier'. */
  authentifyUserField?: 'name' | 'identifier';
  /** Tables whose data may be read but not updated, created or deleted (privilege errors 1558/1559/1560). */
  readOnlyTables?: string[];
  /** `$info` refused for every session (1611), as with the password system on and a non-Admin user. Default false. */
  infoAdminOnly?: boolean;
  /**
   * A refused `$directory/login` (wrong or missing credentials with `auth`): 'result-false' (default, the docs:
   * HTTP 200 `{"result": false}`, no session) or '401' (401 with 1822, as observed on the legacy server).
   */
  loginRefusal?: 'result-false' | '401';
  /** How `username-4D`/`password-4D` header bytes are decoded: 'utf8' (default, the 4D/Wakanda source) or 'latin1'. */
  headerDecoding?: 'utf8' | 'latin1';
  /** The 4D v17 quirk: `__TIMESTAMP` holds a string with embedded quotes (`"\"2017-03-13T08:27:17.298Z\""`). Default false. */
  quotedTimestamps?: boolean;
  /**
   * 4D data change tracking (`docs/ORDA/global-stamp.md`): true = every table of the data set, a list = those
   * tables; default off (false, [] too). Tracked tables get a `__GlobalStamp` attribute (long64, indexed) that
   * every add/modify takes from one global counter; deletions add `__DeletedRecords` entities (`__PrimaryKey`,
   * `__Stamp`, `__TableName`, `__TableNumber`); the envelope's `__GlobalStamp` is the counter. Start-time only.
   */
  changeTracking?: boolean | string[];
}

/** The options that can be changed while the emulator runs (`POST /__emulator/options`). */
export type RuntimeOptionsPatch = Pick<
  EmulatorOptions,
  | 'maxSessions'
  | 'sessionTimeoutMs'
  | 'auth'
  | 'latencyMs'
  | 'faults'
  | 'scalable'
  | 'duplicateCookie'
  | 'strictDateCompare'
  | 'quotedTimestamps'
  | 'urlDecoding'
  | 'ignoreFilters'
  | 'savedFilterWithoutParams'
  | 'brokenPaging'
  | 'lifeTimeUnit'
  | 'generation'
  | 'refusalStatus'
  | 'authentifyUserField'
  | 'readOnlyTables'
  | 'infoAdminOnly'
  | 'loginRefusal'
  | 'headerDecoding'
  | 'verbose'
  | 'quiet'
>;

export interface EmulatorStats {
  /** Licensed REST sessions created (guest sessions are not counted; a guest promoted by `authentify` is), plus phantom sessions made by `occupy`. */
  sessionsCreated: number;
  /** Live licensed REST sessions (phantom sessions made by `occupy` are counted in `occupiedSessions`, guests in `guestSessions`). */
  liveSessions: number;
  /** Guest sessions created (force login, v21): no licence, descriptive requests and `authentify` only. */
  guestSessionsCreated: number;
  /** Live guest sessions. */
  guestSessions: number;
  /** `POST /rest/$catalog/authentify` calls, and those that did not open a licensed session (wrong credentials, no licence). */
  authentifyCalls: number;
  authentifyFailures: number;
  /** Requests refused by a privilege error (force login, `readOnlyTables`, `infoAdminOnly`). */
  permissionRefusals: number;
  occupiedSessions: number;
  /** High-water mark of `liveSessions`. */
  maxLiveSessions: number;
  rejected402: number;
  duplicateCookieRejections: number;
  authFailures: number;
  logins: number;
  logouts: number;
  /** Every request under /rest. */
  requests: number;
  /** /rest requests carrying none of the session cookies the generation reads (v18: WASID4D; v20/v21: 4DSID_<app>; v20r: either). */
  requestsWithoutCookie: number;
  /** /rest/{dataClass}... requests (the ones faults apply to). */
  dataRequests: number;
  /** `$method=update` requests (however many entities each carries). */
  updateRequests: number;
  /** Entities actually saved (updates and creations, REST only). */
  updates: number;
  /** Stamp mismatches on update. */
  conflicts: number;
  faults: Record<FaultKind | 'expire', number>;
  /** Live entity sets. */
  entitySets: number;
}

export interface SessionSummary {
  id: string;
  createdAt: string;
  lastUsedAt: string;
  /** null for phantom sessions made by `occupy` (they never time out). */
  expiresAt: string | null;
  userName: string;
  occupied: boolean;
  /** A guest session (force login): no licence until `authentify` succeeds. */
  guest: boolean;
}

export interface QueuedFault {
  kind: FaultKind;
  /** Which data requests it applies to; default 'any'. 'reset-after-update' only ever fires on updates. */
  match?: 'read' | 'update' | 'any';
  /** How many matching requests it hits; default 1. */
  count?: number;
}

export interface MutateRequest {
  table: string;
  update?: number;
  insert?: number;
  delete?: number;
  seed?: number;
  /**
   * Audit fields. 'now' (default): updates set `modified_date`/`modified_time`/`modified_name`, inserts get
   * `created_*` = now. 'keep': a script or an import that bypasses them: updates leave `modified_*` as they were,
   * inserts carry the `created_*` of the table's first row and null `modified_*`. Either way `__STAMP` grows on
   * every update, `__TIMESTAMP` is now, and tracked tables take new `__GlobalStamp` values.
   */
  dates?: 'now' | 'keep';
}

export interface MutateResult {
  updated: string[];
  inserted: string[];
  deleted: string[];
}

/** One change the control API made (mutate, row, churn), in the order made: what a change feed must report. */
export interface ChangeRecord {
  seq: number;
  /** ms since epoch. */
  at: number;
  table: string;
  kind: 'created' | 'updated' | 'deleted';
  key: string;
}

/** Changes at a steady rate, like ERP users at work (POST churn). */
export interface ChurnRequest {
  /** Tables to change (picked at random per change). */
  tables: string[];
  /** Changes per second (at most 1000). */
  rate: number;
  /** Share of updates, inserts and deletes (default 0.6, 0.25, 0.15). */
  mix?: { update?: number; insert?: number; delete?: number };
  dates?: 'now' | 'keep';
  seed?: number;
}

/** An entity as the REST API renders it (`__entityModel`, `__KEY`, `__TIMESTAMP`, `__STAMP`, attributes). */
export type RenderedEntity = Record<string, unknown>;

/** In-process twin of the HTTP control API under `/__emulator/`. Errors are thrown as `ControlError`. */
export interface EmulatorControl {
  stats(): EmulatorStats;
  sessions(): SessionSummary[];
  /** Sessions, entity sets, stats and data back to the start state; runtime options back to the start options, faults off. */
  reset(): void;
  setOptions(patch: RuntimeOptionsPatch): void;
  /** Expires every live REST session (not the phantom ones); returns how many. */
  expireSessions(): number;
  /** Adds `count` phantom sessions holding licences; returns the number of phantoms now held. */
  occupy(count: number): number;
  /** Frees the phantom sessions; returns how many were freed. */
  releaseOccupied(): number;
  /** Queues one-shot faults; returns the queue length. */
  queueFaults(queue: QueuedFault[]): number;
  clearFaults(): void;
  mutate(request: MutateRequest): MutateResult;
  setRow(table: string, key: string, set: Record<string, unknown>): RenderedEntity;
  /**
   * One-shot: right before the next `$method=update` item for this row is processed, change the row as
   * another user would (like setRow), so the client's stamp is stale. Returns the number of pending hooks.
   */
  beforeUpdate(table: string, key: string, set: Record<string, unknown>): number;
  getRow(table: string, key: string): RenderedEntity | null;
  tables(): Array<{ name: string; count: number }>;
  /** Every change made through the control API since the start or reset (after `since`, a seq). */
  changes(since?: number): ChangeRecord[];
  /** Starts changing rows at a rate until stopChurn (replaces a running churn). */
  startChurn(request: ChurnRequest): void;
  /** Stops the churn; returns how many changes it made. */
  stopChurn(): number;
}

export interface RunningEmulator {
  /** 'http://127.0.0.1:<port>' (no trailing slash, no /rest). */
  url: string;
  port: number;
  stop(): Promise<void>;
  stats(): EmulatorStats;
  control: EmulatorControl;
}
