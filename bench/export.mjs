// npm run bench:export — the export and the write side, in one run against the emulator (its own
// process), every figure a median of alternating runs (BENCH_RUNS, default 5), so that drift of the
// machine (other load, caches) hits every contender alike:
//   (a) a bare keep-alive HTTP loop that reads every page and parses nothing (bench/bare-loop.mjs, the floor),
//   (b) legacy get-table Artikel --csv -o FILE, (c) --ndjson, (d) --json, all at default settings,
//   (e) legacy sync Artikel into a fresh SQLite database (a full first sync),
//   (f) --xlsx -o FILE,
//   (g) legacy sync Artikel into a fresh PostgreSQL database (a real server started as the tests
//       start it; skipped when PostgreSQL is not installed),
//   with wall-time ratios to (a), to (b), and peak RSS;
//   the latency pair: the emulator answering every request 50 ms late, (a) against (b) (BENCH_LATENCY_RUNS, default 3);
//   peak RSS of (b), (e), (f) and (g) at 1,000,000 rows (BENCH_BIG_ROWS; 0 skips);
//   with BENCH_BEFORE=<another checkout>, that checkout's (b), (e), (f) and (g) alternate with the
//   others ("before"), so a change is measured against its predecessor in the same run.
// Goals: (b) ≤ 1.2x (a); (c), (d) no slower than (b); (b) ≤ 0.35x (a) at 50 ms (issue 26); peak RSS
// ≤ 150 MB, flat from 200,000 to 1,000,000 rows (sync too), xlsx ≤ 200 MB; issue 26: (e) ≤ 1.1x (b),
// (f) ≤ 1.3x (b), (g) ≤ 1.3x (b).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres } from '../test/helpers/services.mjs';
import { benchEnv, control, legacyBin, mb, measure, root, s, startEmulatorProcess, tempDir } from './lib.mjs';

const rows = Number(process.env.BENCH_ROWS ?? 200_000);
const bigRows = Number(process.env.BENCH_BIG_ROWS ?? 1_000_000);
const runs = Number(process.env.BENCH_RUNS ?? 5);
const latencyRuns = Number(process.env.BENCH_LATENCY_RUNS ?? 3);
const latencyMs = 50;
const pageSize = 1000;
const median = (values) => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const work = tempDir();
// One config dir for every run: the stored session is reused, as under cron.
const env = (url) => benchEnv(work, url);

async function checked(r, what) {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr}`);
  return r;
}

function bareLoop(url, total) {
  return measure(process.execPath, [join(root, 'bench', 'bare-loop.mjs'), url, 'Artikel', String(total), String(pageSize)]).then((r) =>
    checked(r, 'the bare loop'),
  );
}

const before = process.env.BENCH_BEFORE ? join(process.env.BENCH_BEFORE, 'bin', 'legacy.js') : undefined;

async function getTable(url, args, bin = legacyBin) {
  const out = join(work, 'out');
  const e = env(url);
  // The other checkout keeps its own session file (its format may differ).
  if (bin !== legacyBin) e.LEGACY_CONFIG_DIR = join(work, 'cfg-before');
  const r = await measure(process.execPath, [bin, 'get-table', 'Artikel', ...args, '-o', out], { env: e });
  rmSync(out, { force: true });
  return checked(r, `get-table ${args.join(' ')}`);
}

let syncs = 0;
/** A full first sync into a fresh SQLite file. */
async function syncSqlite(url, bin = legacyBin) {
  const db = join(work, `sync-${syncs++}.sqlite`);
  const e = env(url);
  if (bin !== legacyBin) e.LEGACY_CONFIG_DIR = join(work, 'cfg-before');
  const r = await measure(process.execPath, [bin, 'sync', 'Artikel', '--db', db], { env: e });
  for (const suffix of ['', '-wal', '-shm', '.lock']) rmSync(`${db}${suffix}`, { force: true });
  return checked(r, 'sync (SQLite)');
}

const postgres = await startPostgres();
/** A full first sync into a fresh PostgreSQL database (all go when the server stops). */
async function syncPostgres(url, bin = legacyBin) {
  const db = await postgres.newDatabase(`sync${syncs++}`);
  const e = env(url);
  if (bin !== legacyBin) e.LEGACY_CONFIG_DIR = join(work, 'cfg-before');
  const r = await measure(process.execPath, [bin, 'sync', 'Artikel', '--db', db], { env: e });
  return checked(r, 'sync (PostgreSQL)');
}

/** Alternate the contenders `times` times; per contender the runs. */
async function alternate(times, contenders) {
  const results = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  for (let i = 0; i < times; i++) for (const [name, run] of Object.entries(contenders)) results[name].push(await run());
  return results;
}

const summary = (list) => ({ ms: median(list.map((r) => r.ms)), peakRss: Math.max(...list.map((r) => r.peakRss)), cpu: median(list.map((r) => r.cpuMs)) });
const line = (label, r, floor) =>
  `${label.padEnd(40)} ${s(r.ms).padStart(8)}${floor ? `  ratio ${(r.ms / floor.ms).toFixed(2)}` : '           '}  CPU ${s(r.cpu).padStart(7)}  peak RSS ${mb(r.peakRss)}`;

const emu = await startEmulatorProcess(['--rows', `Artikel=${rows}`, '--max-sessions', '10']);
try {
  console.log(
    `Artikel, ${rows.toLocaleString('en-US')} rows, pages of ${pageSize}; medians of ${runs} alternating runs (wall, user+sys CPU; peak RSS the highest)`,
  );
  await bareLoop(emu.url, 20_000); // warm the emulator's caches
  await getTable(emu.url, ['--csv', '--limit', '10']); // and the stored session
  const r = await alternate(runs, {
    loop: () => bareLoop(emu.url, rows),
    csv: () => getTable(emu.url, ['--csv']),
    ndjson: () => getTable(emu.url, ['--ndjson']),
    json: () => getTable(emu.url, ['--json']),
    sqlite: () => syncSqlite(emu.url),
    xlsx: () => getTable(emu.url, ['--xlsx']),
    ...(postgres ? { pg: () => syncPostgres(emu.url) } : {}),
    ...(before
      ? {
          before: () => getTable(emu.url, ['--csv'], before),
          beforeSqlite: () => syncSqlite(emu.url, before),
          beforeXlsx: () => getTable(emu.url, ['--xlsx'], before),
          ...(postgres ? { beforePg: () => syncPostgres(emu.url, before) } : {}),
        }
      : {}),
  });
  const loop = summary(r.loop);
  const csv = summary(r.csv);
  const toCsv = (x, goal) => `  /csv ${(x.ms / csv.ms).toFixed(2)}${goal ? ` (goal ≤ ${goal})` : ''}`;
  console.log(line('(a) bare keep-alive page loop', loop));
  console.log(line('(b) get-table --csv -o', csv, loop));
  if (before) console.log(line('(b) before: BENCH_BEFORE --csv -o', summary(r.before), loop));
  console.log(line('(c) get-table --ndjson -o', summary(r.ndjson), loop));
  console.log(line('(d) get-table --json -o', summary(r.json), loop));
  const contenders = [
    ['(e) sync Artikel, full, SQLite', 'sqlite', 'beforeSqlite', 1.1],
    ['(f) get-table --xlsx -o', 'xlsx', 'beforeXlsx', 1.3],
    ['(g) sync Artikel, full, PostgreSQL', 'pg', 'beforePg', 1.3],
  ];
  for (const [label, key, beforeKey, goal] of contenders) {
    if (!r[key]) {
      console.log(`${label.padEnd(40)} skipped: PostgreSQL is not installed`);
      continue;
    }
    console.log(`${line(label, summary(r[key]), loop)}${toCsv(summary(r[key]), goal)}`);
    if (before && r[beforeKey]) console.log(`${line(`${label.slice(0, 4)}before`, summary(r[beforeKey]), loop)}${toCsv(summary(r[beforeKey]))}`);
  }

  await control(emu.url, 'options', { latencyMs });
  const l = await alternate(latencyRuns, {
    loop: () => bareLoop(emu.url, rows),
    csv: () => getTable(emu.url, ['--csv']),
    ...(before ? { before: () => getTable(emu.url, ['--csv'], before) } : {}),
  });
  const loop50 = summary(l.loop);
  console.log(`every answer ${latencyMs} ms late, medians of ${latencyRuns} alternating runs (goal: (b) ≤ 0.35 of (a)):`);
  console.log(line(`(a) bare page loop, ${latencyMs} ms`, loop50));
  console.log(line(`(b) get-table --csv -o, ${latencyMs} ms`, summary(l.csv), loop50));
  if (before) console.log(line(`(b) before, ${latencyMs} ms`, summary(l.before), loop50));
  await control(emu.url, 'options', { latencyMs: 0 });
} finally {
  await emu.stop();
}

if (bigRows > 0) {
  const big = await startEmulatorProcess(['--rows', `Artikel=${bigRows}`, '--max-sessions', '10']);
  const at = (label, r) => console.log(`${label} at ${bigRows.toLocaleString('en-US')} rows: ${s(r.ms)}, peak RSS ${mb(r.peakRss)}`);
  try {
    at('(b) --csv', await getTable(big.url, ['--csv']));
    if (before) at('(b) before: --csv', await getTable(big.url, ['--csv'], before));
    at('(e) sync, SQLite', await syncSqlite(big.url));
    at('(f) --xlsx', await getTable(big.url, ['--xlsx']));
    if (postgres) at('(g) sync, PostgreSQL', await syncPostgres(big.url));
  } finally {
    await big.stop();
  }
}
await postgres?.stop();
rmSync(work, { recursive: true, force: true });
