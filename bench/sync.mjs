// npm run bench:sync — with 200,000 Artikel rows in the emulator (its own process), in one run:
// get-table --csv (reference), a full sync, an incremental sync after mutating 1% of rows, and
// one with nothing changed. Prints wall times, rows fetched and the ratios.
import { join } from 'node:path';
import { control, legacyBin, measure, s, startEmulatorProcess, tempDir } from './lib.mjs';

const rows = Number(process.env.BENCH_ROWS ?? 200_000);
const emu = await startEmulatorProcess(['--rows', `Artikel=${rows}`, '--max-sessions', '10']);
const work = tempDir();
const env = { ...process.env, LEGACY_CONFIG_DIR: join(work, 'cfg'), LEGACY_DATA_DIR: join(work, 'data'), LEGACY_BASE_URL: emu.url, LEGACY_ENV: 'bench', NO_COLOR: '1' };

async function legacy(args, { json = false } = {}) {
  let stdout = '';
  const r = await measure(process.execPath, [legacyBin, ...args], { env, stdout: json ? 'pipe' : 'ignore' });
  if (r.code !== 0) throw new Error(`legacy ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

async function syncRun(label) {
  const { spawn } = await import('node:child_process');
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [legacyBin, 'sync', 'Artikel', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise((r) => child.once('exit', r));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (code !== 0) throw new Error(`sync exited ${code}: ${err}`);
  const t = JSON.parse(out).tables[0];
  console.log(`${label.padEnd(34)} ${s(ms)}  ${t.mode}, fetched ${t.fetched}, inserted ${t.inserted}, updated ${t.updated}`);
  return ms;
}

try {
  await legacy(['get-table', 'Artikel', '--csv', '-o', join(work, 'warm.csv')]); // warm the emulator and the session
  const csv = await legacy(['get-table', 'Artikel', '--csv', '-o', join(work, 'a.csv')]);
  console.log(`Artikel, ${rows.toLocaleString('en-US')} rows`);
  console.log(`${'get-table --csv -o'.padEnd(34)} ${s(csv.ms)}`);
  const full = await syncRun('full sync');
  await control(emu.url, 'mutate', { table: 'Artikel', update: Math.round(rows / 100) });
  const incr = await syncRun('incremental after 1% updated');
  const idle = await syncRun('incremental, nothing changed');
  console.log(`ratio full sync / get-table --csv:  ${(full / csv.ms).toFixed(2)}  (goal ≤ 1.5)`);
  console.log(`ratio incremental / full:           ${(incr / full).toFixed(3)}  (goal ≤ 0.1); nothing changed: ${(idle / full).toFixed(3)}`);
} finally {
  await emu.stop();
}
