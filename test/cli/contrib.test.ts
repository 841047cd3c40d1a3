/**
 * The alert rules and the dashboard that ship in contrib/: promtool accepts the rules and their unit tests pass, and
 * every metric name they use is one that real runs of the CLI write into a metrics file.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { runMain } from '../helpers/run.js';
import { promtool } from '../helpers/services.mjs';

const CONTRIB = fileURLToPath(new URL('../../contrib/', import.meta.url));
const RULES = join(CONTRIB, 'prometheus', 'legacy.rules.yml');
const DASHBOARD = join(CONTRIB, 'grafana', 'legacy.dashboard.json');
const tool = promtool();

let server: TestServer | undefined;
afterAll(async () => {
  await server?.stop();
  cleanupTempDirs();
});

/** Metric names in a text: `legacy_…` words (alert names are CamelCase, so they never match). */
function metricNames(text: string): Set<string> {
  return new Set(text.match(/\blegacy_[a-z0-9_]+/g) ?? []);
}

/** Every PromQL expression of the dashboard, wherever a panel or a variable keeps it. */
function dashboardExpressions(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) dashboardExpressions(n, out);
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if ((key === 'expr' || key === 'definition') && typeof value === 'string') out.push(value);
      else if (key === 'query' && typeof value === 'string') out.push(value);
      else dashboardExpressions(value, out);
    }
  }
  return out;
}

describe.skipIf(!tool)('contrib/prometheus', () => {
  it('promtool checks the rules and their unit tests pass', () => {
    const check = spawnSync(tool!, ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    const unit = spawnSync(tool!, ['test', 'rules', 'legacy.rules.test.yml'], { cwd: join(CONTRIB, 'prometheus'), encoding: 'utf8' });
    expect(unit.status, `${unit.stdout}${unit.stderr}`).toBe(0);
  });
});

describe('contrib metric names', () => {
  it('every metric the rules and the dashboard use is one the CLI writes', async () => {
    server = await startServer({ rows: { Kunden: 30, Artikel: 20 }, changeTracking: ['Kunden'] });
    const file = join(tempDir('legacy-contrib-'), 'legacy.prom');
    const db = join(tempDir('legacy-contrib-db-'), 'copy.sqlite');
    const env = { ...server.env, LEGACY_METRICS_FILE: file };
    for (const argv of [
      ['get-table', 'Artikel', '--csv'],
      ['sync', 'Artikel', '--db', db],
      ['sync', 'verify', 'Artikel', '--db', db],
      ['watch', 'Kunden', '--once'],
    ]) {
      const r = await runMain(argv, { env });
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const written = metricNames(readFileSync(file, 'utf8'));
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as unknown;
    const expressions = dashboardExpressions(dashboard);
    expect(expressions.length).toBeGreaterThan(10);
    const used = new Set([...metricNames(readFileSync(RULES, 'utf8')), ...metricNames(expressions.join('\n'))]);
    expect(used.size).toBeGreaterThan(10);
    expect([...used].filter((name) => !written.has(name)).sort()).toEqual([]);
  });
});
