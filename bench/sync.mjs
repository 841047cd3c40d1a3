// npm run bench:sync — with 200,000 Artikel rows in the emulator (its own process), in one run:
// get-table --csv (reference), then for SQLite and PostgreSQL side by side: a full sync, an
// incremental sync after mutating 1% of rows, one with nothing changed, `sync verify` (the
// key-and-stamp scan alone) and `sync --reconcile` with nothing changed; then, against a second
// emulator with 4D's change tracking on, a full sync and an incremental one after 1% of changes
// (updates that leave the dates alone, inserts with old dates, deletes). Prints wall times, rows
// fetched and the ratios. PostgreSQL is a real server started by test/helpers/services.mjs on a
// free 127.0.0.1 port; without PostgreSQL installed its column is skipped.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startPostgres } from '../test/helpers/services.mjs';
import { control, legacyBin, measure, s, startEmulatorProcess, tempDir, benchEnv } from './lib.mjs';

const rows = Number(process.env.BENCH_ROWS ?? 200_000);
// 'whole' is how the 4D source decodes URLs (the incremental window must hold under it).
const decoding = process.env.BENCH_URL_DECODING ?? 'whole';
const emu = await startEmulatorProcess(['--rows', `Artikel=${rows}`, '--max-sessions', '10', '--url-decoding', decoding]);
const work = tempDir();
const env = benchEnv(work, emu.url);
const postgres = await startPostgres();

async function legacy(args) {
  const r = await measure(process.execPath, [legacyBin, ...args], { env });
  if (r.code !== 0) throw new Error(`legacy ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

async function syncRun(target, label, extra = [], runEnv = env) {
  const started = process.hrtime.bigint();
  const verify = extra[0] === 'verify';
  const args = verify ? ['sync', 'verify', 'Artikel', '--json', ...target.args] : ['sync', 'Artikel', '--json', ...extra, ...target.args];
  const child = spawn(process.execPath, [legacyBin, ...args], { env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise((r) => child.once('exit', r));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (code !== 0) throw new Error(`sync (${target.name}) exited ${code}: ${err}`);
  const t = JSON.parse(out).tables[0];
  const what = verify
    ? `${t.equal ? 'equal' : 'DIFFERS'}: server ${t.server}, missing ${t.missing}, extra ${t.extra}, stale ${t.stale}`
    : `${t.mode} (${t.tracking}), fetched ${t.fetched}, inserted ${t.inserted}, updated ${t.updated}, deleted ${t.deleted}`;
  console.log(`${target.name.padEnd(11)} ${label.padEnd(34)} ${s(ms)}  ${what}`);
  return ms;
}

try {
  const targets = [{ name: 'SQLite', args: [] }];
  if (postgres) targets.push({ name: 'PostgreSQL', args: ['--db', await postgres.newDatabase('bench')] });
  await legacy(['get-table', 'Artikel', '--csv', '-o', join(work, 'warm.csv')]); // warm the emulator and the session
  const csv = await legacy(['get-table', 'Artikel', '--csv', '-o', join(work, 'a.csv')]);
  console.log(`Artikel, ${rows.toLocaleString('en-US')} rows, emulator --url-decoding ${decoding}`);
  console.log(`${'get-table --csv -o'.padEnd(42)} ${s(csv.ms)}`);
  // Each step runs on every target before the emulator changes, so all read the same rows.
  const times = new Map(targets.map((t) => [t, {}]));
  for (const t of targets) times.get(t).full = await syncRun(t, 'full sync');
  await control(emu.url, 'mutate', { table: 'Artikel', update: Math.round(rows / 100) });
  for (const t of targets) times.get(t).incr = await syncRun(t, 'incremental after 1% updated');
  for (const t of targets) times.get(t).idle = await syncRun(t, 'incremental, nothing changed');
  for (const t of targets) times.get(t).verify = await syncRun(t, 'sync verify (key+stamp scan)', ['verify']);
  for (const t of targets) times.get(t).reconcile = await syncRun(t, '--reconcile, nothing changed', ['--reconcile']);
  for (const [t, { full, incr, idle, verify, reconcile }] of times) {
    console.log(
      `${t.name.padEnd(11)} full / get-table --csv: ${(full / csv.ms).toFixed(2)} (goal ≤ ${t.name === 'SQLite' ? '1.1' : '1.3'}); incremental / full: ${(incr / full).toFixed(3)} (goal ≤ 0.1); nothing changed / full: ${(idle / full).toFixed(3)}`,
    );
    console.log(
      `${t.name.padEnd(11)} reconcile scan (verify) / full: ${(verify / full).toFixed(3)} (goal ≤ 0.25); whole --reconcile run / full: ${(reconcile / full).toFixed(3)}`,
    );
  }

  // 4D data change tracking: the exact incremental read.
  const tracked = await startEmulatorProcess(['--rows', `Artikel=${rows}`, '--max-sessions', '10', '--url-decoding', decoding, '--change-tracking', 'Artikel']);
  try {
    const trackedEnv = { ...env, LEGACY_BASE_URL: tracked.url, LEGACY_CONFIG_DIR: join(work, 'cfg-tracked'), LEGACY_DATA_DIR: join(work, 'data-tracked') };
    const trackedTargets = [{ name: 'SQLite', args: ['--db', join(work, 'tracked.sqlite')] }];
    if (postgres) trackedTargets.push({ name: 'PostgreSQL', args: ['--db', await postgres.newDatabase('tracked')] });
    const tt = new Map(trackedTargets.map((t) => [t, {}]));
    for (const t of trackedTargets) tt.get(t).full = await syncRun(t, 'tracked: full sync', [], trackedEnv);
    const one = Math.round(rows / 100);
    await control(tracked.url, 'mutate', {
      table: 'Artikel',
      update: Math.round(one * 0.8),
      insert: Math.round(one * 0.1),
      delete: Math.round(one * 0.1),
      dates: 'keep',
    });
    for (const t of trackedTargets) tt.get(t).incr = await syncRun(t, 'tracked: incremental after 1%', [], trackedEnv);
    for (const [t, { full, incr }] of tt) console.log(`${t.name.padEnd(11)} change tracking: incremental / full: ${(incr / full).toFixed(3)} (goal ≤ 0.05)`);
  } finally {
    await tracked.stop();
  }
  if (!postgres) console.log('PostgreSQL  skipped: initdb/postgres not found (install with: apt-get install -y postgresql)');
} finally {
  await emu.stop();
  await postgres?.stop();
}
