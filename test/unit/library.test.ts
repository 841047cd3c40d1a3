/**
 * The library's core pieces driven directly (no CLI): SessionManager (cold start, reuse, adoption,
 * 402, login, orphan logout), Pusher (conflicts, recovery after a lost answer) and the exporter
 * (paging, order under concurrency, a lost entity set). Against the real emulator and real stores in
 * temporary directories: nothing we own is faked (the house rule), so these are the real behaviours.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthError, SessionLimitError } from '../../src/errors/index.js';
import { RestClient } from '../../src/rest/index.js';
import { silentLogger } from '../../src/log/index.js';
import { AuditLog } from '../../src/push/audit.js';
import { Pusher } from '../../src/push/index.js';
import { SessionStore } from '../../src/session/store.js';
import { exportRows } from '../../src/table/paging/read.js';
import { planExport } from '../../src/table/plan/plan.js';
import { scanServer } from '../../src/sync/reconcile.js';
import { SqliteSyncStore } from '../../src/sync/sqlite.js';
import { join } from 'node:path';
import { startEmulator, type EmulatorOptions, type RunningEmulator } from '../../src/emulator/index.js';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';

let emu: RunningEmulator | undefined;
afterEach(async () => {
  await emu?.stop();
  emu = undefined;
});
afterAll(cleanupTempDirs);

const start = async (options: EmulatorOptions = {}) => (emu = await startEmulator({ host: '127.0.0.1', port: 0, quiet: true, ...options }));

/** A client as the CLI makes it, on a given session store directory. */
function client(url: string, dir: string, extra: Partial<ConstructorParameters<typeof RestClient>[0]> = {}): RestClient {
  return new RestClient({
    baseUrl: url,
    envName: 'unit',
    sessionName: 'default',
    store: new SessionStore(dir, silentLogger),
    timeoutMs: 10_000,
    retries: 2,
    idleMinutes: 60,
    licenceRetries: 3,
    licenceWaitMs: 600,
    logger: silentLogger,
    backoffMs: 10,
    ...extra,
  });
}

const info = (c: RestClient) => c.send({ method: 'GET', url: c.url({ kind: 'info' }), idempotent: true });

describe('SessionManager', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('legacy-unit-session-');
  });

  it('a cold start creates one session and stores it; the next client reuses it without a round trip', async () => {
    const e = await start();
    const first = client(e.url, dir);
    expect((await info(first)).status).toBe(200);
    expect(first.session.outcome()).toBe('created');
    await first.close();
    const second = client(e.url, dir);
    expect((await info(second)).status).toBe(200);
    expect(second.session.outcome()).toBe('reused');
    expect(second.session.events.created).toBe(0);
    await second.close();
    expect(e.stats().sessionsCreated).toBe(1);
    expect(e.stats().requestsWithoutCookie).toBe(1);
  });

  it('a session the server replaced is adopted and stored', async () => {
    const e = await start();
    const a = client(e.url, dir);
    await info(a);
    const before = a.session.current()!.cookies.WASID4D;
    await a.close();
    e.control.expireSessions();
    const b = client(e.url, dir);
    expect((await info(b)).status).toBe(200);
    expect(b.session.outcome()).toBe('replaced');
    await b.close();
    const stored = (await new SessionStore(dir, silentLogger).list())[0]!;
    expect(stored.cookies.WASID4D).not.toBe(before);
    expect(stored.cookies.WASID4D).toBe(b.session.current()!.cookies.WASID4D);
  });

  it('402: waits with backoff, never opens another session, and gives up with SessionLimitError', async () => {
    const e = await start({ maxSessions: 1 });
    e.control.occupy(1);
    const c = client(e.url, dir);
    await expect(info(c)).rejects.toBeInstanceOf(SessionLimitError);
    expect(c.session.events.licenceWaits).toBeGreaterThan(0);
    expect(e.stats().rejected402).toBe(c.session.events.licenceWaits + 1);
    // A licence comes free during the wait: the same request succeeds.
    const d = client(e.url, dir, { licenceWaitMs: 5_000, licenceRetries: 8 });
    const pending = info(d);
    setTimeout(() => e.control.releaseOccupied(), 150);
    expect((await pending).status).toBe(200);
    expect(d.session.outcome()).toBe('created');
    await Promise.all([c.close(), d.close()]);
  });

  it('login: required and missing → AuthError; given → one login, then reused', async () => {
    const e = await start({ auth: { user: 'erp', password: 'pw-unit' } });
    await expect(info(client(e.url, dir))).rejects.toBeInstanceOf(AuthError);
    const c = client(e.url, dir, { credentials: { username: 'erp', password: 'pw-unit' } });
    expect((await info(c)).status).toBe(200);
    expect(c.session.events.logins).toBe(1);
    await c.close();
    const again = client(e.url, dir, { credentials: { username: 'erp', password: 'pw-unit' } });
    await info(again);
    expect(again.session.events.logins).toBe(0);
    await again.close();
    expect(e.stats().logins).toBe(1);
  });

  it('concurrent requests across an expiry: one replacement adopted, the extra ones logged out', async () => {
    const e = await start({ maxSessions: 20, latencyMs: 30 });
    const c = client(e.url, dir);
    await info(c);
    e.control.expireSessions();
    const answers = await Promise.all(Array.from({ length: 6 }, () => info(c)));
    for (const r of answers) expect(r.status).toBe(200);
    await c.close();
    expect(c.session.events.adopted).toBe(1);
    expect(c.session.events.orphansReleased).toBe(e.stats().logouts);
    expect(e.stats().liveSessions).toBe(1);
  });
});

describe('Pusher', () => {
  it('someone else changed the same field: conflict, their value stays; another field: retried with the new stamp', async () => {
    const e = await start({ data: new URL('../fixtures/small.json', import.meta.url).pathname });
    const c = client(e.url, tempDir('legacy-unit-push-'));
    const dc = await c.dataClass('Teile');
    const pusher = new Pusher(c, dc, { type: 'auto', logger: silentLogger, audit: new AuditLog(tempDir('legacy-unit-audit-')), env: 'unit' });
    e.control.beforeUpdate('Teile', '1', { Preis: 99 });
    const [conflict] = await pusher.push([{ key: '1', fields: { Preis: '41' } }]);
    expect(conflict!.result).toBe('conflict');
    expect(e.control.getRow('Teile', '1')!.Preis).toBe(99);
    e.control.beforeUpdate('Teile', '2', { Name: 'anders' });
    const [retried] = await pusher.push([{ key: '2', fields: { Preis: '7' } }]);
    expect(retried!.result).toBe('updated');
    expect(e.control.getRow('Teile', '2')).toMatchObject({ Preis: 7, Name: 'anders' });
    await c.close();
  });

  it('a lost answer after the server saved: re-read, reported updated, never written twice', async () => {
    const e = await start({ data: new URL('../fixtures/small.json', import.meta.url).pathname });
    const c = client(e.url, tempDir('legacy-unit-push-'));
    const pusher = new Pusher(c, await c.dataClass('Teile'), {
      type: 'auto',
      logger: silentLogger,
      audit: new AuditLog(tempDir('legacy-unit-audit-')),
      env: 'unit',
    });
    e.control.queueFaults([{ kind: 'reset-after-update', match: 'update', count: 1 }]);
    const [r] = await pusher.push([{ key: '3', fields: { Preis: '13' } }]);
    expect(r!.result).toBe('updated');
    expect(e.stats().updates).toBe(1);
    expect(e.control.getRow('Teile', '3')!.Preis).toBe(13);
    await c.close();
  });
});

describe('exporter', () => {
  const keysOf = async (c: RestClient, options: Parameters<typeof planExport>[1]) => {
    const plan = await planExport(c, options);
    const keys: unknown[] = [];
    const pages: number[] = [];
    for await (const rows of exportRows(c, plan, { logger: silentLogger })) {
      pages.push(rows.length);
      for (const r of rows) keys.push(r[0]);
    }
    return { keys, pages };
  };

  it('pages of a stored set, fetched four at a time with jittery latency, come out in key order', async () => {
    const e = await start({ rows: { Kunden: 1000 }, latencyMs: 5 });
    const c = client(e.url, tempDir('legacy-unit-export-'));
    const { keys, pages } = await keysOf(c, { table: 'Kunden', fields: ['KundenNr'], pageSize: 90, concurrency: 4 });
    expect(keys).toHaveLength(1000);
    expect(keys).toEqual([...keys].sort((a, b) => Number(a) - Number(b)));
    expect(pages.length).toBe(Math.ceil(1000 / 90));
    const plain = await keysOf(c, { table: 'Kunden', fields: ['KundenNr'], pageSize: 90, concurrency: 1, entitySet: false, skip: 10, limit: 25 });
    expect(plain.keys).toEqual(keys.slice(10, 35));
    await c.close();
  });

  it('the server loses the set mid-export: it is recreated from $savedfilter and the export stays exact', async () => {
    const e = await start({ rows: { Kunden: 400 }, faults: { expireEvery: 5 } });
    const c = client(e.url, tempDir('legacy-unit-export-'));
    const { keys } = await keysOf(c, { table: 'Kunden', fields: ['KundenNr'], where: ['KundenNr>=10100'], pageSize: 30, concurrency: 1 });
    expect(keys).toEqual(Array.from({ length: 301 }, (_, i) => 10_100 + i));
    expect(e.stats().faults.expire).toBeGreaterThan(0);
    await c.close();
  });
});

describe('reconcile scan', () => {
  it('a key scan across a rebuilt entity set is reported as not a consistent snapshot', async () => {
    const e = await start({ rows: { Kunden: 25_000 }, maxSessions: 10 });
    const c = client(e.url, tempDir('legacy-unit-scan-'));
    const store = SqliteSyncStore.open(join(tempDir('legacy-unit-scan-'), 's.sqlite'));
    try {
      await store.migrate();
      await store.ensureTable('Kunden', 'KundenNr', [{ name: 'KundenNr', sqlType: 'INTEGER' }], 'INTEGER');
      const scan = await store.beginStampScan('Kunden', 'KundenNr');
      let pages = 0;
      // After the first page: rows deleted and inserted (same count), and the session (with its set) gone.
      const watched = {
        ...scan,
        add: async (rows: Array<[unknown, unknown]>) => {
          await scan.add(rows);
          if (pages++ === 0) {
            e.control.mutate({ table: 'Kunden', delete: 3, insert: 3 });
            e.control.expireSessions();
          }
        },
      };
      const dc = await c.dataClass('Kunden');
      const why = await scanServer(c, dc, dc.attributes.find((a) => a.name === 'KundenNr')!, watched, { logger: silentLogger, concurrency: 1 });
      expect(pages).toBe(3);
      expect(why).toMatch(/replaced the session/);
      // An undisturbed scan is a consistent snapshot.
      const again = await store.beginStampScan('Kunden', 'KundenNr');
      expect(await scanServer(c, dc, dc.attributes.find((a) => a.name === 'KundenNr')!, again, { logger: silentLogger, concurrency: 1 })).toBeUndefined();
    } finally {
      await store.close();
      await c.close();
    }
  });
});

describe('sync values into SQL', () => {
  it('a bigint beyond 2^53 is bound as the 64-bit integer it is, never rounded; within 2^53 as a number', async () => {
    const { toSql } = await import('../../src/sync/store.js');
    expect(toSql(2n ** 60n + 1n)).toBe(1152921504606846977n);
    expect(toSql(42n)).toBe(42);
  });
});
