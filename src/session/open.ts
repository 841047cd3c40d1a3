/**
 * Open the session store a run uses: the file store by default, Redis when configured
 * (LEGACY_SESSION_STORE or sessionStore in the config). Redis unreachable: a warning and the file
 * store for this run, or exit 69 when sessionStoreStrict is set. The Redis client is loaded only
 * when Redis is configured, so start-up for everyone else is unchanged.
 */
import type { Settings } from '../config/settings.js';
import { UnavailableError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { SessionStore, type SessionBackend } from './store.js';

export type SessionStoreSettings = Pick<Settings, 'configDir' | 'sessionStore' | 'sessionStoreStrict' | 'maxSessions' | 'sessionIdleMinutes'> &
  Partial<Pick<Settings, 'licenceLeaseMs'>>;

export async function openSessionStore(settings: SessionStoreSettings, logger: Logger): Promise<SessionBackend> {
  const fileStore = () => new SessionStore(settings.configDir, logger);
  if (settings.sessionStore === 'file') {
    if (settings.maxSessions !== undefined) {
      logger.warn('maxSessions is a fleet-wide budget kept in Redis; with the file session store it is ignored');
    }
    return fileStore();
  }
  const { RedisSessionStore } = await import('./redis.js');
  try {
    return await RedisSessionStore.connect({
      url: settings.sessionStore,
      logger,
      maxSessions: settings.maxSessions,
      leaseTtlMs: settings.licenceLeaseMs,
      idleMinutes: settings.sessionIdleMinutes,
      strict: settings.sessionStoreStrict,
    });
  } catch (error) {
    if (!(error instanceof UnavailableError) || settings.sessionStoreStrict) throw error;
    const file = fileStore();
    const budget = settings.maxSessions !== undefined ? ', without the licence budget' : '';
    logger.warn(`${error.message}; using the local session file ${file.location} for this run${budget} (set sessionStoreStrict to fail instead)`);
    return file;
  }
}

/** Open the store, run `fn` with it, and always close it (a Redis connection would keep the process alive). */
export async function withSessionStore<T>(settings: SessionStoreSettings, logger: Logger, fn: (store: SessionBackend) => Promise<T>): Promise<T> {
  const store = await openSessionStore(settings, logger);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
