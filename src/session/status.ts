/** Read-only views of the session store and of the server's sessions, for `legacy session status`. */
import { registerSecret } from '../log/index.js';
import { displayValue, holdsId, type Cookies } from './cookies.js';
import type { SessionEntry } from './store.js';

export type SessionState = 'none' | 'stored' | 'confirmed';

export interface SessionStatus {
  env: string;
  name: string;
  baseUrl: string;
  state: SessionState;
  cookieNames: string[];
  /** First 4 characters of the session id, then an ellipsis. Never the whole value. */
  masked?: string;
  createdAt?: string;
  lastUsedAt?: string;
  confirmedAt?: string;
  /** When the server will expire it if nobody uses it (idle timeout after last use). */
  expiresIfUnusedAt?: string;
  expiredByClock?: boolean;
  idleMinutes: number;
  user?: string;
}

export function maskValue(value: string | undefined): string | undefined {
  if (!value) return undefined;
  registerSecret(value);
  return `${value.slice(0, 4)}…`;
}

export function statusOf(
  entry: SessionEntry | undefined,
  slot: { env: string; name: string; baseUrl: string },
  defaultIdleMinutes: number,
  nowMs = Date.now(),
): SessionStatus {
  if (!entry) return { ...slot, state: 'none', cookieNames: [], idleMinutes: defaultIdleMinutes };
  const idleMinutes = entry.idleMinutes ?? defaultIdleMinutes;
  const expires = Date.parse(entry.lastUsedAt) + idleMinutes * 60_000;
  const confirmedRecently = entry.confirmedAt !== undefined && Date.parse(entry.confirmedAt) + idleMinutes * 60_000 > nowMs;
  return {
    env: entry.env,
    name: entry.name,
    baseUrl: entry.baseUrl,
    state: confirmedRecently ? 'confirmed' : 'stored',
    cookieNames: Object.keys(entry.cookies),
    masked: maskValue(displayValue(entry.cookies)),
    createdAt: entry.createdAt,
    lastUsedAt: entry.lastUsedAt,
    confirmedAt: entry.confirmedAt,
    expiresIfUnusedAt: new Date(expires).toISOString(),
    expiredByClock: expires < nowMs,
    idleMinutes,
    user: entry.user,
  };
}

export interface ServerSession {
  masked: string;
  userName?: string;
  /** The idle timeout in seconds, whatever unit the server wrote `lifeTime` in. */
  lifeTimeSeconds?: number;
  expiration?: string;
  ours: boolean;
}

export type LifeTimeUnit = 'minutes' | 'seconds';

/**
 * The unit of `$info.sessionInfo[].lifeTime`: the 4D docs say seconds (3600), real 4D output and
 * the 4D source minutes (60). Decided from the answer itself, never assumed:
 * - a session cannot have more time left than its lifetime, so one with more seconds left than
 *   `lifeTime` proves minutes;
 * - ours was just used by this very request, so its time left is its whole lifetime: the unit
 *   whose reading is closer wins;
 * - 4D keeps sessions at least 60 minutes, so a value under 3600 can only be minutes;
 * - otherwise seconds, the documented unit.
 */
export function lifeTimeUnit(list: Array<Record<string, unknown>>, ours: Cookies | undefined, serverNowMs: number): LifeTimeUnit {
  let ownGuess: LifeTimeUnit | undefined;
  for (const s of list) {
    const value = typeof s.lifeTime === 'number' ? s.lifeTime : undefined;
    const expires = typeof s.expiration === 'string' ? Date.parse(s.expiration) : Number.NaN;
    if (value === undefined || value <= 0 || !Number.isFinite(expires)) continue;
    const left = (expires - serverNowMs) / 1000;
    if (left > value + 5) return 'minutes';
    if (holdsId(ours, String(s.sessionID ?? ''))) {
      ownGuess = Math.abs(left - value) < Math.abs(left - value * 60) ? 'seconds' : 'minutes';
    }
  }
  if (ownGuess) return ownGuess;
  const values = list.map((s) => s.lifeTime).filter((v): v is number => typeof v === 'number' && v > 0);
  return values.some((v) => v < 3600) ? 'minutes' : 'seconds';
}

/**
 * The server's view from $info.sessionInfo; session ids are masked like cookies (they are the cookie
 * values). A session is ours when its id is the value of any of our session's cookies, whatever
 * their names. `serverNowMs` is the server's clock (its Date header) when known.
 */
export function serverSessions(info: Record<string, unknown>, ours: Cookies | undefined, serverNowMs = Date.now()): ServerSession[] {
  // Items that are not objects say nothing about a session (a proxy's or a broken answer): left out.
  const list = Array.isArray(info.sessionInfo)
    ? (info.sessionInfo as unknown[]).filter((s): s is Record<string, unknown> => s !== null && typeof s === 'object' && !Array.isArray(s))
    : [];
  const factor = lifeTimeUnit(list, ours, serverNowMs) === 'minutes' ? 60 : 1;
  return list.map((s) => {
    const id = String(s.sessionID ?? '');
    return {
      masked: maskValue(id) ?? '',
      userName: typeof s.userName === 'string' ? s.userName : undefined,
      lifeTimeSeconds: typeof s.lifeTime === 'number' ? s.lifeTime * factor : undefined,
      expiration: typeof s.expiration === 'string' ? s.expiration : undefined,
      ours: holdsId(ours, id),
    };
  });
}

/** The server's clock from a response's Date header (to compare with its expiration times), else ours. */
export function serverClock(headers: Record<string, string | string[] | undefined>): number {
  const raw = headers.date;
  const parsed = Date.parse(Array.isArray(raw) ? (raw[0] ?? '') : (raw ?? ''));
  return Number.isFinite(parsed) ? parsed : Date.now();
}
