/**
 * The session store: `<config dir>/sessions.json` (0600), one slot per environment, session name
 * and base URL. A cookie is only ever looked up for the exact base URL it came from, so switching
 * --base-url or environment never sends one server's session to another.
 *
 * Writes: under the store lock, re-read, change, atomic replace (temp + fsync + rename).
 * A damaged file is moved aside (`.corrupt-<time>`) with a warning and we start clean; a single
 * malformed entry is dropped with a warning and the good ones are kept.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, quarantine, withLock, writeFileAtomic } from '../config/files.js';
import { ConfigError } from '../errors/index.js';
import type { Logger } from '../log/index.js';

export const SESSION_COOKIE = 'WASID4D';
export const SCALABLE_COOKIE_PREFIX = '4DSID_';

export interface SessionEntry {
  env: string;
  name: string;
  baseUrl: string;
  /** Session cookies by name (WASID4D and, when the server sets it, 4DSID_<app>). */
  cookies: Record<string, string>;
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

function isEntry(value: unknown): value is SessionEntry {
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

export class SessionStore {
  readonly path: string;
  private warnedCorrupt = false;

  constructor(readonly configDir: string, private readonly logger: Logger) {
    this.path = join(configDir, 'sessions.json');
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
    ensurePrivateDir(this.configDir, 'config directory');
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
        await writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, 'session store');
        return result;
      },
      { what: `session store ${this.path}`, timeoutMs: lockTimeoutMs },
    );
  }

  /** Put (insert or replace) the entry for its slot. */
  async put(entry: SessionEntry): Promise<void> {
    await this.update((file) => {
      file.sessions = file.sessions.filter((s) => !sameSlot(s, entry));
      file.sessions.push(entry);
    });
  }

  /** Lock file path used to single-flight session creation for one slot. */
  slotLockTarget(slot: SlotId): string {
    const safe = `${slot.env}-${slot.name}`.replace(/[^A-Za-z0-9_.-]/g, '_');
    let hash = 0;
    for (const ch of slot.baseUrl) hash = (Math.imul(hash, 31) + ch.charCodeAt(0)) >>> 0;
    return join(this.configDir, `session-${safe}-${hash.toString(16)}`);
  }
}
