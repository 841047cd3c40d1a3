// npm run bench:export — in one run against the emulator (its own process):
//   (a) a plain sequential HTTP loop fetching the same pages and throwing them away (the floor),
//   (b) legacy get-table Artikel --csv -o FILE, (c) --ndjson -o FILE;
// wall-time ratios (b)/(a), (c)/(a), and peak RSS of (b) at 200,000 and 1,000,000 rows;
//   (d) --xlsx -o FILE against --csv: medians of alternating runs (BENCH_XLSX_RUNS each), the
//   time ratio xlsx/csv and the peak RSS of both.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { legacyBin, mb, measure, s, startEmulatorProcess, tempDir } from './lib.mjs';

const rows = Number(process.env.BENCH_ROWS ?? 200_000);
const bigRows = Number(process.env.BENCH_BIG_ROWS ?? 1_000_000);
const pageSize = 1000;
const xlsxRuns = Number(process.env.BENCH_XLSX_RUNS ?? 3);
const median = (values) => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

let cookie;
async function plainLoop(url, table, total) {
  const started = process.hrtime.bigint();
  for (let skip = 0; skip < total; skip += pageSize) {
    const res = await fetch(`${url}/rest/${table}?$orderby=UID%20asc&$skip=${skip}&$top=${pageSize}`, { headers: cookie ? { cookie } : {} });
    const set = res.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0];
    const body = await res.json();
    if (!Array.isArray(body.__ENTITIES)) throw new Error('bad page');
  }
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const work = tempDir();
async function runLegacy(url, args) {
  // One config dir for every run: the stored session is reused, as under cron.
  const env = { ...process.env, LEGACY_CONFIG_DIR: join(work, 'cfg'), LEGACY_BASE_URL: url, LEGACY_ENV: 'bench', NO_COLOR: '1' };
  const out = join(work, 'out');
  const r = await measure(process.execPath, [legacyBin, 'get-table', 'Artikel', ...args, '-o', out], { env });
  rmSync(out, { force: true });
  if (r.code !== 0) throw new Error(`legacy exited ${r.code}: ${r.stderr}`);
  return r;
}

const emu = await startEmulatorProcess(['--rows', `Artikel=${rows}`, '--max-sessions', '10']);
try {
  await plainLoop(emu.url, 'Artikel', 20_000); // warm the emulator's caches
  const a = await plainLoop(emu.url, 'Artikel', rows);
  const b = await runLegacy(emu.url, ['--csv']);
  const c = await runLegacy(emu.url, ['--ndjson']);
  const b4 = await runLegacy(emu.url, ['--csv', '--concurrency', '4']);
  console.log(`Artikel, ${rows.toLocaleString('en-US')} rows, pages of ${pageSize}`);
  console.log(`(a) plain sequential HTTP loop      ${s(a)}`);
  console.log(`(b) legacy get-table --csv -o       ${s(b.ms)}  ratio ${(b.ms / a).toFixed(2)}  peak RSS ${mb(b.peakRss)}`);
  console.log(`(c) legacy get-table --ndjson -o    ${s(c.ms)}  ratio ${(c.ms / a).toFixed(2)}  peak RSS ${mb(c.peakRss)}`);
  console.log(`(b') --csv --concurrency 4          ${s(b4.ms)}  ratio ${(b4.ms / a).toFixed(2)}`);
  // Alternate csv and xlsx so that drift of the machine (other load, caches) hits both alike.
  const csv = [];
  const xlsx = [];
  for (let i = 0; i < xlsxRuns; i++) {
    csv.push(await runLegacy(emu.url, ['--csv']));
    xlsx.push(await runLegacy(emu.url, ['--xlsx']));
  }
  const csvMs = median(csv.map((r) => r.ms));
  const xlsxMs = median(xlsx.map((r) => r.ms));
  console.log(`(d) --xlsx -o vs --csv -o, median of ${xlsxRuns} alternating runs each:`);
  console.log(`    csv  ${s(csvMs)}  peak RSS ${mb(Math.max(...csv.map((r) => r.peakRss)))}`);
  console.log(`    xlsx ${s(xlsxMs)}  peak RSS ${mb(Math.max(...xlsx.map((r) => r.peakRss)))}  time ratio xlsx/csv ${(xlsxMs / csvMs).toFixed(2)} (target <= 2)`);
} finally {
  await emu.stop();
}

if (bigRows > 0) {
  const big = await startEmulatorProcess(['--rows', `Artikel=${bigRows}`, '--max-sessions', '10']);
  try {
    const b = await runLegacy(big.url, ['--csv']);
    console.log(`(b) at ${bigRows.toLocaleString('en-US')} rows: ${s(b.ms)}, peak RSS ${mb(b.peakRss)}`);
    const d = await runLegacy(big.url, ['--xlsx']);
    console.log(`(d) --xlsx at ${bigRows.toLocaleString('en-US')} rows: ${s(d.ms)}, peak RSS ${mb(d.peakRss)}`);
  } finally {
    await big.stop();
  }
}
rmSync(work, { recursive: true, force: true });
