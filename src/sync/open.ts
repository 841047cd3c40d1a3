/**
 * Which store a sync uses, and opening it: `--db` → an SQLite file (./sqlite.ts) or a PostgreSQL
 * database (./postgres.ts). The drivers are imported only when chosen, and neither store module
 * imports the other (they share ./store.ts).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { maskUrl } from '../config/values.js';
import { UsageError } from '../errors/index.js';
import type { SyncTableConfig } from '../config/store.js';
import type { SyncStore, SyncTarget } from './store.js';

export type { SyncTarget } from './store.js';

const POSTGRES_URL = /^postgres(?:ql)?:/i;
const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** `--db` → the target: `postgres://` or `postgresql://` URLs go to PostgreSQL, anything else is an SQLite path. */
export function syncTarget(db: string | undefined, cwd: string, defaultPath: string, what = '--db'): SyncTarget {
  if (!db || !POSTGRES_URL.test(db)) {
    const path = db ? resolve(cwd, db) : defaultPath;
    return { kind: 'sqlite', path, display: path };
  }
  const bad = (why: string) =>
    new UsageError(`${what} ${maskUrl(db)}: ${why}`, { hint: 'use postgres://user@host:port/database; give the password with PGPASSWORD or ~/.pgpass' });
  let url: URL;
  try {
    url = new URL(db);
  } catch {
    throw bad('not a valid PostgreSQL URL');
  }
  if (!url.hostname && !url.searchParams.get('host')) throw bad('no host');
  if (!/^\/?[^/]*$/.test(url.pathname)) throw bad('the path must be only the database name');
  return { kind: 'postgres', url: url.href, display: maskUrl(url.href) };
}

export interface OpenOptions {
  /**
   * How long to wait for a database another run is writing: SQLite's busy timeout (every mode) and,
   * for `read` and `write`, PostgreSQL's lock_timeout. Then the store's error is exit 75
   * (TemporaryError), never "the copy differs". Default 5000 ms.
   */
  busyTimeoutMs?: number;
}

/**
 * Open a target. `run`: create it if needed, take the one-sync-per-target lock, create or upgrade the
 * schema. `read` (read-only) and `write`: only an existing store, else undefined.
 */
export async function openSyncStore(target: SyncTarget, mode: 'run', options?: OpenOptions): Promise<SyncStore>;
export async function openSyncStore(target: SyncTarget, mode: 'read' | 'write', options?: OpenOptions): Promise<SyncStore | undefined>;
export async function openSyncStore(target: SyncTarget, mode: 'run' | 'read' | 'write', options: OpenOptions = {}): Promise<SyncStore | undefined> {
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  let store: SyncStore;
  if (target.kind === 'postgres') {
    const { PostgresSyncStore } = await import('./postgres.js');
    store = await PostgresSyncStore.connect(target, { readOnly: mode === 'read', ...(mode === 'run' ? {} : { lockTimeoutMs: busyTimeoutMs }) });
    if (mode !== 'run' && (await store.existingColumns('_legacy_sync_runs')).length === 0) {
      await store.close();
      return undefined;
    }
  } else {
    if (mode !== 'run' && !existsSync(target.path)) return undefined;
    const { SqliteSyncStore } = await import('./sqlite.js');
    store = SqliteSyncStore.open(target.path, { readOnly: mode === 'read', busyTimeoutMs });
  }
  if (mode === 'read') return store;
  try {
    if (mode === 'run') await store.acquireRunLock();
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

/** A `sync.tables` entry of the config: a name, or `{name, key, cursor}`. */
export function normaliseTableConfig(entry: string | SyncTableConfig): SyncTableConfig {
  return typeof entry === 'string' ? { name: entry } : entry;
}
