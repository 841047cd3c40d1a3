/** Read-only views of the session store and of the server's sessions, for `legacy session status`. */
import { registerSecret } from '../log/index.js';
import { SESSION_COOKIE, type SessionEntry } from './store.js';

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

export function statusOf(entry: SessionEntry | undefined, slot: { env: string; name: string; baseUrl: string }, defaultIdleMinutes: number, nowMs = Date.now()): SessionStatus {
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
    masked: maskValue(entry.cookies[SESSION_COOKIE] ?? Object.values(entry.cookies)[0]),
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
  lifeTimeMinutes?: number;
  expiration?: string;
  ours: boolean;
}

/** The server's view from $info.sessionInfo; session ids are masked like cookies (they are the cookie values). */
export function serverSessions(info: Record<string, unknown>, ourValue: string | undefined): ServerSession[] {
  const list = Array.isArray(info.sessionInfo) ? (info.sessionInfo as Array<Record<string, unknown>>) : [];
  return list.map((s) => {
    const id = String(s.sessionID ?? '');
    return {
      masked: maskValue(id) ?? '',
      userName: typeof s.userName === 'string' ? s.userName : undefined,
      lifeTimeMinutes: typeof s.lifeTime === 'number' ? s.lifeTime : undefined,
      expiration: typeof s.expiration === 'string' ? s.expiration : undefined,
      ours: ourValue !== undefined && id === ourValue,
    };
  });
}
