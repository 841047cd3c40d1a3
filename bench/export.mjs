// npm run bench:export — issue 15's measurements, in one run against the emulator (its own process),
// every figure a median of alternating runs (BENCH_RUNS, default 5), so that drift of the machine
// (other load, caches) hits every contender alike:
//   (a) a bare keep-alive HTTP loop that reads every page and parses nothing (bench/bare-loop.mjs, the floor),
//   (b) legacy get-table Artikel --csv -o FILE, (c) --ndjson, (d) --json, all at default settings,
//   (e) legacy sync Artikel into a fresh SQLite database (a full sync: it shares the export's pipeline),
//   with wall-time ratios to (a) and peak RSS;
//   the latency pair: the emulator answering every request 50 ms late, (a) against (b) (BENCH_LATENCY_RUNS, default 3);
//   (f) --xlsx against --csv (BENCH_XLSX_RUNS, default 3);
//   peak RSS of (b) and (f) at 1,000,000 rows (BENCH_BIG_ROWS; 0 skips);
//   with BENCH_BEFORE=<another checkout>, that checkout's get-table --csv -o alternates with the others
//   ("before"), so a change is measured against its predecessor in the same run.
// Goals (issue 15): (b) ≤ 1.2x (a); (c), (d) no slower than (b); (b) ≤ 0.4x (a) at 50 ms; peak RSS
// ≤ 150 MB, flat from 200,000 to 1,000,000 rows; (e) ≤ 1.2x (b). Issue 17: (f) ≤ 2x (b).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { benchEnv, control, legacyBin, mb, measure, root, s, startEmulatorProcess, tempDir } from './lib.mjs';

const rows = Number(process.env.BENCH_ROWS ?? 200_000);
const bigRows = Number(process.env.BENCH_BIG_ROWS ?? 1_000_000);
const runs = Number(process.env.BENCH_RUNS ?? 5);
const latencyRuns = Number(process.env.BENCH_LATENCY_RUNS ?? 3);
const xlsxRuns = Number(process.env.BENCH_XLSX_RUNS ?? 3);
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
async function syncFull(url) {
  const db = join(work, `sync-${syncs++}.sqlite`);
  const r = await measure(process.execPath, [legacyBin, 'sync', 'Artikel', '--db', db], { env: env(url) });
  rmSync(db, { force: true });
  rmSync(`${db}-wal`, { force: true });
  rmSync(`${db}-shm`, { force: true });
  return checked(r, 'sync');
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
    sync: () => syncFull(emu.url),
    ...(before ? { before: () => getTable(emu.url, ['--csv'], before) } : {}),
  });
  const loop = summary(r.loop);
  const csv = summary(r.csv);
  console.log(line('(a) bare keep-alive page loop', loop));
  console.log(line('(b) get-table --csv -o', csv, loop));
  if (before) console.log(line('(b) before: BENCH_BEFORE --csv -o', summary(r.before), loop));
  console.log(line('(c) get-table --ndjson -o', summary(r.ndjson), loop));
  console.log(line('(d) get-table --json -o', summary(r.json), loop));
  const sync = summary(r.sync);
  console.log(`${line('(e) sync Artikel, full, SQLite', sync, loop)}  sync/csv ${(sync.ms / csv.ms).toFixed(2)}`);

  await control(emu.url, 'options', { latencyMs });
  const l = await alternate(latencyRuns, {
    loop: () => bareLoop(emu.url, rows),
    csv: () => getTable(emu.url, ['--csv']),
    ...(before ? { before: () => getTable(emu.url, ['--csv'], before) } : {}),
  });
  const loop50 = summary(l.loop);
  console.log(`every answer ${latencyMs} ms late, medians of ${latencyRuns} alternating runs:`);
  console.log(line(`(a) bare page loop, ${latencyMs} ms`, loop50));
  console.log(line(`(b) get-table --csv -o, ${latencyMs} ms`, summary(l.csv), loop50));
  if (before) console.log(line(`(b) before, ${latencyMs} ms`, summary(l.before), loop50));
  await control(emu.url, 'options', { latencyMs: 0 });

  const x = await alternate(xlsxRuns, { csv: () => getTable(emu.url, ['--csv']), xlsx: () => getTable(emu.url, ['--xlsx']) });
  const xcsv = summary(x.csv);
  const xlsx = summary(x.xlsx);
  console.log(
    `(f) --xlsx -o vs --csv -o, medians of ${xlsxRuns} alternating runs: csv ${s(xcsv.ms)}, xlsx ${s(xlsx.ms)} (peak RSS ${mb(xlsx.peakRss)}), time ratio xlsx/csv ${(xlsx.ms / xcsv.ms).toFixed(2)} (target <= 2)`,
  );
} finally {
  await emu.stop();
}

if (bigRows > 0) {
  const big = await startEmulatorProcess(['--rows', `Artikel=${bigRows}`, '--max-sessions', '10']);
  try {
    const b = await getTable(big.url, ['--csv']);
    console.log(`(b) --csv at ${bigRows.toLocaleString('en-US')} rows: ${s(b.ms)}, peak RSS ${mb(b.peakRss)}`);
    if (before) {
      const b0 = await getTable(big.url, ['--csv'], before);
      console.log(`(b) before: --csv at ${bigRows.toLocaleString('en-US')} rows: ${s(b0.ms)}, peak RSS ${mb(b0.peakRss)}`);
    }
    const f = await getTable(big.url, ['--xlsx']);
    console.log(`(f) --xlsx at ${bigRows.toLocaleString('en-US')} rows: ${s(f.ms)}, peak RSS ${mb(f.peakRss)}`);
  } finally {
    await big.stop();
  }
}
rmSync(work, { recursive: true, force: true });
