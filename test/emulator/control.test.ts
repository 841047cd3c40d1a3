/** The HTTP control API under /__emulator/: never a session, never REST traffic; JSON in and out. */
import { describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, useEmulator } from './helpers.js';

let emu: RunningEmulator;
let c: Client;
useEmulator({ rows: { Kunden: 50 } }, (e, client) => {
  emu = e;
  c = client;
});

/** Calls the control API; returns [status, json]. */
async function ctl(path: string, body?: unknown, method?: string): Promise<[number, any]> {
  const res = await fetch(`${emu.url}/__emulator/${path}`, {
    method: method ?? (body === undefined ? 'GET' : 'POST'),
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  expect(res.headers.get('content-type')).toBe('application/json; charset=UTF-8');
  expect(res.headers.get('set-cookie')).toBeNull();
  return [res.status, await res.json()];
}

describe('read-only operations', () => {
  it('stats, sessions and tables; control calls are not REST requests and make no session', async () => {
    for (let i = 0; i < 5; i++) await ctl('stats');
    const [, stats] = await ctl('stats');
    expect(stats).toMatchObject({ requests: 0, sessionsCreated: 0, liveSessions: 0, faults: { '500': 0, expire: 0 } });
    await c.get('/rest/$info');
    const [, sessions] = await ctl('sessions');
    expect(sessions).toEqual([
      {
        id: c.sessionId,
        createdAt: expect.any(String),
        lastUsedAt: expect.any(String),
        expiresAt: expect.any(String),
        userName: '',
        occupied: false,
        guest: false,
      },
    ]);
    const [, tables] = await ctl('tables');
    expect(tables.find((t: { name: string }) => t.name === 'Kunden')).toEqual({ name: 'Kunden', count: 50 });
  });

  it('row/{table}/{key} renders like the REST API; 404 when missing', async () => {
    const [status, row] = await ctl('row/Kunden/10001');
    expect(status).toBe(200);
    expect(row).toEqual(await c.ok('/rest/Kunden(10001)'));
    expect((await ctl('row/Kunden/1'))[0]).toBe(404);
    expect((await ctl('row/Nope/1'))[0]).toBe(404);
    expect((await ctl(`row/Kunden/${encodeURIComponent('10002')}`))[1].__KEY).toBe('10002');
  });

  it('unknown operations → 404; bad bodies → 400', async () => {
    expect((await ctl('nope'))[0]).toBe(404);
    expect((await ctl('occupy', { count: -1 }))[0]).toBe(400);
    expect((await ctl('options', { maxSessions: 'many' }))[0]).toBe(400);
    expect((await ctl('options', { host: '0.0.0.0' }))[0]).toBe(400);
    expect((await ctl('faults', { queue: [{ kind: 'explode' }] }))[0]).toBe(400);
    for (const bad of [
      { urlDecoding: 'raw' },
      { ignoreFilters: 'yes' },
      { savedFilterWithoutParams: 1 },
      { lifeTimeUnit: 'hours' },
      { strictDateCompare: 'maybe' },
    ]) {
      expect((await ctl('options', bad))[0], JSON.stringify(bad)).toBe(400);
    }
    const res = await fetch(`${emu.url}/__emulator/mutate`, { method: 'POST', body: '{oops' });
    expect(res.status).toBe(400);
  });
});

describe('changing state', () => {
  it('options apply at runtime', async () => {
    expect(await ctl('options', { maxSessions: 1, latencyMs: 0, scalable: false })).toEqual([200, { ok: true }]);
    const r = await c.get('/rest/$info');
    expect(r.setCookies).toHaveLength(1);
    expect((await new Client(emu).get('/rest/$info')).status).toBe(402);
  });

  it('expire-sessions, occupy and release-occupied', async () => {
    await c.get('/rest/$info');
    expect(await ctl('expire-sessions', {})).toEqual([200, { expired: 1 }]);
    expect(await ctl('occupy', { count: 3 })).toEqual([200, { occupied: 3 }]);
    expect((await new Client(emu).get('/rest/$info')).status).toBe(402);
    expect(await ctl('release-occupied', {})).toEqual([200, { released: 3 }]);
    expect((await new Client(emu).get('/rest/$info')).status).toBe(200);
  });

  it('the server variants can be switched at runtime', async () => {
    const body = { urlDecoding: 'split', ignoreFilters: true, savedFilterWithoutParams: true, lifeTimeUnit: 'seconds', strictDateCompare: 'reject' };
    expect(await ctl('options', body)).toEqual([200, { ok: true }]);
    expect((await c.ok('/rest/Kunden?$top=1&$top=3')).__SENT).toBe(1); // split: the first wins
    expect((await c.ok('/rest/Kunden?$filter="KundenNr=10001"&$top=0')).__COUNT).toBe(50); // filter dropped
    expect((await c.ok('/rest/$info')).sessionInfo[0].lifeTime).toBe(3600);
    await ctl('reset', {});
    expect((await c.ok('/rest/Kunden?$top=1&$top=3')).__SENT).toBe(3);
    expect((await c.ok('/rest/Kunden?$filter="KundenNr=10001"&$top=0')).__COUNT).toBe(1);
  });

  it('faults queue and DELETE faults', async () => {
    expect(await ctl('faults', { queue: [{ kind: '503', match: 'read', count: 2 }] })).toEqual([200, { queued: 1 }]);
    expect((await c.get('/rest/Kunden?$top=1')).status).toBe(503);
    expect(await ctl('faults', undefined, 'DELETE')).toEqual([200, { ok: true }]);
    expect((await c.get('/rest/Kunden?$top=1')).status).toBe(200);
    expect(await ctl('faults', { queue: [{ kind: '4d503' }, { kind: '4d500' }] })).toEqual([200, { queued: 2 }]);
    expect((await c.get('/rest/Kunden?$top=1')).status).toBe(503);
    expect((await c.get('/rest/Kunden?$top=1')).json.__ERROR[0].errCode).toBe(1000);
    expect((await ctl('stats'))[1].faults).toMatchObject({ '503': 1, '4d503': 1, '4d500': 1 });
  });

  it('reset: sessions, stats, data and faults back to the start', async () => {
    await c.get('/rest/$info');
    await ctl('mutate', { table: 'Kunden', insert: 5, delete: 5 });
    await ctl('options', { faults: { rate: 1, kinds: ['503'] }, maxSessions: 9 });
    await ctl('reset', {});
    const [, stats] = await ctl('stats');
    expect([stats.requests, stats.sessionsCreated, stats.liveSessions]).toEqual([0, 0, 0]);
    expect((await ctl('tables'))[1].find((t: { name: string }) => t.name === 'Kunden').count).toBe(50);
    expect((await c.get('/rest/Kunden?$top=1')).status).toBe(200);
  });
});

describe('mutate and row', () => {
  it('mutate updates, inserts and deletes like ERP users; returns the keys', async () => {
    const before = (await c.ok('/rest/Kunden?$top=-1')).__ENTITIES as Array<Record<string, any>>;
    const [status, out] = await ctl('mutate', { table: 'Kunden', update: 3, insert: 2, delete: 4, seed: 5 });
    expect(status).toBe(200);
    expect([out.updated.length, out.inserted.length, out.deleted.length]).toEqual([3, 2, 4]);
    expect(new Set([...out.updated, ...out.deleted]).size).toBe(7);
    const now = new Date();
    const today = `${now.getUTCDate()}!${now.getUTCMonth() + 1}!${now.getUTCFullYear()}`;
    for (const key of out.updated) {
      const old = before.find((e) => e.__KEY === key)!;
      const cur = await c.ok(`/rest/Kunden(${key})`);
      expect(cur.__STAMP).toBe(old.__STAMP + 1);
      expect(cur.Firma).not.toBe(old.Firma);
      expect(cur.Kreditlimit).not.toBe(old.Kreditlimit);
      expect(cur.modified_date).toBe(today);
      expect(Date.parse(cur.__TIMESTAMP)).toBeGreaterThan(Date.parse(old.__TIMESTAMP));
    }
    for (const key of out.deleted) expect((await c.get(`/rest/Kunden(${key})`)).status).toBe(404);
    expect(out.inserted).toEqual(['10051', '10052']);
    const ins = await c.ok('/rest/Kunden(10052)');
    expect(ins).toMatchObject({ __STAMP: 1, created_date: today, modified_date: null });
    expect((await c.ok('/rest/Kunden?$top=0')).__COUNT).toBe(48);
  });

  it('mutate is reproducible with a seed and works on 32-hex key tables', async () => {
    const [, a] = await ctl('mutate', { table: 'Artikel', update: 5, delete: 2, seed: 9 });
    await ctl('reset', {});
    const [, b] = await ctl('mutate', { table: 'Artikel', update: 5, delete: 2, seed: 9 });
    expect(b).toEqual(a);
    const [, ins] = await ctl('mutate', { table: 'Artikel', insert: 1 });
    expect(ins.inserted[0]).toMatch(/^[0-9A-F]{32}$/);
    expect((await ctl('mutate', { table: 'Nope', update: 1 }))[0]).toBe(404);
    expect((await ctl('mutate', { table: 'Kunden', delete: 51 }))[0]).toBe(400);
  });

  it('row: one change as another user (stamp + 1 even for the same value); bad attributes → 400', async () => {
    const old = await c.ok('/rest/Kunden(10003)');
    const [status, row] = await ctl('row', { table: 'Kunden', key: '10003', set: { Ort: old.Ort, Kunde_seit: '2020-02-29' } });
    expect(status).toBe(200);
    expect(row).toMatchObject({ __entityModel: 'Kunden', __KEY: '10003', __STAMP: old.__STAMP + 1, Ort: old.Ort, Kunde_seit: '29!2!2020' });
    expect((await ctl('row', { table: 'Kunden', key: '10003', set: { Nope: 1 } }))[0]).toBe(400);
    expect((await ctl('row', { table: 'Kunden', key: '10003', set: { KundenNr: 1 } }))[0]).toBe(400);
    expect((await ctl('row', { table: 'Kunden', key: '1', set: {} }))[0]).toBe(404);
  });

  it('before-update: a one-shot change right before the next update of that row', async () => {
    const old = await c.ok('/rest/Kunden(10004)');
    expect(await ctl('before-update', { table: 'Kunden', key: '10004', set: { Ort: 'Radebeul' } })).toEqual([200, { pending: 1 }]);
    expect((await c.ok('/rest/Kunden(10004)')).__STAMP).toBe(old.__STAMP); // nothing yet
    const r = await c.post('/rest/Kunden?$method=update', { __KEY: '10004', __STAMP: old.__STAMP, Telefon: '0351 1234' });
    expect(r.status).toBe(500);
    expect(r.json).toMatchObject({ __STAMP: old.__STAMP + 1, Ort: 'Radebeul' });
    const again = await c.post('/rest/Kunden?$method=update', { __KEY: '10004', __STAMP: old.__STAMP + 1, Telefon: '0351 1234' });
    expect(again.status).toBe(200);
    expect((await ctl('before-update', { table: 'Kunden', key: '1', set: {} }))[0]).toBe(404);
  });
});
