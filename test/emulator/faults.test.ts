/** Fault injection on data requests: each kind, queued one-shots, seeded random faults, expiry, latency. */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import type { FaultKind, RunningEmulator } from '../../src/emulator/index.js';
import { Client, useEmulator } from './helpers.js';

let emu: RunningEmulator;
let c: Client;
useEmulator(
  { rows: { Artikel: 2000 } },
  (e, client) => {
    emu = e;
    c = client;
  },
  (_e, client) => client.get('/rest/$info'), // hold a session
);

type Outcome = { kind: 'ok' | 'status' | 'reset' | 'truncated'; status?: number; body?: string; contentType?: string; ms: number };

/** One request on a fresh connection, classified: answered, reset before the head, or cut after it. */
function attempt(path: string, method = 'GET', body?: unknown): Promise<Outcome> {
  const started = Date.now();
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: emu.port,
        path,
        method,
        agent: false,
        headers: { cookie: c.cookie!, ...(payload ? { 'content-length': payload.length } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('error', () => resolve({ kind: 'truncated', status: res.statusCode, ms: Date.now() - started }));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const ok = res.statusCode === 200;
          resolve({ kind: ok ? 'ok' : 'status', status: res.statusCode, body: text, contentType: res.headers['content-type'], ms: Date.now() - started });
        });
      },
    );
    req.on('error', () => resolve({ kind: 'reset', ms: Date.now() - started }));
    if (payload) req.write(payload);
    req.end();
  });
}

const read = () => attempt('/rest/Artikel?$top=200');
const stamp = async (key: string) => (await c.ok(`/rest/Kunden(${key})`)).__STAMP as number;

describe('each fault kind', () => {
  it("'500': an HTML body, not a 4D __ERROR, so clients can tell it from a query error", async () => {
    emu.control.queueFaults([{ kind: '500' }]);
    const r = await read();
    expect(r.status).toBe(500);
    expect(r.contentType).toMatch(/^text\/html/);
    expect(r.body).not.toContain('__ERROR');
    expect((await read()).kind).toBe('ok');
  });

  it("'503': plain text", async () => {
    emu.control.queueFaults([{ kind: '503' }]);
    const r = await read();
    expect([r.status, r.contentType]).toEqual([503, 'text/plain; charset=UTF-8']);
  });

  it("'4d500' and '4d503': the 4D server's own transient failure, a JSON __ERROR with errCode 1000", async () => {
    emu.control.queueFaults([{ kind: '4d500' }, { kind: '4d503' }]);
    const a = await read();
    expect([a.status, a.contentType]).toEqual([500, 'application/json; charset=UTF-8']);
    expect(JSON.parse(a.body!)).toEqual({ __ERROR: [{ message: 'Error processing the REST request', componentSignature: 'dbmg', errCode: 1000 }] });
    const b = await read();
    expect([b.status, b.contentType]).toEqual([503, 'application/json; charset=UTF-8']);
    expect(JSON.parse(b.body!)).toEqual({ __ERROR: [{ message: 'Service temporarily unavailable', componentSignature: 'dbmg', errCode: 1000 }] });
    expect((await read()).kind).toBe('ok');
    expect(emu.stats().faults).toMatchObject({ '4d500': 1, '4d503': 1, '500': 0, '503': 0 });
  });

  it("'4d500'/'4d503' are opt-in: random faults use them only when named in kinds", async () => {
    emu.control.setOptions({ faults: { rate: 1 } });
    for (let i = 0; i < 20; i++) await read();
    expect(emu.stats().faults).toMatchObject({ '4d500': 0, '4d503': 0 });
    emu.control.setOptions({ faults: { rate: 1, kinds: ['4d500', '4d503'] } });
    const statuses = new Set<number | undefined>();
    for (let i = 0; i < 20; i++) {
      const r = await read();
      expect(r.contentType).toBe('application/json; charset=UTF-8');
      statuses.add(r.status);
    }
    expect([...statuses].sort()).toEqual([500, 503]);
    const f = emu.stats().faults;
    expect(f['4d500'] + f['4d503']).toBe(20);
  });

  it("'reset': the connection drops before any answer", async () => {
    emu.control.queueFaults([{ kind: 'reset' }]);
    expect((await read()).kind).toBe('reset');
  });

  it("'truncate': a correct Content-Length, half the body, then the connection drops", async () => {
    emu.control.queueFaults([{ kind: 'truncate' }]);
    const r = await read();
    expect(r).toMatchObject({ kind: 'truncated', status: 200 });
  });

  it("'slow': answers normally after slowMs", async () => {
    emu.control.setOptions({ faults: { slowMs: 300 } });
    emu.control.queueFaults([{ kind: 'slow' }]);
    const r = await read();
    expect(r.kind).toBe('ok');
    expect(r.ms).toBeGreaterThanOrEqual(290);
  });

  it("'reset' on an update drops the connection before applying it", async () => {
    const s = await stamp('10001');
    emu.control.queueFaults([{ kind: 'reset', match: 'update' }]);
    expect((await read()).kind).toBe('ok'); // reads are not matched
    expect((await attempt('/rest/Kunden?$method=update', 'POST', { __KEY: '10001', __STAMP: s, Ort: 'Wien' })).kind).toBe('reset');
    expect(await stamp('10001')).toBe(s);
    expect(emu.stats().updates).toBe(0);
  });

  it("'reset-after-update' applies the update, then drops the connection without answering", async () => {
    const s = await stamp('10001');
    emu.control.queueFaults([{ kind: 'reset-after-update' }]); // match 'any', but it only fires on updates
    expect((await read()).kind).toBe('ok');
    expect((await attempt('/rest/Kunden?$method=update', 'POST', { __KEY: '10001', __STAMP: s, Ort: 'Wien' })).kind).toBe('reset');
    expect(await stamp('10001')).toBe(s + 1);
    expect(emu.stats().updates).toBe(1);
    expect(emu.stats().faults['reset-after-update']).toBe(1);
  });
});

describe('where faults apply', () => {
  it('never on $info, $catalog, $directory or the control API; counts go to stats.faults', async () => {
    emu.control.setOptions({ faults: { rate: 1, kinds: ['503'] } });
    for (const path of ['/rest/$info', '/rest/$catalog', '/rest/$catalog/Artikel', '/rest/$directory/currentUser', '/__emulator/stats']) {
      expect((await attempt(path)).status, path).toBe(200);
    }
    for (const path of ['/rest/Artikel?$top=1', '/rest/Artikel(1)', '/rest/Artikel/$entityset/X']) {
      expect((await attempt(path)).status, path).toBe(503);
    }
    expect(emu.stats().faults['503']).toBe(3);
  });

  it('queued faults fire in order on matching requests, count times, before random ones; DELETE clears', async () => {
    emu.control.queueFaults([
      { kind: '503', match: 'read', count: 2 },
      { kind: '500', match: 'any' },
    ]);
    expect((await read()).status).toBe(503);
    expect((await read()).status).toBe(503);
    expect((await read()).status).toBe(500);
    expect((await read()).status).toBe(200);
    emu.control.queueFaults([{ kind: '503' }]);
    emu.control.clearFaults();
    expect((await read()).status).toBe(200);
  });
});

describe('random faults', () => {
  async function run(seed: number): Promise<string[]> {
    emu.control.reset();
    c = new Client(emu);
    await c.get('/rest/$info');
    emu.control.setOptions({ faults: { rate: 0.3, kinds: ['500', '503', 'reset', 'truncate'], seed } });
    const out: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await read();
      out.push(r.kind === 'ok' ? 'ok' : r.kind === 'status' ? String(r.status) : r.kind);
    }
    return out;
  }

  it('are reproducible with a seed, differ with another, and hit roughly the rate', async () => {
    const a = await run(42);
    const b = await run(42);
    const other = await run(43);
    expect(b).toEqual(a);
    expect(other).not.toEqual(a);
    const faults = a.filter((x) => x !== 'ok').length;
    expect(faults).toBeGreaterThan(3);
    expect(faults).toBeLessThan(25);
    expect([...new Set(a)].sort()).toEqual(['500', '503', 'ok', 'reset', 'truncated']);
  });
});

describe('forced session expiry and latency', () => {
  it('expireEvery=N expires the requesting session on every Nth data request (silently replaced)', async () => {
    emu.control.setOptions({ faults: { expireEvery: 3 } });
    const ids = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const r = await c.get('/rest/Artikel?$top=1');
      expect(r.status).toBe(200);
      ids.add(c.sessionId!);
    }
    expect(emu.stats().faults.expire).toBe(3);
    expect(ids.size).toBe(4);
    expect(emu.stats().liveSessions).toBe(1);
  });

  it('latencyMs delays every /rest response, not the control API', async () => {
    // A latency far above what a busy machine adds, so the two cannot be confused.
    emu.control.setOptions({ latencyMs: 1500 });
    const t0 = Date.now();
    await c.get('/rest/$info');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1490);
    const t1 = Date.now();
    await attempt('/__emulator/stats');
    expect(Date.now() - t1).toBeLessThan(1000);
  });

  it('reset turns faults off', async () => {
    emu.control.setOptions({ faults: { rate: 1, kinds: ['503' as FaultKind], expireEvery: 1 } });
    emu.control.reset();
    c = new Client(emu);
    expect((await c.get('/rest/Artikel?$top=1')).status).toBe(200);
    expect((await c.get('/rest/Artikel?$top=1')).setCookies).toEqual([]);
  });
});
