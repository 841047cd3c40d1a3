/**
 * Protocol conformance: walks the emulator checklist of 4d-rest-protocol.md §10 item by item, over HTTP.
 * Where the real legacy server disagrees with the protocol doc, the real behaviour is the default.
 */
import { describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, enc, errCodes, quoted, setCookieValue, sleep, startTestEmulator, useEmulator } from './helpers.js';

const FIXTURE = new URL('./fixtures/erp.json', import.meta.url).pathname;
const HEX32 = /^[0-9A-F]{32}$/;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let emu: RunningEmulator;
let c: Client;
useEmulator({}, (e, client) => {
  emu = e;
  c = client;
});

describe('§10.1 routing: /rest prefix, case-insensitive; anything else is a plain 404', () => {
  it('/rest/$info and /REST/$info answer JSON with application/json; charset=UTF-8', async () => {
    for (const path of ['/rest/$info', '/REST/$info', '/Rest/$catalog']) {
      const r = await c.get(path);
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type']).toBe('application/json; charset=UTF-8');
    }
  });

  it('other paths (including /$info without /rest) → 404 text/plain, no session, not counted as REST', async () => {
    for (const path of ['/$info', '/', '/restx/$info', '/index.html']) {
      const r = await c.get(path, { cookie: null });
      expect(r.status, path).toBe(404);
      expect(r.headers['content-type']).toMatch(/^text\/plain/);
      expect(r.setCookies).toEqual([]);
    }
    const s = emu.stats();
    expect(s.requests).toBe(0);
    expect(s.sessionsCreated).toBe(0);
  });

  it('a created session sets WASID4D and 4DSID_<app> with the same 32-hex value', async () => {
    const r = await c.get('/rest/$info');
    const was = setCookieValue(r, 'WASID4D');
    expect(was).toMatch(HEX32);
    expect(setCookieValue(r, '4DSID_WSZ-DB')).toBe(was);
  });
});

describe('§10.2 session resolution: WASID4D first, then 4DSID_<app>; sliding expiry', () => {
  it('a live WASID4D is reused: no Set-Cookie, no new session', async () => {
    await c.get('/rest/$info');
    for (let i = 0; i < 3; i++) {
      const r = await c.get('/rest/Kunden?$top=1');
      expect(r.status).toBe(200);
      expect(r.setCookies).toEqual([]);
    }
    expect(emu.stats().sessionsCreated).toBe(1);
  });

  it('4DSID_<app> alone is enough; a stale WASID4D next to a live 4DSID_<app> falls back to it', async () => {
    const first = await c.get('/rest/$info');
    const id = setCookieValue(first, 'WASID4D')!;
    const only4d = await c.get('/rest/$info', { cookie: `4DSID_WSZ-DB=${id}` });
    expect(only4d.setCookies).toEqual([]);
    const stale = await c.get('/rest/$info', { cookie: `WASID4D=0123456789ABCDEF0123456789ABCDEF; 4DSID_WSZ-DB=${id}` });
    expect(stale.status).toBe(200);
    expect(stale.setCookies).toEqual([]);
    expect(emu.stats().sessionsCreated).toBe(1);
  });

  it('the idle timeout slides on every use; an idle session expires and is silently replaced', async () => {
    emu.control.setOptions({ sessionTimeoutMs: 400 });
    await c.get('/rest/$info');
    const id = c.sessionId;
    for (let i = 0; i < 4; i++) {
      await sleep(200);
      expect((await c.get('/rest/$info')).setCookies, `touch ${i}`).toEqual([]);
    }
    await sleep(550);
    const r = await c.get('/rest/$info');
    expect(r.status).toBe(200);
    expect(setCookieValue(r, 'WASID4D')).toMatch(HEX32);
    expect(c.sessionId).not.toBe(id);
    expect(emu.stats().sessionsCreated).toBe(2);
  });
});

describe('§10.3 authentication, licences, Set-Cookie', () => {
  it('open access: a credential-less request gets a session; the cookies have the documented attributes', async () => {
    const r = await c.get('/rest/$catalog');
    expect(r.status).toBe(200);
    const id = c.sessionId!;
    expect(r.setCookies).toEqual([`WASID4D=${id}; Path=/; Max-Age=3600; HttpOnly`, `4DSID_WSZ-DB=${id}; Path=/; HttpOnly; SameSite=Strict`]);
  });

  it('with auth: no or wrong credentials → 401 + 1822 + empty WWW-Authenticate; right headers → session', async () => {
    emu.control.setOptions({ auth: { user: 'erp', password: 'geheim' } });
    for (const headers of [{}, { 'username-4D': 'erp', 'password-4D': 'falsch' }, { 'username-4D': 'x', 'password-4D': 'geheim' }]) {
      const r = await c.get('/rest/$info', { headers });
      expect(r.status).toBe(401);
      expect(r.headers['content-type']).toBe('application/json; charset=UTF-8');
      expect(r.headers['www-authenticate']).toBe('');
      expect(r.json).toEqual({ __ERROR: [{ message: 'REST login failed', componentSignature: 'dbmg', errCode: 1822 }] });
      expect(r.setCookies).toEqual([]);
    }
    const ok = await c.get('/rest/$info', { headers: { 'username-4D': 'erp', 'password-4D': 'geheim' } });
    expect(ok.status).toBe(200);
    expect(ok.json.sessionInfo[0].userName).toBe('erp');
    expect((await c.get('/rest/Kunden?$top=1')).status).toBe(200); // the cookie is enough afterwards
    expect(emu.stats().authFailures).toBe(3);
  });

  it('licences full → 402 + 1823 + 4D-CREDENTIALS; sessions already open keep working', async () => {
    emu.control.setOptions({ maxSessions: 2 });
    const a = new Client(emu);
    const b = new Client(emu);
    await a.get('/rest/$info');
    await b.get('/rest/$info');
    const r = await c.get('/rest/$info');
    expect(r.status).toBe(402);
    expect(r.headers['4d-credentials']).toBe('1.0');
    expect(r.json).toEqual({ __ERROR: [{ message: 'Maximum number of sessions has been reached', componentSignature: 'dbmg', errCode: 1823 }] });
    expect((await a.get('/rest/Kunden?$top=1')).status).toBe(200);
    expect(emu.stats().rejected402).toBe(1);
  });
});

describe('§10.4 $directory/login and $directory/logout', () => {
  it('login answers {"result":true} with cookies and honours session-4D-length (minutes, at least 60)', async () => {
    const r = await c.post('/rest/$directory/login', '', { headers: { 'session-4D-length': '120' } });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ result: true });
    expect(setCookieValue(r, 'WASID4D')).toMatch(HEX32);
    const info = await c.ok('/rest/$info');
    expect(info.sessionInfo[0].lifeTime).toBe(7200); // seconds, the docs' unit (lifeTimeUnit)
    const d = new Client(emu);
    await d.post('/rest/$directory/login', '', { headers: { 'session-4D-length': '5' } });
    const mine = (await d.ok('/rest/$info')).sessionInfo.find((s: { sessionID: string }) => s.sessionID === d.sessionId);
    expect(mine.lifeTime).toBe(3600);
    expect(emu.stats().logins).toBe(2);
  });

  it('logout ends the session and frees its licence; the old cookie then silently gets a new session', async () => {
    emu.control.setOptions({ maxSessions: 1 });
    await c.get('/rest/$info');
    const other = new Client(emu);
    expect((await other.get('/rest/$info')).status).toBe(402);
    const out = await c.get('/rest/$directory/logout');
    expect(out.json).toEqual({ result: true });
    expect(emu.stats().liveSessions).toBe(0);
    expect((await other.get('/rest/$info')).status).toBe(200);
    await other.post('/rest/$directory/logout', '');
    const again = await c.get('/rest/$info');
    expect(again.status).toBe(200);
    expect(setCookieValue(again, 'WASID4D')).toMatch(HEX32);
    expect(emu.stats().logouts).toBe(2);
  });
});

describe('§10.5 response shapes and value encodings', () => {
  it('envelope keys in order; entities start with __KEY (string), __TIMESTAMP (ISO ms), __STAMP (integer)', async () => {
    const page = await c.ok('/rest/Kunden?$top=2');
    expect(Object.keys(page)).toEqual(['__DATACLASS', '__entityModel', '__GlobalStamp', '__COUNT', '__FIRST', '__ENTITIES', '__SENT']);
    expect(page.__GlobalStamp).toBe(0);
    const e = page.__ENTITIES[0];
    expect(Object.keys(e).slice(0, 4)).toEqual(['__KEY', '__TIMESTAMP', '__STAMP', 'KundenNr']);
    expect(e.__KEY).toBe('10001');
    expect(e.__TIMESTAMP).toMatch(ISO_MS);
    expect(Number.isInteger(e.__STAMP)).toBe(true);
    const catalog = await c.ok('/rest/$catalog/Kunden');
    expect(Object.keys(e).slice(3)).toEqual(catalog.attributes.map((a: { name: string }) => a.name));
  });

  it('dates D!M!YYYY unpadded, 0!0!0 empty, null unset; durations in ms; objects inline; relations and pictures deferred', async () => {
    const page = await c.ok('/rest/Artikel?$top=100');
    const all = page.__ENTITIES as Array<Record<string, any>>;
    for (const e of all) {
      expect(e.created_date).toMatch(/^[1-9]\d?![1-9]\d?!\d{4}$/);
      expect(typeof e.created_time).toBe('number');
      expect(e.created_time % 1000).toBe(0);
      expect(e.Auslaufdatum === null || /^(0!0!0|[1-9]\d?![1-9]\d?!\d{4})$/.test(e.Auslaufdatum)).toBe(true);
      expect(e.Preise.Coll).toBeInstanceOf(Array);
      expect(e.Familie).toEqual({ __deferred: { uri: `/rest/Artikel_Familie[${e.Familie.__deferred.__KEY}]`, __KEY: e.Familie.__deferred.__KEY } });
      if (e.Bild !== null) {
        expect(e.Bild).toEqual({ __deferred: { uri: `/rest/Artikel[${e.__KEY}]/Bild?$imageformat=best&$version=1&$expand=Bild`, image: true } });
      }
      expect(e.UID).toBe(e.__KEY);
      expect(e.UID).toMatch(HEX32);
    }
    const values = (k: string) => all.map((e) => e[k]);
    expect(values('Auslaufdatum')).toContain('0!0!0');
    expect(values('Auslaufdatum')).toContain(null);
    expect(values('modified_date')).toContain(null);
    expect(values('Bild')).toContain(null);
    const fam = await c.ok('/rest/Artikel_Familie?$top=1');
    const key = fam.__ENTITIES[0].__KEY;
    expect(fam.__ENTITIES[0].Varianten).toEqual({ __deferred: { uri: `/rest/Artikel_Familie[${key}]/Varianten?$expand=Varianten` } });
  });

  it('__STAMP increments on each save; successful empty operations answer {"ok":true}', async () => {
    const e = (await c.ok('/rest/Kunden(10001)')) as Record<string, any>;
    const r1 = await c.post('/rest/Kunden?$method=update', { __KEY: e.__KEY, __STAMP: e.__STAMP, Ort: 'Seiffen/Erzgeb.' });
    expect(r1.json.__STAMP).toBe(e.__STAMP + 1);
    const r2 = await c.post('/rest/Kunden?$method=update', { __KEY: e.__KEY, __STAMP: r1.json.__STAMP, Ort: 'Dresden' });
    expect(r2.json.__STAMP).toBe(e.__STAMP + 2);
    const set = await c.ok('/rest/Kunden?$method=entityset&$top=0');
    expect((await c.get(`${set.__ENTITYSET}?$method=release`)).json).toEqual({ ok: true });
  });
});

describe('§10.6 paging: default 100, __SENT = entities returned, never negative', () => {
  it('no $top → 100 entities; $top/$limit/$skip maths; a $skip beyond the end gives an empty page', async () => {
    const d = await c.ok('/rest/Kunden');
    expect([d.__COUNT, d.__FIRST, d.__SENT, d.__ENTITIES.length]).toEqual([500, 0, 100, 100]);
    const p = await c.ok('/rest/Kunden?$skip=490&$top=25');
    expect([p.__FIRST, p.__SENT, p.__ENTITIES[0].__KEY]).toEqual([490, 10, '10491']);
    const l = await c.ok('/rest/Kunden?$limit=3&$skip=7');
    expect([l.__FIRST, l.__SENT, l.__ENTITIES.map((e: { __KEY: string }) => e.__KEY)]).toEqual([7, 3, ['10008', '10009', '10010']]);
    const beyond = await c.ok('/rest/Kunden?$skip=900&$top=10');
    expect([beyond.__COUNT, beyond.__FIRST, beyond.__SENT, beyond.__ENTITIES]).toEqual([500, 900, 0, []]);
  });
});

describe('§10.7 $filter: quote-aware tokenizer, ORDA subset, errors are 500 + __ERROR', () => {
  it('a raw double-quoted filter keeps & and = inside; single-quoted conditions work; placeholders take @ wildcards', async () => {
    const fx = await startTestEmulator({ data: FIXTURE });
    try {
      const f = new Client(fx);
      const names = async (q: string) => ((await f.ok(`/rest/Kunde?${q}&$attributes=Name`)).__ENTITIES as Array<{ Name: string }>).map((e) => e.Name);
      expect(await names(`$filter="Name='Müller & Söhne'"`)).toEqual(['Müller & Söhne']);
      expect(await names(`$filter='ID = 1' or 'ID = 8'`)).toEqual(['Müller & Söhne', 'Meier']);
      expect(await names(`$filter=${enc(`'Familie_ = "5E6A0C0FFEE000000000000000000A01"'`)}`)).toEqual(['O\'Reilly "Books"']);
      expect(await names(`$filter=${quoted('Name = :1 and Umsatz > :2')}&$params=${enc(`'["m@", 100]'`)}`)).toEqual(['Müller & Söhne', 'Meier']);
    } finally {
      await fx.stop();
    }
  });

  it('bad filters are never ignored: 500 with an __ERROR stack; an open quote in the URL is 400/1806', async () => {
    const bad = [
      ['Nummer eq 5', 1162],
      ['Nummer = ', 1162],
      ['Nope = 1', 1500],
      ['__TIMESTAMP > "2020-01-01"', 1500],
      ['Nummer = :1', 1279],
    ] as const;
    for (const [filter, code] of bad) {
      const r = await c.get(`/rest/Artikel?$filter=${quoted(filter)}`);
      expect(r.status, filter).toBe(500);
      expect(errCodes(r), filter).toContain(code);
    }
    // strict < / > on dates are evaluated by default; strictDateCompare=reject is the older reading (500/1162)
    expect((await c.get(`/rest/Artikel?$filter=${quoted("created_date > '2020-01-01'")}&$top=0`)).status).toBe(200);
    emu.control.setOptions({ strictDateCompare: 'reject' });
    expect(errCodes(await c.get(`/rest/Artikel?$filter=${quoted("created_date > '2020-01-01'")}&$top=0`))).toEqual([1162]);
    const open = await c.get(`/rest/Artikel?$filter="Nummer=1`);
    expect(open.status).toBe(400);
    expect(errCodes(open)).toEqual([1809, 1806]);
  });
});

describe('§10.8 $method=update: stamp check, partial failure → 500, $atomic rollback', () => {
  it('a stale stamp → 1263/1046/1517 + __STATUS 2 "Stamp has changed", current values, nothing saved', async () => {
    const e = await c.ok('/rest/Kunden(10002)');
    const r = await c.post('/rest/Kunden?$method=update', { __KEY: e.__KEY, __STAMP: e.__STAMP - 1, Ort: 'Nirgendwo' });
    expect(r.status).toBe(500);
    expect(r.json.__STATUS).toEqual({ status: 2, statusText: 'Stamp has changed', success: false });
    expect(errCodes(r)).toEqual([1263, 1046, 1517]);
    expect(r.json.Ort).toBe(e.Ort);
    expect((await c.ok('/rest/Kunden(10002)')).__STAMP).toBe(e.__STAMP);
    expect(emu.stats().conflicts).toBe(1);
  });

  it('an array with one failing item → 500, the good item is saved; with $atomic=true nothing is saved', async () => {
    const a = await c.ok('/rest/Kunden(10003)');
    const body = [
      { __KEY: a.__KEY, __STAMP: a.__STAMP, Ort: 'Leipzig' },
      { __KEY: '99999', __STAMP: 1, Ort: 'x' },
    ];
    const atomic = await c.post('/rest/Kunden?$method=update&$atomic=true', body);
    expect(atomic.status).toBe(500);
    expect((await c.ok('/rest/Kunden(10003)')).__STAMP).toBe(a.__STAMP);
    expect(emu.stats().updates).toBe(0);
    const partial = await c.post('/rest/Kunden?$method=update', body);
    expect(partial.status).toBe(500);
    expect(partial.json.__ENTITIES).toHaveLength(2);
    expect(partial.json.__ENTITIES[0]).toMatchObject({ __KEY: '10003', __STAMP: a.__STAMP + 1, Ort: 'Leipzig' });
    expect(partial.json.__ENTITIES[1].__STATUS).toEqual({ status: 5, statusText: 'Entity does not exist anymore', success: false });
    expect(errCodes({ json: partial.json.__ENTITIES[1] } as never)).toEqual([1542]);
    expect(emu.stats().updates).toBe(1);
  });
});

describe('§10.9 entity sets: 32-hex ids, 2 h sliding TTL, release, 404/1802, $savedfilter recreation', () => {
  it('a stored set is listed in $info with a 2 h expiry; release answers ok; a released set is 404/1802', async () => {
    const page = await c.ok('/rest/Kunden?$filter=PLZ%20begin%200&$method=entityset&$top=5');
    const [, id] = /\/rest\/Kunden\/\$entityset\/([0-9A-F]{32})$/.exec(page.__ENTITYSET)!;
    const info = await c.ok('/rest/$info');
    expect(info.entitySetCount).toBe(1);
    const expires = Date.parse(info.entitySet[0].expires) - Date.now();
    expect(expires).toBeGreaterThan(7190_000);
    expect(expires).toBeLessThanOrEqual(7200_000);
    expect(info.entitySet[0]).toMatchObject({ id, dataClass: 'Kunden', selectionSize: page.__COUNT });
    expect((await c.get(`/rest/Kunden/$entityset/${id}?$method=release`)).json).toEqual({ ok: true });
    const gone = await c.get(`/rest/Kunden/$entityset/${id}`);
    expect(gone.status).toBe(404);
    expect(errCodes(gone)).toEqual([1802]);
  });

  it('$timeout slides on use; a lost set comes back under the same id through $savedfilter', async () => {
    const made = await c.ok('/rest/Kunden?$filter=KundenNr%3C10011&$method=entityset&$timeout=1&$top=1');
    const uri = made.__ENTITYSET as string;
    await sleep(600);
    expect((await c.get(`${uri}?$top=1`)).status).toBe(200); // touched: lives another second
    await sleep(600);
    expect((await c.get(`${uri}?$top=1`)).status).toBe(200);
    await sleep(1100);
    expect((await c.get(uri)).status).toBe(404);
    const back = await c.ok(`${uri}?$savedfilter=${enc('"KundenNr<10011"')}&$top=3`);
    expect(back.__ENTITYSET).toBe(uri);
    expect([back.__COUNT, back.__SENT]).toEqual([10, 3]);
  });
});

describe('§10.10 fault knobs: licence exhaustion, silent session expiry, v17 __TIMESTAMP quoting', () => {
  it('occupied licences → 402 for a newcomer; released → the newcomer gets in', async () => {
    emu.control.setOptions({ maxSessions: 2 });
    emu.control.occupy(2);
    expect((await c.get('/rest/$info')).status).toBe(402);
    emu.control.releaseOccupied();
    expect((await c.get('/rest/$info')).status).toBe(200);
  });

  it('expired sessions: the next request silently gets a new cookie', async () => {
    await c.get('/rest/$info');
    const before = c.sessionId;
    expect(emu.control.expireSessions()).toBe(1);
    const r = await c.get('/rest/Kunden?$top=1');
    expect(r.status).toBe(200);
    expect(c.sessionId).not.toBe(before);
  });

  it('quotedTimestamps renders __TIMESTAMP as a string with embedded quotes', async () => {
    emu.control.setOptions({ quotedTimestamps: true });
    const e = (await c.ok('/rest/Kunden?$top=1')).__ENTITIES[0];
    expect(e.__TIMESTAMP).toMatch(/^"\d{4}-\d{2}-\d{2}T[\d:.]+Z"$/);
  });
});
