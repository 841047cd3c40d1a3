/**
 * The Redis session store: the same slots as sessions.json, shared by every host that points at
 * the same Redis database, plus a fleet-wide licence budget.
 *
 * Keys (all under `legacy:v1:`):
 * - `sessions`            hash: slot key → SessionEntry JSON
 * - `lock:<slot key>`     single-flight lock: SET NX PX with a random token, renewed while held,
 *                         released only by its owner (compare-and-delete script)
 * - `live:<base URL>`     sorted set: slots holding one of the server's licences, scored by when
 *                         the server forgets them if unused; `~<slot key>` marks one being logged out
 * - `leases:<base URL>`   sorted set: `<slot key>#<token>` per running run, scored by lease expiry
 * - `breakers`            hash: breaker key → BreakerRecord JSON (./breaker.ts; changed by compare-and-set)
 * - `breaker-probe:<breaker key>`  the half-open probe slot: SET NX PX with a random token
 *
 * Times in the budget scripts come from the Redis server's clock (TIME), so hosts with skewed
 * clocks still agree. Every multi-key decision is one Lua script, atomic in Redis.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { maskUrl } from '../config/values.js';
import type { LockOptions } from '../fs/index.js';
import { ConfigError, LockBusyError, SessionLimitError, UnavailableError } from '../errors/index.js';
import { registerSecret, type Logger } from '../log/index.js';
import { backoffDelay, sleep } from '../transport/index.js';
import { type BreakerKey, type BreakerRecord, type BreakerStore, breakerKeyString, isBreakerRecord, stateAt } from './breaker.js';
import { isEntry, slotLabel, type Lease, type LicenceBudget, type SessionBackend, type SessionEntry, type SlotId } from './store.js';

const PREFIX = 'legacy:v1:';
const SESSIONS = `${PREFIX}sessions`;
const BREAKERS = `${PREFIX}breakers`;

/** A slot as one string: unambiguous, and never starting with '~' (JSON arrays start with '['). */
export function slotKey(slot: SlotId): string {
  return JSON.stringify([slot.env, slot.name, slot.baseUrl]);
}

/** Set the field only if it still holds the expected value ('' = absent). */
const COMPARE_AND_SET = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1`;

const RELEASE_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

const RENEW_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

const TOKEN_HEX = 32;

/**
 * Take a place among the server's live sessions for a slot and lease it for this run.
 * Returns {1} taken, {2, victim} a place was freed by marking an unleased slot for logout
 * (the caller logs it out, then clears the mark), {0} everything is leased: wait.
 */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live, leases = KEYS[1], KEYS[2]
local slot, max, idle, member, leaseTtl, drainTtl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local function take()
  local cur = tonumber(redis.call('ZSCORE', live, slot) or 0)
  redis.call('ZADD', live, math.max(cur, now + idle), slot)
  redis.call('ZADD', leases, now + leaseTtl, member)
  return {1, ''}
end
if redis.call('ZSCORE', live, slot) then return take() end
if redis.call('ZCARD', live) < max then return take() end
local leased = {}
for _, m in ipairs(redis.call('ZRANGE', leases, 0, -1)) do leased[string.sub(m, 1, -${TOKEN_HEX + 2})] = true end
for _, s in ipairs(redis.call('ZRANGE', live, 0, -1)) do
  if string.sub(s, 1, 1) ~= '~' and not leased[s] then
    redis.call('ZREM', live, s)
    redis.call('ZADD', live, now + drainTtl, '~' .. s)
    return {2, s}
  end
end
return {0, ''}`;

/** Keep a lease alive (re-adding it if it lapsed while the process stalled). */
const RENEW_LEASE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1`;

/** End a lease; the slot stays live (its session was just used) for the idle timeout. */
const RELEASE_LEASE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[2])
return 1`;

type Client = Redis;

export interface RedisStoreOptions {
  url: string;
  logger: Logger;
  /** Licence budget per server; undefined = no budget. */
  maxSessions?: number;
  /** How long the server keeps an unused session (minutes). */
  idleMinutes: number;
  connectTimeoutMs?: number;
  /**
   * Redis failing after the run has started: strict → exit 69; otherwise the run goes on without
   * the store (reads find nothing, writes are dropped, locks are skipped) after one warning.
   */
  strict?: boolean;
  /** Lease (licenceLeaseMs) and lock lifetimes (ms), renewed at a third while held. A small lock lifetime is for tests. */
  leaseTtlMs?: number;
  lockTtlMs?: number;
}

/** Why Redis cannot be used, as the error the caller throws or falls back from. */
function connectError(location: string, error: unknown): Error {
  const message = (error as Error)?.message ?? String(error);
  if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(message)) {
    return new ConfigError(`session store ${location} refused the login: ${message.split('\n')[0]}`, {
      hint: 'check the user and password in LEGACY_SESSION_STORE (redis://user:password@host:port/db)',
    });
  }
  const code = (error as NodeJS.ErrnoException)?.code;
  return new UnavailableError(`session store ${location} is unreachable (${code ?? message.split('\n')[0]})`, {
    hint: 'start Redis or fix LEGACY_SESSION_STORE',
    cause: error,
  });
}

export class RedisSessionStore implements SessionBackend {
  readonly kind = 'redis' as const;
  readonly location: string;
  readonly budget?: LicenceBudget;
  readonly breakers: BreakerStore;
  /** Redis failed mid-run (not strict): every later call answers its fallback at once. */
  private degraded = false;

  private constructor(
    private readonly client: Client,
    private readonly options: RedisStoreOptions,
  ) {
    this.location = maskUrl(options.url);
    if (options.maxSessions !== undefined) this.budget = new RedisLicenceBudget(this, options.maxSessions, options);
    this.breakers = new RedisBreakerStore(this, options.logger);
  }

  /** Connect (bounded by connectTimeoutMs); UnavailableError when Redis is down, ConfigError on a refused login. */
  static async connect(options: RedisStoreOptions): Promise<RedisSessionStore> {
    const location = maskUrl(options.url);
    let parsed: URL;
    try {
      parsed = new URL(options.url);
    } catch {
      throw new ConfigError(`session store '${location}' is not a valid URL`, { hint: 'use redis://host:port/db' });
    }
    if (parsed.password) {
      registerSecret(parsed.password);
      try {
        registerSecret(decodeURIComponent(parsed.password));
      } catch {
        /* not percent-encoded: registered as written */
      }
    }
    const { Redis: RedisClient } = await import('ioredis');
    const client = new RedisClient(options.url, {
      lazyConnect: true,
      connectTimeout: options.connectTimeoutMs ?? 2_000,
      // One attempt and no queueing: a run must not hang on a dead Redis; it falls back or fails
      // (see open.ts), and a Redis lost mid-run fails the one call at once.
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      connectionName: 'legacy',
    });
    let lastError: unknown;
    client.on('error', (error: unknown) => {
      lastError = error; // without a listener ioredis prints to the console
    });
    try {
      await client.connect();
    } catch (error) {
      // A failed connect has already ended the client; disconnect() now would start a timer that
      // keeps the process alive for the connect timeout.
      if (client.status !== 'end') client.disconnect();
      throw connectError(location, lastError ?? error);
    }
    return new RedisSessionStore(client, options);
  }

  /**
   * Run one Redis call. A failure mid-run is exit 69 in strict mode; otherwise it is said once and
   * the call answers `fallback`, so losing Redis never fails an export that is under way.
   */
  async call<T>(what: string, fn: (client: Client) => Promise<T>, fallback: T): Promise<T> {
    if (this.degraded) return fallback;
    try {
      return await fn(this.client);
    } catch (error) {
      const message = `session store ${this.location}: ${what} failed: ${(error as Error).message.split('\n')[0]}`;
      if (this.options.strict) throw new UnavailableError(message, { hint: 'check that Redis is running', cause: error });
      this.degraded = true;
      this.options.logger.warn(`${message}; this run goes on without the shared session store`);
      return fallback;
    }
  }

  eval(what: string, script: string, keys: string[], args: string[], fallback: unknown): Promise<unknown> {
    return this.call(what, (c) => c.eval(script, keys.length, ...keys, ...args), fallback);
  }

  private parse(raw: string | null | undefined): SessionEntry | undefined {
    if (!raw) return undefined;
    try {
      const value = JSON.parse(raw) as unknown;
      return isEntry(value) ? value : undefined;
    } catch {
      return undefined;
    }
  }

  async findByKey(key: string): Promise<SessionEntry | undefined> {
    return this.parse(await this.call('reading a session', (c) => c.hget(SESSIONS, key), null));
  }

  find(slot: SlotId): Promise<SessionEntry | undefined> {
    return this.findByKey(slotKey(slot));
  }

  async list(): Promise<SessionEntry[]> {
    const values = await this.call('listing sessions', (c) => c.hvals(SESSIONS), [] as string[]);
    return values.map((v) => this.parse(v)).filter((e): e is SessionEntry => e !== undefined);
  }

  async put(entry: SessionEntry): Promise<void> {
    await this.call('storing a session', (c) => c.hset(SESSIONS, slotKey(entry), JSON.stringify(entry)), 0);
  }

  /** Optimistic: read, change, compare-and-set; retried when another host wrote in between. */
  async updateSlot(slot: SlotId, change: (stored: SessionEntry | undefined) => SessionEntry | undefined): Promise<void> {
    const key = slotKey(slot);
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const raw = (await this.call('reading a session', (c) => c.hget(SESSIONS, key), null)) ?? '';
      const next = change(this.parse(raw));
      if (!next) return;
      const done = await this.eval('storing a session', COMPARE_AND_SET, [SESSIONS], [key, raw, JSON.stringify(next)], 1);
      if (Number(done) === 1) return;
    }
    throw new LockBusyError(`the ${slotLabel(slot)} session in ${this.location} kept changing under us`, { hint: 'try again' });
  }

  async remove(match: (entry: SessionEntry) => boolean): Promise<SessionEntry[]> {
    const all = await this.call('listing sessions', (c) => c.hgetall(SESSIONS), {} as Record<string, string>);
    const removed: SessionEntry[] = [];
    for (const [key, raw] of Object.entries(all)) {
      const entry = this.parse(raw);
      if (!entry || !match(entry)) continue;
      // Only if unchanged: a session another host stored a moment ago is not ours to forget.
      if (Number(await this.eval('removing a session', COMPARE_AND_SET, [SESSIONS], [key, raw, ''], 0))) removed.push(entry);
    }
    return removed;
  }

  /** SET NX PX lock with a random token, renewed while held, released by compare-and-delete. */
  async withSlotLock<T>(slot: SlotId, fn: () => Promise<T>, options: Pick<LockOptions, 'what' | 'timeoutMs'>): Promise<T> {
    const key = `${PREFIX}lock:${slotKey(slot)}`;
    const token = randomBytes(16).toString('hex');
    const ttl = this.options.lockTtlMs ?? 10_000;
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    let delay = 20;
    for (;;) {
      const taken = await this.call('taking a lock', (c) => c.set(key, token, 'PX', ttl, 'NX'), 'OK' as const);
      if (taken === 'OK') break;
      if (Date.now() + delay > deadline) {
        throw new LockBusyError(`${options.what ?? key} is locked by another legacy process (in ${this.location})`, {
          hint: `waited ${Math.round(timeoutMs / 1000)} s; try again later (a lock of a killed process expires after ${Math.round(ttl / 1000)} s)`,
        });
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 250);
    }
    const renew = setInterval(
      () => {
        this.eval('renewing a lock', RENEW_LOCK, [key], [token, String(ttl)], 1).then(
          (kept) => {
            if (Number(kept) !== 1) this.options.logger.warn(`lost the lock on ${options.what ?? key} (it expired while held)`);
          },
          () => undefined,
        );
      },
      Math.max(50, Math.floor(ttl / 3)),
    );
    renew.unref();
    try {
      return await fn();
    } finally {
      clearInterval(renew);
      await this.eval('releasing a lock', RELEASE_LOCK, [key], [token], 0).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.client.status === 'ready') await this.client.quit().catch(() => this.client.disconnect());
    else if (this.client.status !== 'end') this.client.disconnect();
  }
}

/** The fleet-wide licence budget: at most maxSessions slots live per server, leased by running runs. */
class RedisLicenceBudget implements LicenceBudget {
  constructor(
    private readonly store: RedisSessionStore,
    readonly maxSessions: number,
    private readonly options: RedisStoreOptions,
  ) {}

  async acquire(slot: SlotId, { waitMs, signal, logger, evict, onWait }: Parameters<LicenceBudget['acquire']>[1]): Promise<Lease> {
    const key = slotKey(slot);
    const live = `${PREFIX}live:${slot.baseUrl}`;
    const leases = `${PREFIX}leases:${slot.baseUrl}`;
    const member = `${key}#${randomBytes(TOKEN_HEX / 2).toString('hex')}`;
    const leaseTtl = this.options.leaseTtlMs ?? 30_000;
    const idleMs = Math.round(this.options.idleMinutes * 60_000);
    const deadline = Date.now() + waitMs;
    let waits = 0;
    for (;;) {
      const [outcome, victim] = (await this.store.eval(
        'taking a licence',
        ACQUIRE,
        [live, leases],
        [key, String(this.maxSessions), String(idleMs), member, String(leaseTtl), String(Math.max(leaseTtl, 30_000))],
        [1, ''],
      )) as [number, string];
      if (Number(outcome) === 1) break;
      if (Number(outcome) === 2) {
        const entry = await this.store.findByKey(victim);
        try {
          if (entry) await evict(entry);
        } finally {
          await this.store.call('freeing a licence', (c) => c.zrem(live, `~${victim}`), 0);
        }
        continue;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new SessionLimitError(
          `the licence budget of ${this.maxSessions} session(s) for ${slot.baseUrl} is in use by other runs (waited ${Math.round(waitMs / 1000)} s)`,
          {
            hint: 'raise maxSessions if the server has more licences, or try again later',
          },
        );
      }
      if (waits === 0) logger.info(`licence budget of ${this.maxSessions} for ${slot.baseUrl} is in use; waiting for a place for ${slotLabel(slot)}`);
      onWait?.();
      await sleep(Math.min(remaining, backoffDelay(Math.min(waits, 4), 100, 2_000)), signal);
      waits += 1;
    }
    const renew = setInterval(
      () => {
        this.store.eval('renewing a licence lease', RENEW_LEASE, [leases], [member, String(leaseTtl)], 1).catch(() => undefined);
      },
      Math.max(50, Math.floor(leaseTtl / 3)),
    );
    renew.unref();
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(renew);
        await this.store.eval('releasing a licence lease', RELEASE_LEASE, [live, leases], [member, key, String(idleMs)], 1);
      },
    };
  }
}

/** The circuit breakers in Redis: one hash field per breaker, changed by compare-and-set; the probe slot is SET NX PX. */
class RedisBreakerStore implements BreakerStore {
  private warnedDamage = false;

  constructor(
    private readonly store: RedisSessionStore,
    private readonly logger: Logger,
  ) {}

  get location(): string {
    return this.store.location;
  }

  private parse(raw: string | null | undefined): BreakerRecord | undefined {
    if (!raw) return undefined;
    try {
      const value = JSON.parse(raw) as unknown;
      if (isBreakerRecord(value)) return value;
    } catch {
      /* damaged: said below */
    }
    if (!this.warnedDamage) {
      this.warnedDamage = true;
      this.logger.warn(`circuit breaker state in ${this.location} is damaged; treating it as closed`);
    }
    return undefined;
  }

  async read(key: BreakerKey): Promise<BreakerRecord | undefined> {
    return this.parse(await this.store.call('reading the circuit breaker', (c) => c.hget(BREAKERS, breakerKeyString(key)), null));
  }

  async list(): Promise<BreakerRecord[]> {
    const values = await this.store.call('listing circuit breakers', (c) => c.hvals(BREAKERS), [] as string[]);
    return values.map((v) => this.parse(v)).filter((r): r is BreakerRecord => r !== undefined);
  }

  async update(key: BreakerKey, change: (stored: BreakerRecord | undefined) => BreakerRecord | undefined): Promise<BreakerRecord | undefined> {
    const field = breakerKeyString(key);
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const raw = (await this.store.call('reading the circuit breaker', (c) => c.hget(BREAKERS, field), null)) ?? '';
      const stored = this.parse(raw);
      const next = change(stored);
      if (!next) return stored;
      const done = await this.store.eval('storing the circuit breaker', COMPARE_AND_SET, [BREAKERS], [field, raw, JSON.stringify(next)], 1);
      if (Number(done) === 1) return next;
    }
    throw new LockBusyError(`the circuit breaker of ${key.env} in ${this.location} kept changing under us`);
  }

  async takeProbe(key: BreakerKey, token: string, leaseMs: number): Promise<boolean> {
    const probeKey = `${PREFIX}breaker-probe:${breakerKeyString(key)}`;
    const taken = await this.store.call('taking the probe slot', (c) => c.set(probeKey, token, 'PX', Math.max(1, Math.round(leaseMs)), 'NX'), null);
    if (taken !== 'OK') return false;
    // Another run's probe may have ended (closing or re-opening it) between our read and the slot.
    if (stateAt(await this.read(key), Date.now()) === 'half-open') return true;
    await this.releaseProbe(key, token);
    return false;
  }

  async releaseProbe(key: BreakerKey, token: string): Promise<void> {
    await this.store.eval('releasing the probe slot', RELEASE_LOCK, [`${PREFIX}breaker-probe:${breakerKeyString(key)}`], [token], 0);
  }
}
