/**
 * 4D generations (4d-generations.md): session cookies per generation, force login (v21: guest sessions and
 * `authentify`), privilege errors (`readOnlyTables`, `infoAdminOnly`, `refusalStatus`), refused logins
 * (`loginRefusal`), login header decoding (`headerDecoding`), documented keywords the emulator lacks, and
 * single-entity references per generation under both URL decodings.
 */
import http from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseCliArgs } from '../../src/emulator/cli.js';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, enc, errCodes, quoted, type Reply, setCookieValue, sleep, startTestEmulator, useEmulator } from './helpers.js';

const ERP = new URL('./fixtures/erp.json', import.meta.url).pathname;
const KEYS = new URL('./fixtures/keys.json', import.meta.url).pathname;
const SID = '4DSID_WSZ-DB';
const HEX32 = /^[0-9A-F]{32}$/;
const DECODINGS = ['whole', 'split'] as const;

/** Names of the cookies a reply sets. */
const cookieNames = (r: Reply) => r.setCookies.map((c) => c.split('=')[0]);

describe('session cookies per generation', () => {
  let emu: RunningEmulator;
  let c: Client;
  useEmulator({ maxSessions: 10 }, (e, client) => {
    emu = e;
    c = client;
  });

  it.each([
    ['v18', ['WASID4D']],
    ['v20', [SID]],
    ['v20r', ['WASID4D', SID]],
  ] as const)('%s sets %j', async (generation, names) => {
    emu.control.setOptions({ generation });
    const r = await c.get('/rest/$info');
    expect(cookieNames(r)).toEqual(names);
    expect(new Set(names.map((n) => setCookieValue(r, n))).size).toBe(1);
    expect(setCookieValue(r, names[0]!)).toMatch(HEX32);
  });

  it('v18 reads only WASID4D: a 4DSID_<app> cookie names no session', async () => {
    emu.control.setOptions({ generation: 'v18' });
    const first = await c.get('/rest/$info', { cookie: null });
    const id = setCookieValue(first, 'WASID4D')!;
    expect((await c.get('/rest/$info', { cookie: `WASID4D=${id}` })).setCookies).toEqual([]);
    const other = await c.get('/rest/$info', { cookie: `${SID}=${id}` });
    expect(setCookieValue(other, 'WASID4D')).not.toBe(id);
    expect(emu.stats().sessionsCreated).toBe(2);
    expect(emu.stats().requestsWithoutCookie).toBe(2); // a 4DSID_ cookie is no cookie to a v18 server
  });

  it('v20 reads only 4DSID_<app>: a WASID4D cookie names no session', async () => {
    emu.control.setOptions({ generation: 'v20' });
    const first = await c.get('/rest/$info', { cookie: null });
    const id = setCookieValue(first, SID)!;
    expect(setCookieValue(first, 'WASID4D')).toBeUndefined();
    expect((await c.get('/rest/Kunden?$top=1', { cookie: `${SID}=${id}` })).setCookies).toEqual([]);
    const other = await c.get('/rest/$info', { cookie: `WASID4D=${id}` });
    expect(cookieNames(other)).toEqual([SID]);
    expect(setCookieValue(other, SID)).not.toBe(id);
    expect(emu.stats().sessionsCreated).toBe(2);
  });

  it('v20r reads WASID4D, then 4DSID_<app>; either names the session', async () => {
    const first = await c.get('/rest/$info', { cookie: null });
    const id = setCookieValue(first, 'WASID4D')!;
    expect((await c.get('/rest/$info', { cookie: `${SID}=${id}` })).setCookies).toEqual([]);
    expect((await c.get('/rest/$info', { cookie: `WASID4D=0000; ${SID}=${id}` })).setCookies).toEqual([]);
    expect(emu.stats().sessionsCreated).toBe(1);
  });

  it('scalable=false only matters under v20r; the generation changes at runtime (HTTP control too) and is validated', async () => {
    emu.control.setOptions({ scalable: false, generation: 'v20' });
    expect(cookieNames(await c.get('/rest/$info', { cookie: null }))).toEqual([SID]);
    const res = await fetch(`${emu.url}/__emulator/options`, { method: 'POST', body: JSON.stringify({ generation: 'v18' }) });
    expect(res.status).toBe(200);
    expect(cookieNames(await c.get('/rest/$info', { cookie: null }))).toEqual(['WASID4D']);
    const bad = await fetch(`${emu.url}/__emulator/options`, { method: 'POST', body: JSON.stringify({ generation: 'v19' }) });
    expect([bad.status, ((await bad.json()) as { error: string }).error]).toEqual([400, 'generation must be one of v18, v20, v20r, v21']);
  });

  it('$info has no version field and no privileges property before v21 (force-login tests check v21)', async () => {
    for (const generation of ['v18', 'v20', 'v20r'] as const) {
      emu.control.setOptions({ generation });
      const info = await new Client(emu).ok('/rest/$info');
      expect(Object.keys(info)).toEqual(['cacheSize', 'usedCache', 'entitySetCount', 'ProgressInfo', 'sessionInfo', 'HTTPConnections']);
    }
  });
});

describe('force login (v21)', () => {
  let emu: RunningEmulator;
  let c: Client;
  useEmulator({ generation: 'v21', auth: { user: 'erp', password: 'geheim' }, maxSessions: 1 }, (e, client) => {
    emu = e;
    c = client;
  });

  const login = (client: Client, credentials: unknown) => client.post('/rest/$catalog/authentify', [credentials]);

  it('a request without a session gets a guest session: 4DSID_<app> only, no licence, descriptive requests only', async () => {
    const cat = await c.get('/rest/$catalog');
    expect(cat.status).toBe(200);
    expect(cookieNames(cat)).toEqual([SID]);
    const id = c.sessionId!;
    expect(id).toMatch(HEX32);
    for (const path of ['/rest/$catalog/$all', '/rest/$catalog/Kunden']) {
      const r = await c.get(path);
      expect([path, r.status, r.setCookies.length]).toEqual([path, 200, 0]);
    }
    const s = emu.stats();
    expect([s.guestSessionsCreated, s.guestSessions, s.sessionsCreated, s.liveSessions]).toEqual([1, 1, 0, 0]);
    expect(emu.control.sessions()).toEqual([expect.objectContaining({ id, guest: true, occupied: false, userName: '' })]);
  });

  it('a guest is refused everything else with a privilege error (401 by default, never 1822)', async () => {
    await c.get('/rest/$catalog');
    const refusals: Array<[string, string, unknown, number[]]> = [
      ['GET', '/rest/Kunden?$top=1', undefined, [1557]],
      ['GET', '/rest/Kunden(10001)', undefined, [1557]],
      ['POST', '/rest/Kunden?$method=update', { __KEY: '10001', __STAMP: 1, Name: 'x' }, [1558]],
      ['POST', '/rest/Kunden(10001)?$method=delete', '', [1560]],
      ['GET', '/rest/$info', undefined, [1611]],
      ['POST', '/rest/$directory/login', '', [1561]],
      ['GET', '/rest/$directory/currentUser', undefined, [1561]],
    ];
    for (const [method, path, body, codes] of refusals) {
      const r = await c.request(path, { method, body });
      expect([path, r.status, errCodes(r), r.setCookies.length]).toEqual([path, 401, codes, 0]);
    }
    const read = await c.get('/rest/Kunden?$top=1');
    expect(read.json.__ERROR[0]).toEqual({ message: 'No permission to read for the Kunden dataclass', componentSignature: 'dbmg', errCode: 1557 });
    expect(emu.stats().permissionRefusals).toBe(refusals.length + 1);
    expect(emu.stats().guestSessionsCreated).toBe(1);
  });

  it('a refused request without a cookie still opens a guest session and sets its cookie', async () => {
    const r = await c.get('/rest/Kunden?$top=1', { cookie: null });
    expect([r.status, errCodes(r), cookieNames(r)]).toEqual([401, [1557], [SID]]);
    expect(emu.stats().guestSessions).toBe(1);
    // the old WASID4D cookie names nothing on a v21 server
    const was = await c.get('/rest/$catalog', { cookie: `WASID4D=${setCookieValue(r, SID)}` });
    expect(cookieNames(was)).toEqual([SID]);
  });

  it('refusalStatus 403', async () => {
    emu.control.setOptions({ refusalStatus: 403 });
    const r = await c.get('/rest/Kunden?$top=1');
    expect([r.status, errCodes(r)]).toEqual([403, [1557]]);
  });

  it('authentify: wrong user or password → 200 with the function result, nothing opened; right → the same session is licensed', async () => {
    await c.get('/rest/$catalog');
    const id = c.sessionId;
    const wrongPassword = await login(c, { name: 'erp', password: 'nope' });
    expect([wrongPassword.status, wrongPassword.json, wrongPassword.setCookies.length]).toEqual([200, { result: 'Wrong password' }, 0]);
    const wrongUser = await login(c, { name: 'someone', password: 'geheim' });
    expect(wrongUser.json).toEqual({ result: 'Wrong user' });
    expect((await c.get('/rest/Kunden?$top=1')).status).toBe(401);
    expect(emu.stats().sessionsCreated).toBe(0);

    const ok = await login(c, { name: 'erp', password: 'geheim' });
    expect([ok.status, ok.json, ok.setCookies.length]).toEqual([200, { result: true }, 0]);
    expect(c.sessionId).toBe(id);
    const page = await c.get('/rest/Kunden?$top=2');
    expect([page.status, page.json.__ENTITIES.length]).toEqual([200, 2]);
    const info = await c.ok('/rest/$info');
    expect(info.sessionInfo).toEqual([expect.objectContaining({ sessionID: id, userName: 'erp', lifeTime: 3600 })]);
    expect(info.privileges).toEqual({ privileges: [{ privilege: 'emulator' }] });
    const s = emu.stats();
    expect([s.authentifyCalls, s.authentifyFailures, s.sessionsCreated, s.liveSessions, s.guestSessions, s.guestSessionsCreated]).toEqual([3, 2, 1, 1, 0, 1]);
    expect(emu.control.sessions()).toEqual([expect.objectContaining({ id, guest: false, userName: 'erp' })]);
  });

  it('authentify without a free licence → 402/1823 and the session stays a guest; guests never count against maxSessions', async () => {
    const a = new Client(emu);
    await login(a, { name: 'erp', password: 'geheim' });
    expect((await a.get('/rest/Kunden?$top=1')).status).toBe(200);
    // the only licence is taken; guests are still made and served
    const b = new Client(emu);
    expect((await b.get('/rest/$catalog')).status).toBe(200);
    const full = await login(b, { name: 'erp', password: 'geheim' });
    expect([full.status, errCodes(full)]).toEqual([402, [1823]]);
    expect((await b.get('/rest/Kunden?$top=1')).status).toBe(401);
    const s = emu.stats();
    expect([s.sessionsCreated, s.liveSessions, s.guestSessions, s.rejected402, s.authentifyFailures]).toEqual([1, 1, 1, 1, 1]);
    // once the licence is free, the same guest can log in
    await a.get('/rest/$directory/logout');
    expect((await login(b, { name: 'erp', password: 'geheim' })).json).toEqual({ result: true });
    expect((await b.get('/rest/Kunden?$top=1')).status).toBe(200);
  });

  it("authentifyUserField 'identifier' (a real 4D web front end); with auth null any non-empty user is accepted", async () => {
    emu.control.setOptions({ authentifyUserField: 'identifier' });
    expect((await login(c, { name: 'erp', password: 'geheim' })).json).toEqual({ result: 'Wrong user' });
    expect((await login(c, { identifier: 'erp', password: 'geheim' })).json).toEqual({ result: true });
    emu.control.setOptions({ auth: null, authentifyUserField: 'name' });
    const d = new Client(emu);
    expect((await login(d, { name: '' })).json).toEqual({ result: 'Wrong user' });
    expect((await login(d, 'not an object')).json).toEqual({ result: 'Wrong user' });
    emu.control.setOptions({ maxSessions: 2 });
    expect((await login(d, { name: 'anyone' })).json).toEqual({ result: true });
    const bad = await d.post('/rest/$catalog/authentify', '{"name":"x"}');
    expect([bad.status, errCodes(bad)]).toEqual([400, [1806]]);
  });

  it('guest sessions expire like others and are dropped by expire-sessions and reset', async () => {
    emu.control.setOptions({ sessionTimeoutMs: 100 });
    await c.get('/rest/$catalog');
    const id = c.sessionId;
    await sleep(150);
    const again = await c.get('/rest/$catalog');
    expect(setCookieValue(again, SID)).not.toBe(id);
    expect(emu.stats().guestSessions).toBe(1);
    expect(emu.control.expireSessions()).toBe(1);
    expect(emu.stats().guestSessions).toBe(0);
    await c.get('/rest/$catalog', { cookie: null });
    emu.control.reset();
    expect(emu.stats()).toMatchObject({ guestSessions: 0, guestSessionsCreated: 0 });
  });

  it.each(DECODINGS)('the whole flow under urlDecoding %s', async (urlDecoding) => {
    emu.control.setOptions({ urlDecoding });
    expect((await c.get(`/rest/$catalog/Kunden`)).status).toBe(200);
    expect((await c.get(`/rest/Kunden?$filter=${quoted('Ort = "Dresden"')}&$top=1`)).status).toBe(401);
    expect((await login(c, { name: 'erp', password: 'geheim' })).json).toEqual({ result: true });
    const page = await c.get(`/rest/Kunden?$filter=${quoted('Ort = "Dresden"')}&$top=3&$attributes=Ort`);
    expect(page.status).toBe(200);
    expect(page.json.__ENTITIES.every((e: { Ort: string }) => e.Ort === 'Dresden')).toBe(true);
  });

  it('no header authentication under force login: $directory/login stays refused even with the right headers', async () => {
    const r = await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'erp', 'password-4D': 'geheim' } });
    expect([r.status, errCodes(r)]).toEqual([401, [1561]]);
    expect(emu.stats().sessionsCreated).toBe(0);
  });
});

describe('privileges: readOnlyTables, infoAdminOnly', () => {
  let emu: RunningEmulator;
  let c: Client;
  useEmulator({ readOnlyTables: ['Kunden'] }, (e, client) => {
    emu = e;
    c = client;
  });

  it('reads work; update, create and delete are refused with a body naming the dataclass and the permission', async () => {
    const k = (await c.ok('/rest/Kunden(10001)')) as { __KEY: string; __STAMP: number; Name: string };
    const update = await c.post('/rest/Kunden?$method=update', { __KEY: k.__KEY, __STAMP: k.__STAMP, Name: 'neu' });
    expect([update.status, update.json]).toEqual([
      401,
      { __ERROR: [{ message: 'No permission to update for the Kunden dataclass', componentSignature: 'dbmg', errCode: 1558 }] },
    ]);
    expect(errCodes(await c.post('/rest/Kunden?$method=update', { Name: 'neu' }))).toEqual([1559]);
    expect(errCodes(await c.post('/rest/Kunden?$method=update', [{ __KEY: k.__KEY, __STAMP: k.__STAMP }, { Name: 'neu' }]))).toEqual([1558, 1559]);
    expect(errCodes(await c.post('/rest/Kunden', { __KEY: k.__KEY, __STAMP: k.__STAMP, Name: 'neu' }))).toEqual([1558]);
    const del = await c.post('/rest/Kunden(10001)?$method=delete', '');
    expect([del.status, errCodes(del)]).toEqual([401, [1560]]);
    expect((await c.ok('/rest/Kunden(10001)')).Name).toBe(k.Name);
    expect(emu.stats()).toMatchObject({ updates: 0, permissionRefusals: 5 });
    // an entity set is a read
    expect((await c.post('/rest/Kunden?$method=entityset&$top=1', '')).status).toBe(200);
  });

  it('other tables stay writable; refusalStatus 403; the list changes at runtime and unknown tables are option errors', async () => {
    const a = (await c.ok('/rest/Artikel?$top=1')).__ENTITIES[0] as { __KEY: string; __STAMP: number };
    expect((await c.post('/rest/Artikel?$method=update', { __KEY: a.__KEY, __STAMP: a.__STAMP })).status).toBe(200);
    emu.control.setOptions({ refusalStatus: 403 });
    expect((await c.post('/rest/Kunden?$method=update', { Name: 'x' })).status).toBe(403);
    emu.control.setOptions({ readOnlyTables: [] });
    expect((await c.post('/rest/Kunden?$method=update', { Name: 'x' })).status).toBe(200);
    expect(() => emu.control.setOptions({ readOnlyTables: ['Nope'] })).toThrow(/readOnlyTables: unknown table "Nope"/);
    await expect(startTestEmulator({ readOnlyTables: ['Nope'] })).rejects.toThrow(/unknown table/);
  });

  it('infoAdminOnly: $info refused to every session with 1611; data still served', async () => {
    emu.control.setOptions({ infoAdminOnly: true });
    const r = await c.get('/rest/$info');
    expect([r.status, r.json]).toEqual([
      401,
      { __ERROR: [{ message: 'You must log into the Admin group to obtain information regarding your project.', componentSignature: 'dbmg', errCode: 1611 }] },
    ]);
    expect(r.setCookies).toHaveLength(2); // the session was opened before the refusal (a licence is taken)
    expect((await c.get('/rest/Kunden?$top=1')).status).toBe(200);
  });
});

describe('loginRefusal and the session check order', () => {
  let emu: RunningEmulator;
  let c: Client;
  useEmulator({ auth: { user: 'erp', password: 'geheim' } }, (e, client) => {
    emu = e;
    c = client;
  });

  it("'result-false' (default): a refused $directory/login is 200 {result:false}, no cookie; data requests still get 401/1822", async () => {
    const login = await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'erp', 'password-4D': 'x' } });
    expect([login.status, login.json, login.setCookies]).toEqual([200, { result: false }, []]);
    const none = await c.post('/rest/$directory/login', '');
    expect([none.status, none.json]).toEqual([200, { result: false }]);
    const data = await c.get('/rest/Kunden?$top=1');
    expect([data.status, errCodes(data)]).toEqual([401, [1822]]);
    expect(emu.stats()).toMatchObject({ sessionsCreated: 0, authFailures: 3 });
  });

  it("'401': the legacy server's 401/1822", async () => {
    emu.control.setOptions({ loginRefusal: '401' });
    const login = await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'erp', 'password-4D': 'x' } });
    expect([login.status, errCodes(login), login.setCookies]).toEqual([401, [1822], []]);
    await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'erp', 'password-4D': 'geheim' } });
    const again = await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'erp', 'password-4D': 'x' } });
    expect([again.status, errCodes(again)]).toEqual([401, [1822]]);
  });
});

/** A raw request whose header values are the given bytes (node:http writes header strings as latin1). */
function rawLogin(port: number, user: Buffer, password: Buffer): Promise<{ status: number; body: string; cookie?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/rest/$directory/login',
        method: 'POST',
        headers: { 'username-4D': user.toString('latin1'), 'password-4D': password.toString('latin1') },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), cookie: res.headers['set-cookie']?.[0]?.split(';')[0] }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('headerDecoding: non-ASCII user names and passwords', () => {
  let emu: RunningEmulator;
  useEmulator({ auth: { user: 'Jürgen', password: 'Pässwörd' }, maxSessions: 10 }, (e) => {
    emu = e;
  });

  it("'utf8' (default, the 4D source): UTF-8 header bytes log in, latin1 bytes do not", async () => {
    const utf8 = await rawLogin(emu.port, Buffer.from('Jürgen', 'utf8'), Buffer.from('Pässwörd', 'utf8'));
    expect([utf8.status, JSON.parse(utf8.body)]).toEqual([200, { result: true }]);
    const who = await new Client(emu).ok('/rest/$directory/currentUser', { cookie: utf8.cookie });
    expect(who.result.userName).toBe('Jürgen');
    const latin1 = await rawLogin(emu.port, Buffer.from('Jürgen', 'latin1'), Buffer.from('Pässwörd', 'latin1'));
    expect([latin1.status, JSON.parse(latin1.body)]).toEqual([200, { result: false }]);
  });

  it("'latin1': latin1 bytes log in, UTF-8 bytes do not", async () => {
    emu.control.setOptions({ headerDecoding: 'latin1' });
    expect(JSON.parse((await rawLogin(emu.port, Buffer.from('Jürgen', 'latin1'), Buffer.from('Pässwörd', 'latin1'))).body)).toEqual({ result: true });
    expect(JSON.parse((await rawLogin(emu.port, Buffer.from('Jürgen', 'utf8'), Buffer.from('Pässwörd', 'utf8'))).body)).toEqual({ result: false });
  });
});

describe('documented keywords the emulator does not implement answer an error, never a page', () => {
  let c: Client;
  useEmulator({}, (_e, client) => {
    c = client;
  });

  it.each([
    ['/rest/Kunden(10001)?$lock=true', '$lock'],
    ['/rest/Kunden/Kreditlimit?$compute=sum', '$compute'],
    ['/rest/Kunden/Ort?$distinct=true', '$distinct'],
    ['/rest/Kunden?$asArray=true&$top=1', '$asarray'],
    ['/rest/Kunden?$expand=Belege&$top=1', '$expand'],
    ['/rest/Kunden(10001)/Belege?$expand=Ort', '$expand'],
    ['/rest/Kunden?$queryplan=true&$top=1', '$queryplan'],
    ['/rest/Kunden?$method=subentityset', '$method=subentityset'],
    ['/rest/$info?$expand=x', '$expand'],
  ])('%s', async (path, keyword) => {
    const r = await c.get(path);
    expect([r.status, errCodes(r)]).toEqual([400, [1811]]);
    expect(r.json.__ERROR[0].message).toContain(`"${keyword}"`);
  });
});

describe('single entities per generation, under both URL decodings', () => {
  let emu: RunningEmulator;
  let c: Client;
  beforeAll(async () => {
    emu = await startTestEmulator({ data: KEYS });
  });
  afterAll(() => emu.stop());
  beforeEach(() => {
    emu.control.reset();
    c = new Client(emu);
  });

  const PAREN = [
    ['Lager(IT0911AB2200)', 'IT0911AB2200'],
    ['Lager("IT0911AB2200")', 'IT0911AB2200'],
    ["Lager('IT0911AB2200')", 'IT0911AB2200'],
    ['Lager("Regal 7")', 'Regal 7'],
    ['Lager(Regal 7)', 'Regal 7'],
    ['Lager("Größe Ä")', 'Größe Ä'],
    [`Lager(${enc('"Größe Ä"')})`, 'Größe Ä'],
  ] as const;
  const BRACKET = [
    ['Lager[IT0911AB2200]', 'IT0911AB2200'],
    ['Lager["IT0911AB2200"]', 'IT0911AB2200'],
    ['Lager["Regal 7"]', 'Regal 7'],
    ['Lager[Größe Ä]', 'Größe Ä'],
  ] as const;

  for (const generation of ['v18', 'v20', 'v20r', 'v21'] as const) {
    for (const urlDecoding of DECODINGS) {
      it(`${generation}, ${urlDecoding}: Table(key) and Table("key") always; Table[key] ${generation === 'v18' ? 'is no entity reference (404/1800)' : 'too'}`, async () => {
        emu.control.setOptions({ generation, urlDecoding, auth: null });
        if (generation === 'v21') {
          await c.post('/rest/$catalog/authentify', [{ name: 'tester' }]);
        }
        for (const [ref, key] of PAREN) {
          const r = await c.get(`/rest/${ref}`);
          expect([ref, r.status, r.json?.__KEY]).toEqual([ref, 200, key]);
        }
        for (const [ref, key] of BRACKET) {
          const r = await c.get(`/rest/${ref}`);
          if (generation === 'v18') expect([ref, r.status, errCodes(r)]).toEqual([ref, 404, [1800]]);
          else expect([ref, r.status, r.json?.__KEY]).toEqual([ref, 200, key]);
        }
      });
    }
  }

  it('v18 renders deferred and update URIs as Table(key), and they work', async () => {
    const erp = await startTestEmulator({ data: ERP, generation: 'v18' });
    try {
      const e = new Client(erp);
      const g = await e.ok('/rest/Gruppe(7464FEB39C516942B01E62F44B1ED454)');
      expect(g.Mitglieder.__deferred.uri).toBe('/rest/Gruppe(7464FEB39C516942B01E62F44B1ED454)/Mitglieder?$expand=Mitglieder');
      expect((await e.get(g.Mitglieder.__deferred.uri)).status).toBe(200);
      const k = await e.ok('/rest/Kunde(1)');
      expect(k.Foto.__deferred.uri).toBe('/rest/Kunde(1)/Foto?$imageformat=best&$version=1&$expand=Foto');
      expect(k.Gruppe.__deferred.uri).toBe('/rest/Gruppe(7464FEB39C516942B01E62F44B1ED454)');
      const saved = await e.post('/rest/Kunde?$method=update', { __KEY: '1', __STAMP: k.__STAMP, PLZ: '01069' });
      expect(saved.json.uri).toBe('/rest/Kunde(1)');
    } finally {
      await erp.stop();
    }
  });
});

describe('CLI flags', () => {
  it('parses the generation options', () => {
    expect(
      parseCliArgs([
        '--generation',
        'v21',
        '--refusal-status',
        '403',
        '--authentify-user-field',
        'identifier',
        '--read-only-tables',
        'Kunden, Artikel',
        '--info-admin-only',
        '--login-refusal',
        '401',
        '--header-decoding',
        'latin1',
      ]),
    ).toEqual({
      kind: 'run',
      options: {
        generation: 'v21',
        refusalStatus: 403,
        authentifyUserField: 'identifier',
        readOnlyTables: ['Kunden', 'Artikel'],
        infoAdminOnly: true,
        loginRefusal: '401',
        headerDecoding: 'latin1',
      },
    });
    expect(() => parseCliArgs(['--refusal-status', '402'])).toThrow(/401 or 403/);
    expect(() => parseCliArgs(['--read-only-tables', ' , '])).toThrow(/list of tables/);
  });
});
