/**
 * REST sessions and licences. One session = one licence. The idle timeout slides on every request that uses the
 * session; expired sessions are purged lazily (on lookup, and before counting licences) and free their licence.
 * Phantom sessions (`occupy`) stand for other users: they hold a licence, never time out, and are freed only by
 * `release-occupied` (or `reset`).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RuntimeOptions } from './options.js';
import type { SessionSummary } from './types.js';
import { randomHexId } from './util/random.js';

export interface Session {
  id: string;
  createdAt: number;
  lastUsedAt: number;
  /** Set by `session-4D-length`; null = the configured sessionTimeoutMs (which may change at runtime). */
  lifetimeMs: number | null;
  userName: string;
  occupied: boolean;
}

function headerValue(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The `username-4D` header, if any. */
export function requestUser(h: IncomingHttpHeaders): string | undefined {
  return headerValue(h, 'username-4d');
}

/** Whether `username-4D`/`password-4D` match the configured credentials (always true with open access). */
export function credentialsOk(auth: RuntimeOptions['auth'], h: IncomingHttpHeaders): boolean {
  return !auth || (headerValue(h, 'username-4d') === auth.user && headerValue(h, 'password-4d') === auth.password);
}

/** `session-4D-length` (minutes, clamped to at least 60 as the 4D docs say) in ms, or null when absent. */
export function requestedLifetimeMs(h: IncomingHttpHeaders): number | null {
  const minutes = Number.parseInt(headerValue(h, 'session-4d-length') ?? '', 10);
  return Number.isFinite(minutes) ? Math.max(60, minutes) * 60_000 : null;
}

export class SessionManager {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly opts: () => RuntimeOptions,
    /** Called whenever a session ends (expiry, logout, expire-all, reset): drops its entity sets. */
    private readonly onEnd: (id: string) => void,
  ) {}

  lifetimeOf(s: Session): number {
    return s.lifetimeMs ?? this.opts().sessionTimeoutMs;
  }

  expiresAt(s: Session): number {
    return s.occupied ? Number.POSITIVE_INFINITY : s.lastUsedAt + this.lifetimeOf(s);
  }

  /** The live session with that id (an expired one is ended and not returned). */
  lookup(id: string, now = Date.now()): Session | undefined {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (this.expiresAt(s) <= now) {
      this.end(id);
      return undefined;
    }
    return s;
  }

  /** Sliding expiration. */
  touch(s: Session, now = Date.now()): void {
    s.lastUsedAt = now;
  }

  purge(now = Date.now()): void {
    for (const s of [...this.sessions.values()]) if (this.expiresAt(s) <= now) this.end(s.id);
  }

  /** Live REST sessions (phantoms excluded). */
  liveCount(): number {
    this.purge();
    let n = 0;
    for (const s of this.sessions.values()) if (!s.occupied) n++;
    return n;
  }

  occupiedCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.occupied) n++;
    return n;
  }

  /** Takes a licence and creates a session, or returns null when every licence is in use. */
  create(userName: string, lifetimeMs: number | null, now = Date.now()): Session | null {
    this.purge(now);
    if (this.sessions.size >= this.opts().maxSessions) return null;
    const s: Session = { id: randomHexId(), createdAt: now, lastUsedAt: now, lifetimeMs, userName, occupied: false };
    this.sessions.set(s.id, s);
    return s;
  }

  end(id: string): boolean {
    if (!this.sessions.delete(id)) return false;
    this.onEnd(id);
    return true;
  }

  /** Ends every REST session (phantoms stay); returns how many. */
  expireAll(): number {
    let n = 0;
    for (const s of [...this.sessions.values()]) if (!s.occupied && this.end(s.id)) n++;
    return n;
  }

  occupy(count: number, now = Date.now()): number {
    for (let k = 0; k < count; k++) {
      const s: Session = { id: randomHexId(), createdAt: now, lastUsedAt: now, lifetimeMs: null, userName: 'occupied', occupied: true };
      this.sessions.set(s.id, s);
    }
    return this.occupiedCount();
  }

  releaseOccupied(): number {
    let n = 0;
    for (const s of [...this.sessions.values()]) if (s.occupied && this.end(s.id)) n++;
    return n;
  }

  clear(): void {
    for (const id of [...this.sessions.keys()]) this.end(id);
  }

  /** All sessions holding a licence (phantoms included), for `$info` and the control API. */
  all(): Session[] {
    this.purge();
    return [...this.sessions.values()];
  }

  summaries(): SessionSummary[] {
    return this.all().map((s) => {
      const exp = this.expiresAt(s);
      return {
        id: s.id,
        createdAt: new Date(s.createdAt).toISOString(),
        lastUsedAt: new Date(s.lastUsedAt).toISOString(),
        expiresAt: Number.isFinite(exp) ? new Date(exp).toISOString() : null,
        userName: s.userName,
        occupied: s.occupied,
      };
    });
  }
}
