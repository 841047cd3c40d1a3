/**
 * A 1,000,000-row table is served from generators: nothing made up front, pages far into it, modest
 * memory. Memory is the proof here; how fast it serves is bench:emulator's (never a timed test).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { Client, quoted, startTestEmulator } from './helpers.js';

const ROWS = 1_000_000;
let emu: RunningEmulator;
let c: Client;
let rssBefore: number;
let rssStarted: number;

beforeAll(async () => {
  globalThis.gc?.();
  rssBefore = process.memoryUsage().rss;
  emu = await startTestEmulator({ rows: { Artikel: ROWS } });
  rssStarted = process.memoryUsage().rss;
  c = new Client(emu);
});
afterAll(() => emu.stop());

describe('Artikel with 1,000,000 rows', () => {
  it('generates nothing up front (a million materialised rows would take hundreds of MB)', () => {
    expect(rssStarted - rssBefore).toBeLessThan(60 * 1024 * 1024);
  });

  it('serves pages far into the table; keys map back to rows; RSS stays modest', async () => {
    const last = await c.ok('/rest/Artikel?$skip=999000&$top=1000');
    expect([last.__COUNT, last.__FIRST, last.__SENT]).toEqual([ROWS, 999_000, 1000]);
    for (let skip = 500_000; skip < 510_000; skip += 1000) {
      const page = await c.ok(`/rest/Artikel?$skip=${skip}&$top=1000`);
      expect([page.__FIRST, page.__SENT]).toEqual([skip, 1000]);
    }
    const far = last.__ENTITIES[654];
    const one = await c.ok(`/rest/Artikel[${far.__KEY}]`);
    expect(one).toEqual({ __entityModel: 'Artikel', ...far });
    expect(new Set(last.__ENTITIES.map((e: { Nummer: number }) => e.Nummer)).size).toBe(1000);
    const grown = process.memoryUsage().rss - rssBefore;
    expect(grown).toBeLessThan(250 * 1024 * 1024);
  });

  it('filters scan generated values; changes are overlays (a deletion shifts later pages by one)', async () => {
    const row = (await c.ok('/rest/Artikel?$skip=876543&$top=1')).__ENTITIES[0];
    const hit = await c.ok(`/rest/Artikel?$filter=${quoted(`Nummer = ${row.Nummer}`)}`);
    expect(hit.__ENTITIES.map((e: { __KEY: string }) => e.__KEY)).toEqual([row.__KEY]);
    const before = (await c.ok('/rest/Artikel?$skip=999998&$top=2')).__ENTITIES.map((e: { __KEY: string }) => e.__KEY);
    const { deleted, updated } = emu.control.mutate({ table: 'Artikel', delete: 1, update: 2, seed: 3 });
    const after = await c.ok('/rest/Artikel?$skip=999997&$top=5');
    expect(after.__COUNT).toBe(ROWS - 1);
    expect(after.__ENTITIES.map((e: { __KEY: string }) => e.__KEY)).toEqual(before);
    expect((await c.get(`/rest/Artikel[${deleted[0]}]`)).status).toBe(404);
    expect((await c.ok(`/rest/Artikel[${updated[0]}]`)).Bezeichnung).toMatch(/\(geändert \d+\)$/);
  });
});
