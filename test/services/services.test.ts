/** The test harness's real redis-server and PostgreSQL: they start, serve, run unprivileged, and stop. */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startPostgres, startRedis } from '../helpers/services.mjs';

const redis = await startRedis();
const postgres = await startPostgres();
afterAll(async () => {
  await redis?.stop();
  await postgres?.stop();
});

/** Real uid of a process, from /proc. */
function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function query(url: string, sql: string, params: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end();
  }
}

const asRoot = process.getuid?.() === 0;

describe.skipIf(!redis)('redis-server', () => {
  it('serves SET/GET on loopback', async () => {
    expect(redis!.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = new Redis(redis!.url);
    try {
      await client.set('greeting', 'héllo');
      expect(await client.get('greeting')).toBe('héllo');
    } finally {
      client.disconnect();
    }
  });

  it.runIf(asRoot)('runs as a non-root user', () => {
    expect(uidOf(redis!.pid)).not.toBe(0);
  });

  it('stop() frees the port', async () => {
    const other = (await startRedis())!;
    expect(await portIsFree(other.port)).toBe(false);
    await other.stop();
    expect(await portIsFree(other.port)).toBe(true);
  });
});

describe.skipIf(!postgres)('PostgreSQL', () => {
  it('serves queries as user legacy on database legacy', async () => {
    expect(postgres!.url).toMatch(/^postgres:\/\/legacy@127\.0\.0\.1:\d+\/legacy$/);
    const [row] = await query(postgres!.url, 'select 1 as one, current_user as who, current_database() as db');
    expect(row).toEqual({ one: 1, who: 'legacy', db: 'legacy' });
  });

  it('newDatabase() gives a fresh, isolated database', async () => {
    const a = await postgres!.newDatabase();
    const b = await postgres!.newDatabase();
    expect(a).not.toBe(b);
    await query(a, 'create table t (x int)');
    await query(a, 'insert into t values (42)');
    expect(await query(a, 'select x from t')).toEqual([{ x: 42 }]);
    expect(await query(b, "select count(*)::int as n from pg_tables where schemaname = 'public'")).toEqual([{ n: 0 }]);
    expect(await query(postgres!.url, "select count(*)::int as n from pg_tables where schemaname = 'public'")).toEqual([{ n: 0 }]);
  });

  it.runIf(asRoot)('runs as a non-root user (postmaster and backends)', async () => {
    expect(uidOf(postgres!.pid)).not.toBe(0);
    // Check the backend serving a connection while that connection is still open.
    const client = new pg.Client({ connectionString: postgres!.url });
    await client.connect();
    try {
      const { rows } = await client.query('select pg_backend_pid() as pid');
      expect(uidOf(rows[0].pid)).not.toBe(0);
    } finally {
      await client.end();
    }
  });

  it('stop() frees the port', async () => {
    const other = (await startPostgres())!;
    expect(await portIsFree(other.port)).toBe(false);
    await other.stop();
    expect(await portIsFree(other.port)).toBe(true);
  });
});
