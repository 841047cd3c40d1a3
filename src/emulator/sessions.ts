/**
 * REST sessions and licences. One licensed session = one licence. Guest sessions (force login, generation v21)
 * hold no licence and never count against `maxSessions`; `promote` (the emulated `Session.setPrivileges()`) turns a
 * guest into a licensed session under the same id, when a licence is free. The idle timeout slides on every request that uses the
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
  /** Force login: no licence, descriptive requests and `authentify` only. */
  guest: boolean;
}

export type HeaderDecoding = RuntimeOptions['headerDecoding'];

/**
 * A header value as text. Node hands header values over as latin1 strings (one character per byte); 'utf8' reads
 * those bytes as UTF-8, as the 4D/Wakanda HTTP server does (HTTPServer/Sources/VHTTPRequest.cpp: every header value
 * `FromBlock(..., VTC_UTF_8)`); invalid UTF-8 becomes U+FFFD. 'latin1' takes the bytes as ISO-8859-1.
 */
function headerValue(h: IncomingHttpHeaders, name: string, decoding: HeaderDecoding = 'latin1'): string | undefined {
  const raw = h[name];
  const v = Array.isArray(raw) ? raw[0] : raw;
  if (v === undefined || decoding === 'latin1' || !/[\x80-\xff]/.test(v)) return v;
  return Buffer.from(v, 'latin1').toString('utf8');
}

/** The `username-4D` header, if any. */
export function requestUser(h: IncomingHttpHeaders, decoding: HeaderDecoding): string | undefined {
  return headerValue(h, 'username-4d', decoding);
}

/** Whether `username-4D`/`password-4D` match the configured credentials (always true with open access). */
export function credentialsOk(auth: RuntimeOptions['auth'], h: IncomingHttpHeaders, decoding: HeaderDecoding): boolean {
  return !auth || (headerValue(h, 'username-4d', decoding) === auth.user && headerValue(h, 'password-4d', decoding) === auth.password);
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

  /** Live licensed REST sessions (phantoms and guests excluded). */
  liveCount(): number {
    this.purge();
    let n = 0;
    for (const s of this.sessions.values()) if (!s.occupied && !s.guest) n++;
    return n;
  }

  /** Live guest sessions. */
  guestCount(): number {
    this.purge();
    let n = 0;
    for (const s of this.sessions.values()) if (s.guest) n++;
    return n;
  }

  /** Sessions holding a licence (phantoms included, guests not). */
  private licensed(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (!s.guest) n++;
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
    if (this.licensed() >= this.opts().maxSessions) return null;
    const s: Session = { id: randomHexId(), createdAt: now, lastUsedAt: now, lifetimeMs, userName, occupied: false, guest: false };
    this.sessions.set(s.id, s);
    return s;
  }

  /** A guest session: no licence, never refused. */
  createGuest(now = Date.now()): Session {
    this.purge(now);
    const s: Session = { id: randomHexId(), createdAt: now, lastUsedAt: now, lifetimeMs: null, userName: '', occupied: false, guest: true };
    this.sessions.set(s.id, s);
    return s;
  }

  /** `Session.setPrivileges()`: the guest takes a licence and keeps its id; false (still a guest) when none is free. */
  promote(s: Session, userName: string, now = Date.now()): boolean {
    if (!s.guest) {
      s.userName = userName;
      return true;
    }
    this.purge(now);
    if (this.licensed() >= this.opts().maxSessions) return false;
    s.guest = false;
    s.userName = userName;
    return true;
  }

  end(id: string): boolean {
    if (!this.sessions.delete(id)) return false;
    this.onEnd(id);
    return true;
  }

  /** Ends every REST session, guests included (phantoms stay); returns how many. */
  expireAll(): number {
    let n = 0;
    for (const s of [...this.sessions.values()]) if (!s.occupied && this.end(s.id)) n++;
    return n;
  }

  occupy(count: number, now = Date.now()): number {
    for (let k = 0; k < count; k++) {
      const s: Session = { id: randomHexId(), createdAt: now, lastUsedAt: now, lifetimeMs: null, userName: 'occupied', occupied: true, guest: false };
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

  /** All sessions (phantoms and guests included). */
  all(): Session[] {
    this.purge();
    return [...this.sessions.values()];
  }

  /** Sessions holding a licence (phantoms included, guests not), for `$info`. */
  licensedSessions(): Session[] {
    return this.all().filter((s) => !s.guest);
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
        guest: s.guest,
      };
    });
  }
}
