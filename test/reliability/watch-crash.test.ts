/**
 * Issue 25: the change feed under churn and kill -9. The emulator changes Kunden at 50 changes/s;
 * a follower is started and SIGKILLed again and again (10 times; 30 under LEGACY_STRESS), then the
 * churn stops and one `watch --once` drains. Over all the runs' output: no changed record is
 * missing, each record's last event carries its final state and kind, untouched records get none;
 * duplicates are allowed (at least once) and are the same event (same id) each time.
 * With 4D change tracking on and off.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, collect, spawnCli } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { runMain } from '../helpers/run.js';
import { expectFeedMatches, parseEvents, type FeedEvent } from '../helpers/watch.js';
import { seededRandom, size, sleep } from './support.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.control('churn', undefined, 'DELETE').catch(() => undefined);
  await server?.stop();
  server = undefined;
});
afterAll(() => cleanupTempDirs());

describe.each([
  ['tracks changes', ['Kunden']],
  ['does not track changes', false],
] as const)('a server that %s', (_label, changeTracking) => {
  it('kill -9 and restart under churn: nothing missing, last events carry the final state', async () => {
    server = await startServer({ rows: { Kunden: 300 }, changeTracking: changeTracking as string[] | false, maxSessions: 20 });
    const random = seededRandom(25);
    // Start at now, before the churn: the feed's first run only takes its snapshot.
    expect((await runMain(['watch', 'Kunden', '--once'], { env: server.env })).code).toBe(0);
    await server.control('churn', { tables: ['Kunden'], rate: 50, seed: 7 });
    let output = '';
    let killed = 0;
    for (let i = 0; i < size(10, 30); i++) {
      const child = spawnCli(['watch', 'Kunden', '--interval', '100ms', '--reconcile-interval', '1s'], { env: server.env });
      const done = collect(child, { timeoutMs: 60_000 });
      await sleep(700 + Math.floor(random() * 900));
      child.kill('SIGKILL');
      const r = await done;
      if (r.signal === 'SIGKILL') killed++;
      expect(r.stderr).not.toMatch(/\n\s+at\s/);
      output += r.stdout;
    }
    expect(killed).toBeGreaterThanOrEqual(size(10, 30) - 1);
    await server.control('churn', undefined, 'DELETE');
    const drain = await runMain(['watch', 'Kunden', '--once'], { env: server.env });
    expect(drain.code, drain.stderr).toBe(0);
    const events: FeedEvent[] = parseEvents(output + drain.stdout);
    expect(events.length).toBeGreaterThan(50);
    await expectFeedMatches(server, 'Kunden', events);
    // A duplicate is the same change: same id, same content.
    const byId = new Map<string, string>();
    for (const e of events) {
      const text = JSON.stringify({ ...e, time: undefined });
      if (byId.has(e.id)) expect(text).toBe(byId.get(e.id));
      byId.set(e.id, text);
    }
  });
});
