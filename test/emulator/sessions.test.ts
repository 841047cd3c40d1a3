/** Sessions, cookies, licences and authentication in detail (beyond the §10 walk). */
import { beforeEach, describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, errCodes, setCookieValue, sleep, startTestEmulator, useEmulator } from './helpers.js';

let emu: RunningEmulator;
let c: Client;
useEmulator({}, (e, client) => {
  emu = e;
  c = client;
});

describe('cookies', () => {
  it('every cookie-less request takes a new session (and a licence); requestsWithoutCookie counts them', async () => {
    emu.control.setOptions({ maxSessions: 10 });
    for (let i = 0; i < 3; i++) expect((await c.get('/rest/$info', { cookie: null })).setCookies).toHaveLength(2);
    const s = emu.stats();
    expect([s.sessionsCreated, s.liveSessions, s.maxLiveSessions, s.requestsWithoutCookie]).toEqual([3, 3, 3, 3]);
  });

  it('an unknown cookie gets a new session and a new Set-Cookie, silently (HTTP 200)', async () => {
    const r = await c.get('/rest/Kunden?$top=1', { cookie: 'WASID4D=00000000000000000000000000000000' });
    expect(r.status).toBe(200);
    const id = setCookieValue(r, 'WASID4D');
    expect(id).toMatch(/^[0-9A-F]{32}$/);
    expect(id).not.toBe('00000000000000000000000000000000');
    expect(emu.stats().requestsWithoutCookie).toBe(0);
  });

  it('two WASID4D cookies → 401/1822, counted, no session made (Cookie headers joined or repeated)', async () => {
    await c.get('/rest/$info');
    const id = c.sessionId!;
    const joined = await c.get('/rest/$info', { cookie: `WASID4D=${id}; WASID4D=${id}` });
    expect(joined.status).toBe(401);
    expect(errCodes(joined)).toEqual([1822]);
    const repeated = await c.get('/rest/$info', { cookie: null, headers: { cookie: [`WASID4D=${id}`, 'WASID4D=FFFF'] } });
    expect(repeated.status).toBe(401);
    const s = emu.stats();
    expect(s.duplicateCookieRejections).toBe(2);
    expect(s.sessionsCreated).toBe(1);
  });

  it("duplicateCookie='first-wins' uses the first WASID4D (a stale first one means a new session)", async () => {
    emu.control.setOptions({ duplicateCookie: 'first-wins' });
    await c.get('/rest/$info');
    const id = c.sessionId!;
    const good = await c.get('/rest/$info', { cookie: `WASID4D=${id}; WASID4D=0123` });
    expect([good.status, good.setCookies.length]).toEqual([200, 0]);
    const stale = await c.get('/rest/$info', { cookie: `WASID4D=0123; WASID4D=${id}` });
    expect([stale.status, stale.setCookies.length]).toEqual([200, 2]);
    expect(emu.stats().duplicateCookieRejections).toBe(0);
  });

  it('cookie names match exactly: XWASID4D or wasid4d are not WASID4D', async () => {
    await c.get('/rest/$info');
    const id = c.sessionId!;
    const r = await c.get('/rest/$info', { cookie: `XWASID4D=${id}; wasid4d=${id}` });
    expect(r.setCookies).toHaveLength(2);
  });

  it('scalable=false sets only WASID4D; the app name is configurable', async () => {
    emu.control.setOptions({ scalable: false });
    const r = await c.get('/rest/$info');
    expect(r.setCookies).toEqual([`WASID4D=${c.sessionId}; Path=/; Max-Age=3600; HttpOnly`]);
    const named = await startTestEmulator({ appName: 'MY-APP' });
    try {
      const n = await new Client(named).get('/rest/$info');
      expect(setCookieValue(n, '4DSID_MY-APP')).toBe(setCookieValue(n, 'WASID4D'));
    } finally {
      await named.stop();
    }
  });
});

describe('licences', () => {
  it('an expired session frees its licence lazily', async () => {
    emu.control.setOptions({ maxSessions: 1, sessionTimeoutMs: 200 });
    await c.get('/rest/$info');
    expect((await new Client(emu).get('/rest/$info')).status).toBe(402);
    await sleep(300);
    expect((await new Client(emu).get('/rest/$info')).status).toBe(200);
  });

  it('expire-sessions keeps phantom sessions; phantoms never time out; sessions() lists both kinds', async () => {
    emu.control.setOptions({ maxSessions: 2, sessionTimeoutMs: 100 });
    emu.control.occupy(1);
    await c.get('/rest/$info');
    expect(
      emu.control
        .sessions()
        .map((s) => s.occupied)
        .sort(),
    ).toEqual([false, true]);
    expect(emu.control.expireSessions()).toBe(1);
    await sleep(150);
    const s = emu.stats();
    expect([s.liveSessions, s.occupiedSessions]).toEqual([0, 1]);
    const list = emu.control.sessions();
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ occupied: true, expiresAt: null });
  });

  it('maxLiveSessions is the high-water mark of real sessions; phantoms count as created', async () => {
    emu.control.setOptions({ maxSessions: 5 });
    emu.control.occupy(2);
    const a = new Client(emu);
    const b = new Client(emu);
    await a.get('/rest/$info');
    await b.get('/rest/$info');
    await a.get('/rest/$directory/logout');
    const s = emu.stats();
    expect([s.sessionsCreated, s.liveSessions, s.maxLiveSessions, s.occupiedSessions]).toEqual([4, 1, 2, 2]);
  });
});

describe('$info sessionInfo', () => {
  it('one entry per session, lifeTime in seconds, expiration ISO, sliding', async () => {
    await c.get('/rest/$info');
    const first = await c.ok('/rest/$info');
    expect(first.sessionInfo).toHaveLength(1);
    const s = first.sessionInfo[0];
    expect(Object.keys(s)).toEqual(['sessionID', 'userName', 'lifeTime', 'expiration']);
    expect(s).toMatchObject({ sessionID: c.sessionId, userName: '', lifeTime: 3600 });
    expect(Date.parse(s.expiration) - Date.now()).toBeGreaterThan(59 * 60_000);
    await sleep(20);
    const later = (await c.ok('/rest/$info')).sessionInfo[0];
    expect(Date.parse(later.expiration)).toBeGreaterThan(Date.parse(s.expiration));
    expect(first).toMatchObject({ cacheSize: expect.any(Number), entitySetCount: 0, HTTPConnections: [] });
    expect(first.entitySet).toBeUndefined();
    expect(first.ProgressInfo).toHaveLength(2);
  });
});

describe('authentication', () => {
  beforeEach(() => emu.control.setOptions({ auth: { user: 'Tropp', password: 'pw:with:colons' } }));

  it("$directory/login: right headers → result true + cookies; wrong → 200 {result:false} and no session (loginRefusal 'result-false')", async () => {
    const bad = await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'Tropp', 'password-4D': 'nope' } });
    expect([bad.status, bad.json, bad.setCookies.length]).toEqual([200, { result: false }, 0]);
    expect(emu.stats().sessionsCreated).toBe(0);
    const ok = await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'Tropp', 'password-4D': 'pw:with:colons' } });
    expect([ok.status, ok.json.result, ok.setCookies.length]).toEqual([200, true, 2]);
    expect((await c.ok('/rest/$directory/currentUser')).result).toMatchObject({ userName: 'Tropp' });
    // with a live session, credentials sent to login are still checked
    const again = await c.post('/rest/$directory/login', '', { headers: { 'username-4D': 'Tropp', 'password-4D': 'x' } });
    expect([again.status, again.json]).toEqual([200, { result: false }]);
    expect((await c.get('/rest/$info')).status).toBe(200); // the session survived
    const s = emu.stats();
    expect([s.authFailures, s.logins, s.sessionsCreated]).toEqual([2, 1, 1]);
  });

  it('logout without a live session answers result true and creates nothing', async () => {
    const r = await c.get('/rest/$directory/logout');
    expect([r.status, r.json.result, r.setCookies.length]).toEqual([200, true, 0]);
    expect(emu.stats().sessionsCreated).toBe(0);
  });

  it('open access: login always succeeds; currentUser is null', async () => {
    emu.control.setOptions({ auth: null });
    expect((await c.post('/rest/$directory/login', '')).json).toEqual({ result: true });
    expect((await c.ok('/rest/$directory/currentUser')).result).toBeNull();
  });
});

describe('sessions end their entity sets', () => {
  it('after expiry the old set id is 404/1802 for the replacement session', async () => {
    const set = (await c.ok('/rest/Kunden?$method=entityset&$top=1')).__ENTITYSET;
    emu.control.expireSessions();
    const r = await c.get(set);
    expect(r.status).toBe(404);
    expect(errCodes(r)).toEqual([1802]);
    expect(r.setCookies).toHaveLength(2);
    expect(emu.stats().entitySets).toBe(0);
  });
});
