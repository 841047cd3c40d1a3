/**
 * Where sessions live. Two stores share one interface (SessionBackend): the file store here
 * (default, one machine) and the Redis store (src/session/redis.ts, a fleet of hosts).
 *
 * The file store: `<config dir>/sessions.json` (0600), one slot per environment, session name
 * and base URL. A cookie is only ever looked up for the exact base URL it came from, so switching
 * --base-url or environment never sends one server's session to another.
 *
 * Writes: under the store lock, re-read, change, atomic replace (temp + fsync + rename).
 * A damaged file is moved aside (`.corrupt-<time>`) with a warning and we start clean; a single
 * malformed entry is dropped with a warning and the good ones are kept.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { configFileError } from '../config/store.js';
import { ensurePrivateDir, quarantine, withLock, writeFileAtomic, type LockOptions } from '../fs/index.js';
import { ConfigError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { type BreakerStore, FileBreakerStore } from './breaker.js';

export interface SessionEntry {
  env: string;
  name: string;
  baseUrl: string;
  /**
   * The cookies the server set for this session, by name, whatever the names are (`WASID4D`,
   * `4DSID_<AppName>`, both: learnt from Set-Cookie, see cookies.ts). The session's identity.
   */
  cookies: Record<string, string>;
  /**
   * Moves on every write that says something new about the session: created, replaced, confirmed
   * by a run's first contact, logged in. A run that waited for the slot lock and finds it moved
   * knows another run has just settled the session (manager.ts). Absent in files of older versions.
   */
  revision?: number;
  /** How the session got its licence: `$directory/login`, the application's `authentify()` (force login), or neither. */
  login?: 'directory' | 'authentify';
  /** How the login headers' bytes were accepted (non-ASCII credentials). */
  headerEncoding?: 'utf8' | 'latin1';
  createdAt: string;
  lastUsedAt: string;
  /** Last time the server accepted the cookie without replacing it. */
  confirmedAt?: string;
  /** Idle minutes the server was asked for (login) or assumed (60). */
  idleMinutes?: number;
  /** Login user, when the session came from $directory/login. */
  user?: string;
}

export interface SessionFile {
  version: 1;
  sessions: SessionEntry[];
}

export interface SlotId {
  env: string;
  name: string;
  baseUrl: string;
}

export function sameSlot(a: SlotId, b: SlotId): boolean {
  return a.env === b.env && a.name === b.name && a.baseUrl === b.baseUrl;
}

export function slotLabel(slot: SlotId): string {
  return `${slot.env}/${slot.name}`;
}

/**
 * A session store. Every method is safe across processes (and, for Redis, across hosts).
 */
export interface SessionBackend {
  readonly kind: 'file' | 'redis';
  /** Where the sessions are, for messages: a path or a URL with its password masked. */
  readonly location: string;
  find(slot: SlotId): Promise<SessionEntry | undefined>;
  list(): Promise<SessionEntry[]>;
  /** Insert or replace the entry for its slot. */
  put(entry: SessionEntry): Promise<void>;
  /**
   * Change one slot atomically: `change` sees what is stored now and returns what to store, or
   * undefined to leave it as it is. It may be called more than once (optimistic retry).
   */
  updateSlot(slot: SlotId, change: (stored: SessionEntry | undefined) => SessionEntry | undefined, lockTimeoutMs?: number): Promise<void>;
  /** Forget the entries that match; returns them. */
  remove(match: (entry: SessionEntry) => boolean): Promise<SessionEntry[]>;
  /** Run `fn` holding the slot's single-flight lock (session creation and login). */
  withSlotLock<T>(slot: SlotId, fn: () => Promise<T>, options: Pick<LockOptions, 'what' | 'timeoutMs'>): Promise<T>;
  /** The fleet-wide licence budget, when one is configured (Redis only). */
  readonly budget?: LicenceBudget;
  /** The environments' circuit breakers, shared like the sessions (./breaker.ts). */
  readonly breakers: BreakerStore;
  close(): Promise<void>;
}

/** A claim on one of the server's licences for a slot, held for the length of a run. */
export interface Lease {
  release(): Promise<void>;
}

export interface LicenceBudget {
  readonly maxSessions: number;
  /**
   * Wait for the slot to be among the live sessions of its server (at most maxSessions), and
   * hold it for this run. When every place is taken and one belongs to a slot no run is using,
   * `evict` is called with that slot's stored entry (if any) before its place is handed over.
   */
  acquire(
    slot: SlotId,
    options: { waitMs: number; signal?: AbortSignal; logger: Logger; evict: (entry: SessionEntry) => Promise<void>; onWait?: () => void },
  ): Promise<Lease>;
}

export function isEntry(value: unknown): value is SessionEntry {
  if (!value || typeof value !== 'object') return false;
  const e = value as Record<string, unknown>;
  return (
    typeof e.env === 'string' &&
    typeof e.name === 'string' &&
    typeof e.baseUrl === 'string' &&
    typeof e.createdAt === 'string' &&
    typeof e.lastUsedAt === 'string' &&
    !!e.cookies &&
    typeof e.cookies === 'object' &&
    Object.values(e.cookies as object).every((v) => typeof v === 'string') &&
    Object.keys(e.cookies as object).length > 0
  );
}

export class SessionStore implements SessionBackend {
  readonly kind = 'file' as const;
  readonly path: string;
  readonly breakers: BreakerStore;
  private warnedCorrupt = false;

  constructor(
    readonly configDir: string,
    private readonly logger: Logger,
  ) {
    this.path = join(configDir, 'sessions.json');
    this.breakers = new FileBreakerStore(configDir, logger);
  }

  get location(): string {
    return this.path;
  }

  /** Read without locking (a reader never sees a half-written file). Damage is reported by `problem`. */
  async read(): Promise<{ file: SessionFile; problem?: string }> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { file: { version: 1, sessions: [] } };
      return { file: { version: 1, sessions: [] }, problem: `cannot read ${this.path}: ${code}` };
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      return { file: { version: 1, sessions: [] }, problem: 'not valid JSON' };
    }
    if (!data || typeof data !== 'object' || !Array.isArray((data as SessionFile).sessions)) {
      return { file: { version: 1, sessions: [] }, problem: 'not a session store (wrong shape)' };
    }
    const sessions: SessionEntry[] = [];
    let dropped = 0;
    for (const entry of (data as SessionFile).sessions) {
      if (isEntry(entry)) sessions.push(entry);
      else dropped += 1;
    }
    if (dropped > 0) {
      this.logger.warn(`ignoring ${dropped} malformed entr${dropped === 1 ? 'y' : 'ies'} in ${this.path}`);
    }
    return { file: { version: 1, sessions } };
  }

  async find(slot: SlotId): Promise<SessionEntry | undefined> {
    const { file, problem } = await this.read();
    if (problem && !this.warnedCorrupt) {
      this.warnedCorrupt = true;
      this.logger.warn(`session store ${this.path} is damaged (${problem}); it will be set aside on the next write`);
    }
    return file.sessions.find((s) => sameSlot(s, slot));
  }

  async list(): Promise<SessionEntry[]> {
    return (await this.read()).file.sessions;
  }

  /** Change the store under its lock: re-read, mutate, write atomically. */
  async update<T>(mutate: (file: SessionFile) => T, lockTimeoutMs = 30_000): Promise<T> {
    ensurePrivateDir(this.configDir, 'config directory', configFileError);
    return withLock(
      this.path,
      async () => {
        const { file, problem } = await this.read();
        if (problem?.startsWith('cannot read')) {
          // Unreadable (permissions): never replace what we cannot read.
          throw new ConfigError(`${problem}`, { hint: 'fix the permissions of the session store (mode 0600, owned by you)' });
        }
        if (problem) {
          const aside = await quarantine(this.path).catch(() => undefined);
          const message = `session store was damaged (${problem}); moved it aside${aside ? ` to ${aside}` : ''} and started clean`;
          // Said once per run: a reader may already have warned about the same damage.
          if (this.warnedCorrupt) this.logger.info(message);
          else this.logger.warn(message);
          this.warnedCorrupt = true;
        }
        const result = mutate(file);
        await writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, 'session store', { error: configFileError });
        return result;
      },
      { what: `session store ${this.path}`, timeoutMs: lockTimeoutMs, error: configFileError },
    );
  }

  /** Put (insert or replace) the entry for its slot. */
  async put(entry: SessionEntry): Promise<void> {
    await this.update((file) => {
      file.sessions = file.sessions.filter((s) => !sameSlot(s, entry));
      file.sessions.push(entry);
    });
  }

  async updateSlot(slot: SlotId, change: (stored: SessionEntry | undefined) => SessionEntry | undefined, lockTimeoutMs?: number): Promise<void> {
    await this.update((file) => {
      const index = file.sessions.findIndex((s) => sameSlot(s, slot));
      const next = change(index >= 0 ? file.sessions[index] : undefined);
      if (!next) return;
      if (index >= 0) file.sessions.splice(index, 1);
      file.sessions.push(next);
    }, lockTimeoutMs);
  }

  async remove(match: (entry: SessionEntry) => boolean): Promise<SessionEntry[]> {
    if (!(await this.list()).some(match)) return [];
    return this.update((file) => {
      const gone = file.sessions.filter(match);
      file.sessions = file.sessions.filter((e) => !match(e));
      return gone;
    });
  }

  withSlotLock<T>(slot: SlotId, fn: () => Promise<T>, options: Pick<LockOptions, 'what' | 'timeoutMs'>): Promise<T> {
    return withLock(this.slotLockTarget(slot), fn, { ...options, staleMs: 6_000, error: configFileError });
  }

  async close(): Promise<void> {}

  /** Lock file path used to single-flight session creation for one slot. */
  slotLockTarget(slot: SlotId): string {
    const safe = `${slot.env}-${slot.name}`.replace(/[^A-Za-z0-9_.-]/g, '_');
    let hash = 0;
    for (const ch of slot.baseUrl) hash = (Math.imul(hash, 31) + ch.charCodeAt(0)) >>> 0;
    return join(this.configDir, `session-${safe}-${hash.toString(16)}`);
  }
}
