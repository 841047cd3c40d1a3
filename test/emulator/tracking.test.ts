/**
 * Data change tracking (option `changeTracking`, issue 14): `__GlobalStamp` per tracked entity and in the
 * envelope, `__DeletedRecords`, one global counter per datastore, and the control API's `mutate` dates option.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCliArgs } from '../../src/emulator/cli.js';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { interleavedStamps } from '../../src/emulator/tracking.js';
import { Client, errCodes, jsonParams, quoted, startTestEmulator, useEmulator } from './helpers.js';

const ROWS = { Kunden: 20, Belege: 10, Artikel: 30 };
const TRACKED_ROWS = ROWS.Kunden + ROWS.Belege;

let emu: RunningEmulator;
let c: Client;
useEmulator({ rows: ROWS, changeTracking: ['Kunden', 'Belege'] }, (e, client) => {
  emu = e;
  c = client;
});

type Entity = Record<string, any>;

/** The envelope's `__GlobalStamp` (the current counter). */
async function globalStamp(table = 'Kunden'): Promise<number> {
  return (await c.ok(`/rest/${table}?$top=0`)).__GlobalStamp;
}

async function all(table: string, query = ''): Promise<Entity[]> {
  return (await c.ok(`/rest/${table}?$top=-1${query}`)).__ENTITIES;
}

/** Keys of the rows of `table` with `__GlobalStamp >= stamp`. */
async function changedSince(table: string, stamp: number): Promise<string[]> {
  const page = await c.ok(`/rest/${table}?$top=-1&$filter=${quoted('__GlobalStamp >= :1')}&$params=${jsonParams([stamp])}&$orderby=${quoted('__GlobalStamp')}`);
  return page.__ENTITIES.map((e: Entity) => e.__KEY);
}

async function deletedSince(table: string, stamp: number): Promise<Entity[]> {
  const filter = quoted('__Stamp >= :1 AND __TableName = :2');
  return (await c.ok(`/rest/__DeletedRecords?$top=-1&$filter=${filter}&$params=${jsonParams([stamp, table])}`)).__ENTITIES;
}

async function ctl(path: string, body: unknown): Promise<[number, any]> {
  const res = await fetch(`${emu.url}/__emulator/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return [res.status, await res.json()];
}

describe('catalog', () => {
  it('a tracked table lists __GlobalStamp after its storage attributes; others do not', async () => {
    const kunden = await c.ok('/rest/$catalog/Kunden');
    const attrs = kunden.attributes as Entity[];
    const storage = attrs.filter((a) => a.kind === 'storage');
    const gs = attrs.find((a) => a.name === '__GlobalStamp');
    expect(gs).toEqual({ name: '__GlobalStamp', kind: 'storage', fieldPos: storage.length, scope: 'public', indexed: true, type: 'long64' });
    expect(storage.at(-1)).toBe(gs);
    expect(attrs.indexOf(gs!)).toBe(storage.length - 1); // relations come after it
    expect(Object.keys(gs!)).toEqual(['name', 'kind', 'fieldPos', 'scope', 'indexed', 'type']);
    const artikel = await c.ok('/rest/$catalog/Artikel');
    expect(artikel.attributes.some((a: Entity) => a.name === '__GlobalStamp')).toBe(false);
    const everything = await c.ok('/rest/$catalog/$all');
    const tracked = everything.dataClasses.filter((dc: Entity) => dc.attributes.some((a: Entity) => a.name === '__GlobalStamp')).map((dc: Entity) => dc.name);
    expect(tracked).toEqual(['Kunden', 'Belege']);
  });

  it('__DeletedRecords is the last dataclass: ID (long64 key) and the four fields', async () => {
    const list = await c.ok('/rest/$catalog');
    expect(list.dataClasses.at(-1)).toEqual({ name: '__DeletedRecords', uri: '/rest/$catalog/__DeletedRecords', dataURI: '/rest/__DeletedRecords' });
    const dr = await c.ok('/rest/$catalog/__DeletedRecords');
    expect(dr).toMatchObject({ name: '__DeletedRecords', tableNumber: 7, key: [{ name: 'ID' }] });
    expect(dr.attributes).toEqual([
      { name: 'ID', kind: 'storage', fieldPos: 1, scope: 'public', indexed: true, type: 'long64', identifying: true },
      { name: '__PrimaryKey', kind: 'storage', fieldPos: 2, scope: 'public', type: 'string' },
      { name: '__Stamp', kind: 'storage', fieldPos: 3, scope: 'public', indexed: true, type: 'long64' },
      { name: '__TableName', kind: 'storage', fieldPos: 4, scope: 'public', type: 'string' },
      { name: '__TableNumber', kind: 'storage', fieldPos: 5, scope: 'public', type: 'long' },
    ]);
    expect((await c.ok('/rest/__DeletedRecords')).__COUNT).toBe(0);
  });
});

describe('initial state', () => {
  it('generated rows carry distinct stamps 1..N over the tracked tables; the envelope holds N+1', async () => {
    const stamps = [...(await all('Kunden')), ...(await all('Belege'))].map((e) => e.__GlobalStamp);
    expect(stamps.every((s) => Number.isInteger(s))).toBe(true);
    expect([...stamps].sort((a, b) => a - b)).toEqual(Array.from({ length: TRACKED_ROWS }, (_, i) => i + 1));
    // creation order within a table: index order
    const kunden = (await all('Kunden')).map((e) => e.__GlobalStamp);
    expect(kunden).toEqual([...kunden].sort((a, b) => a - b));
    for (const t of ['Kunden', 'Belege', 'Artikel', 'Belege_Pos', '__DeletedRecords']) expect(await globalStamp(t), t).toBe(TRACKED_ROWS + 1);
    expect((await all('Artikel'))[0]).not.toHaveProperty('__GlobalStamp');
  });

  it('$attributes, single entities, $orderby and filters on __GlobalStamp', async () => {
    const only = await c.ok('/rest/Kunden?$top=2&$attributes=__GlobalStamp');
    expect(Object.keys(only.__ENTITIES[0])).toEqual(['__KEY', '__TIMESTAMP', '__STAMP', '__GlobalStamp']);
    const named = await c.ok('/rest/Kunden?$top=1&$attributes=KundenNr,__GlobalStamp');
    expect(Object.keys(named.__ENTITIES[0])).toEqual(['__KEY', '__TIMESTAMP', '__STAMP', 'KundenNr', '__GlobalStamp']);
    const one = await c.ok('/rest/Kunden(10005)');
    expect(one.__GlobalStamp).toBe((await all('Kunden'))[4]!.__GlobalStamp);
    expect((await c.ok('/rest/Kunden(10005)/__GlobalStamp')).__GlobalStamp).toBe(one.__GlobalStamp);
    const desc = (await all('Belege', `&$orderby=${quoted('__GlobalStamp desc')}`)).map((e) => e.__GlobalStamp);
    expect(desc).toEqual([...desc].sort((a, b) => b - a));
    const eq = await c.ok(`/rest/Kunden?$filter=${quoted(`__GlobalStamp = ${one.__GlobalStamp}`)}`);
    expect(eq.__ENTITIES.map((e: Entity) => e.__KEY)).toEqual(['10005']);
    const gt = await c.ok(`/rest/Kunden?$top=0&$filter=${quoted('__GlobalStamp > :1')}&$params=${jsonParams([one.__GlobalStamp])}`);
    const expected = (await all('Kunden')).filter((e) => e.__GlobalStamp > one.__GlobalStamp).length;
    expect(gt.__COUNT).toBe(expected);
  });

  it('untracked tables know no __GlobalStamp (500/1500), nor do clients write it', async () => {
    const r = await c.get(`/rest/Artikel?$filter=${quoted('__GlobalStamp > 0')}`);
    expect(r.status).toBe(500);
    expect(errCodes(r)).toContain(1500);
    const k = await c.ok('/rest/Kunden(10001)');
    const u = await c.post('/rest/Kunden?$method=update', { __KEY: '10001', __STAMP: k.__STAMP, __GlobalStamp: 1 });
    expect(u.status).toBe(200);
    expect(u.json.__STAMP).toBe(k.__STAMP); // ignored: nothing changed, nothing saved
    expect(await globalStamp()).toBe(TRACKED_ROWS + 1);
  });
});

describe('changes through REST', () => {
  it('update, create and delete each take the current stamp; a no-op update takes none', async () => {
    const s = await globalStamp();
    const k1 = await c.ok('/rest/Kunden(10001)');
    const upd = await c.post('/rest/Kunden?$method=update', { __KEY: '10001', __STAMP: k1.__STAMP, Ort: 'Pirna' });
    expect(upd.status).toBe(200);
    expect(upd.json.__GlobalStamp).toBe(s);
    expect(await globalStamp('Artikel')).toBe(s + 1);
    const same = await c.post('/rest/Kunden?$method=update', { __KEY: '10001', __STAMP: upd.json.__STAMP, Ort: 'Pirna' });
    expect(same.json.__GlobalStamp).toBe(s);
    expect(await globalStamp()).toBe(s + 1);
    const created = await c.post('/rest/Kunden?$method=update', { Firma: 'Neu GmbH' });
    expect(created.json).toMatchObject({ __KEY: '10021', __GlobalStamp: s + 1 });
    const untracked = await c.post('/rest/Artikel?$method=update', { Bezeichnung: 'ohne Stempel' });
    expect(untracked.status).toBe(200);
    expect(untracked.json).not.toHaveProperty('__GlobalStamp');
    expect(await globalStamp()).toBe(s + 2);
    expect((await c.post('/rest/Kunden(10003)?$method=delete', '')).status).toBe(200);
    expect((await c.post(`/rest/Artikel(${untracked.json.__KEY})?$method=delete`, '')).status).toBe(200);
    expect(await globalStamp()).toBe(s + 3);
    const dr = await c.ok('/rest/__DeletedRecords');
    expect(dr.__ENTITIES).toEqual([
      expect.objectContaining({ __KEY: '1', ID: 1, __PrimaryKey: '10003', __Stamp: s + 2, __TableName: 'Kunden', __TableNumber: 4 }),
    ]);
    expect(dr.__ENTITIES[0]).not.toHaveProperty('__GlobalStamp');
    // an incremental sync from stamp s sees exactly the changes
    expect(await changedSince('Kunden', s)).toEqual(['10001', '10021']);
    expect(await changedSince('Belege', s)).toEqual([]);
    expect((await deletedSince('Kunden', s)).map((e) => e.__PrimaryKey)).toEqual(['10003']);
    expect(await deletedSince('Belege', s)).toEqual([]);
    expect(await deletedSince('Kunden', s + 3)).toEqual([]);
  });

  it('$atomic rollback leaves no row with a stamp of the failed request; values are never reused', async () => {
    const s = await globalStamp();
    const [a, b] = await all('Belege');
    const before = await all('Belege');
    const r = await c.post('/rest/Belege?$method=update&$atomic=true', [
      { __KEY: a!.__KEY, __STAMP: a!.__STAMP, Text: 'eins' },
      { Text: 'neu' },
      { __KEY: b!.__KEY, __STAMP: b!.__STAMP + 7, Text: 'zwei' },
    ]);
    expect(r.status).toBe(500);
    expect(await all('Belege')).toEqual(before);
    expect(await changedSince('Belege', s)).toEqual([]);
    const after = await globalStamp();
    expect(after).toBeGreaterThanOrEqual(s); // the counter may have moved on, never back
    const ok = await c.post('/rest/Belege?$method=update&$atomic=true', [{ __KEY: a!.__KEY, __STAMP: a!.__STAMP, Text: 'eins' }]);
    expect(ok.status).toBe(200);
    expect(ok.json.__ENTITIES[0].__GlobalStamp).toBe(after);
    expect(await changedSince('Belege', s)).toEqual([a!.__KEY]);
  });
});

describe('changes through the control API', () => {
  it('mutate, row and before-update move the counter like users do', async () => {
    const s = await globalStamp();
    const [status, out] = await ctl('mutate', { table: 'Kunden', update: 3, insert: 2, delete: 2, seed: 4 });
    expect(status).toBe(200);
    expect(await globalStamp()).toBe(s + 7);
    expect((await changedSince('Kunden', s)).sort()).toEqual([...out.updated, ...out.inserted].sort());
    const deleted = await deletedSince('Kunden', s);
    expect(deleted.map((e) => e.__PrimaryKey)).toEqual(out.deleted);
    expect(deleted.map((e) => e.__Stamp)).toEqual([s + 5, s + 6]);
    const [, row] = await ctl('row', { table: 'Belege', key: '200001', set: { Text: 'anders' } });
    expect(row.__GlobalStamp).toBe(s + 7);
    const b2 = await c.ok('/rest/Belege(200002)');
    await ctl('before-update', { table: 'Belege', key: '200002', set: { Text: 'vorher' } });
    const r = await c.post('/rest/Belege?$method=update', { __KEY: '200002', __STAMP: b2.__STAMP, Text: 'danach' });
    expect(r.status).toBe(500); // the other user saved first
    expect(r.json.__GlobalStamp).toBe(s + 8);
    expect(await globalStamp()).toBe(s + 9);
    expect(await changedSince('Belege', s)).toEqual(['200001', '200002']);
  });

  it("mutate dates 'keep': modified_* untouched, old created_* on inserts; __STAMP and __GlobalStamp still move", async () => {
    const before = await all('Kunden');
    const first = before[0]!;
    const s = await globalStamp();
    const [status, out] = await ctl('mutate', { table: 'Kunden', update: 4, insert: 2, delete: 1, seed: 11, dates: 'keep' });
    expect(status).toBe(200);
    expect([out.updated.length, out.inserted.length, out.deleted.length]).toEqual([4, 2, 1]);
    for (const key of out.updated) {
      const old = before.find((e) => e.__KEY === key)!;
      const cur = await c.ok(`/rest/Kunden(${key})`);
      expect(cur.__STAMP).toBe(old.__STAMP + 1);
      expect(cur.Firma).not.toBe(old.Firma);
      expect([cur.modified_date, cur.modified_time, cur.modified_name]).toEqual([old.modified_date, old.modified_time, old.modified_name]);
      expect(cur.__GlobalStamp).toBeGreaterThanOrEqual(s);
    }
    for (const key of out.inserted) {
      const cur = await c.ok(`/rest/Kunden(${key})`);
      expect(cur).toMatchObject({ __STAMP: 1, created_date: first.created_date, created_time: first.created_time, created_name: first.created_name });
      expect([cur.modified_date, cur.modified_time, cur.modified_name]).toEqual([null, null, null]);
      expect(cur.__GlobalStamp).toBeGreaterThanOrEqual(s);
    }
    expect(first.created_date).toMatch(/!20(0|1)\d$/); // far in the past
    expect(await globalStamp()).toBe(s + 7);
    expect((await changedSince('Kunden', s)).sort()).toEqual([...out.updated, ...out.inserted].sort());
    // a sync by modified_date would miss them all
    const today = new Date().toISOString().slice(0, 10);
    expect((await c.ok(`/rest/Kunden?$top=0&$filter=${quoted(`modified_date >= ${today}`)}`)).__COUNT).toBe(0);
    expect((await ctl('mutate', { table: 'Kunden', update: 1, dates: 'yesterday' }))[0]).toBe(400);
  });

  it('reset starts the counter over and empties __DeletedRecords', async () => {
    await ctl('mutate', { table: 'Belege', update: 2, delete: 2 });
    expect(await globalStamp()).toBe(TRACKED_ROWS + 5);
    emu.control.reset();
    expect(await globalStamp()).toBe(TRACKED_ROWS + 1);
    expect((await c.ok('/rest/__DeletedRecords?$top=0')).__COUNT).toBe(0);
  });
});

describe('other configurations', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'legacy-emulator-tracking-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('off by default: envelope 0, no __GlobalStamp, no __DeletedRecords', async () => {
    const e = await startTestEmulator({ rows: { Kunden: 5 } });
    try {
      const cl = new Client(e);
      const page = await cl.ok('/rest/Kunden');
      expect(page.__GlobalStamp).toBe(0);
      expect(page.__ENTITIES[0]).not.toHaveProperty('__GlobalStamp');
      expect((await cl.ok('/rest/$catalog')).dataClasses.map((d: Entity) => d.name)).not.toContain('__DeletedRecords');
      expect((await cl.get('/rest/__DeletedRecords')).status).toBe(404);
      expect((await cl.get(`/rest/Kunden?$filter=${quoted('__GlobalStamp > 0')}`)).status).toBe(500);
      await cl.post('/rest/Kunden(10001)?$method=delete', '');
      expect((await cl.ok('/rest/Kunden')).__GlobalStamp).toBe(0);
    } finally {
      await e.stop();
    }
  });

  it('changeTracking: true tracks every demo table with distinct initial stamps', async () => {
    const rows = { Artikel_Familie: 7, Artikel: 13, Artikel_Variante: 0, Kunden: 5, Belege: 4, Belege_Pos: 11 };
    const e = await startTestEmulator({ rows, changeTracking: true });
    try {
      const cl = new Client(e);
      const stamps: number[] = [];
      for (const t of Object.keys(rows)) {
        for (const x of (await cl.ok(`/rest/${t}?$top=-1`)).__ENTITIES) stamps.push(x.__GlobalStamp);
      }
      const n = Object.values(rows).reduce((a, b) => a + b, 0);
      expect(stamps.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect((await cl.ok('/rest/Kunden?$top=0')).__GlobalStamp).toBe(n + 1);
      expect((await cl.ok('/rest/$catalog/__DeletedRecords')).tableNumber).toBe(7);
    } finally {
      await e.stop();
    }
  });

  it('fixtures: initial stamps follow __TIMESTAMP; a fixture may not define the reserved names', async () => {
    const file = join(tmp, 'f.json');
    writeFileSync(
      file,
      JSON.stringify({
        dataClasses: [
          {
            name: 'A',
            key: 'ID',
            attributes: [
              { name: 'ID', type: 'long' },
              { name: 'B', kind: 'relatedEntity', related: 'B' },
              { name: 'X', type: 'string' },
            ],
            rows: [
              { ID: 1, __TIMESTAMP: '2024-03-01T00:00:00Z', __GlobalStamp: 99 },
              { ID: 2, __TIMESTAMP: '2024-01-01T00:00:00Z' },
            ],
          },
          { name: 'B', key: 'ID', attributes: [{ name: 'ID', type: 'long' }], rows: [{ ID: 1, __TIMESTAMP: '2024-02-01T00:00:00Z' }] },
          { name: 'C', key: 'ID', attributes: [{ name: 'ID', type: 'long' }], rows: [{ ID: 1 }] },
        ],
      }),
    );
    const e = await startTestEmulator({ data: file, changeTracking: ['A', 'B'] });
    try {
      const cl = new Client(e);
      expect((await cl.ok('/rest/A')).__ENTITIES.map((x: Entity) => [x.ID, x.__GlobalStamp])).toEqual([
        [1, 3],
        [2, 1],
      ]);
      expect((await cl.ok('/rest/B')).__ENTITIES.map((x: Entity) => x.__GlobalStamp)).toEqual([2]);
      expect((await cl.ok('/rest/C')).__GlobalStamp).toBe(4);
      const attrs = (await cl.ok('/rest/$catalog/A')).attributes.map((a: Entity) => [a.name, a.fieldPos]);
      expect(attrs).toEqual([
        ['ID', 1],
        ['B', undefined],
        ['X', 2],
        ['__GlobalStamp', 3],
      ]);
      expect((await cl.ok('/rest/$catalog/__DeletedRecords')).tableNumber).toBe(4);
    } finally {
      await e.stop();
    }
    const reserved = join(tmp, 'r.json');
    writeFileSync(
      reserved,
      JSON.stringify({
        dataClasses: [
          {
            name: 'A',
            key: 'ID',
            attributes: [
              { name: 'ID', type: 'long' },
              { name: '__GlobalStamp', type: 'long64' },
            ],
          },
        ],
      }),
    );
    await expect(startTestEmulator({ data: reserved, changeTracking: true })).rejects.toThrow(/__GlobalStamp is made by the emulator/);
    const untracked = await startTestEmulator({ data: reserved });
    await untracked.stop();
  });

  it('option validation and the CLI flag', async () => {
    await expect(startTestEmulator({ changeTracking: ['Nope'] })).rejects.toThrow(/changeTracking: unknown table "Nope"/);
    await expect(startTestEmulator({ changeTracking: ['__DeletedRecords'] })).rejects.toThrow(/never tracked/);
    await expect(startTestEmulator({ changeTracking: 'all' as never })).rejects.toThrow(/changeTracking must be/);
    await expect(startTestEmulator({ changeTracking: [''] })).rejects.toThrow(/changeTracking must be/);
    const off = await startTestEmulator({ changeTracking: [], rows: { Kunden: 1 } });
    try {
      expect((await new Client(off).ok('/rest/Kunden')).__GlobalStamp).toBe(0);
      expect(() => off.control.setOptions({ changeTracking: true } as never)).toThrow(/cannot be changed at runtime/);
    } finally {
      await off.stop();
    }
    expect(parseCliArgs(['--change-tracking', 'all'])).toEqual({ kind: 'run', options: { changeTracking: true } });
    expect(parseCliArgs(['--change-tracking', 'Kunden, Belege'])).toEqual({ kind: 'run', options: { changeTracking: ['Kunden', 'Belege'] } });
    expect(() => parseCliArgs(['--change-tracking', ' , '])).toThrow(/--change-tracking/);
  });
});

describe('interleavedStamps', () => {
  it('is a bijection onto 1..N that keeps each table in index order', () => {
    for (const counts of [[1], [3, 2], [5, 0, 7], [1000, 3, 250, 1], [6, 4, 6, 9, 12, 3]]) {
      const fns = interleavedStamps(counts);
      const seen: number[] = [];
      counts.forEach((n, t) => {
        const own = Array.from({ length: n }, (_, i) => fns[t]!(i));
        expect(own).toEqual([...own].sort((a, b) => a - b));
        seen.push(...own);
      });
      const total = counts.reduce((a, b) => a + b, 0);
      expect(
        seen.sort((a, b) => a - b),
        JSON.stringify(counts),
      ).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    }
    // interleaved by creation fraction: the last rows of both tables come last
    const [a, b] = interleavedStamps([10, 10]);
    expect([a!(0), b!(0), a!(9), b!(9)]).toEqual([1, 2, 19, 20]);
  });
});
