// npm run bench:push — 5,000 updates from a CSV against the emulator (its own process), batched
// (--batch-size 100) vs one-by-one (--batch-size 1), in one run; prints both times and the ratio.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { control, legacyBin, measure, s, startEmulatorProcess, tempDir, benchEnv } from './lib.mjs';

const count = Number(process.env.BENCH_ROWS ?? 5000);
const emu = await startEmulatorProcess(['--rows', `Artikel=${count}`, '--max-sessions', '10']);
const work = tempDir();
const env = benchEnv(work, emu.url);

async function keys() {
  const out = join(work, 'keys.csv');
  const r = await measure(process.execPath, [legacyBin, 'get-table', 'Artikel', '--fields', 'UID', '--no-header', '-o', out], { env });
  if (r.code !== 0) throw new Error(r.stderr);
  const { readFileSync } = await import('node:fs');
  return readFileSync(out, 'utf8').trim().split('\n');
}

async function run(batchSize, round) {
  const input = join(work, `in-${batchSize}.csv`);
  const uids = await keys();
  writeFileSync(input, `UID,Preis\n${uids.map((k, i) => `${k},${(1000 + round * 10 + (i % 7)).toFixed(2)}`).join('\n')}\n`);
  const before = (await control(emu.url, 'stats')).updates;
  const r = await measure(
    process.execPath,
    [legacyBin, 'push-field', 'Artikel', '--from', input, '--yes', '--batch-size', String(batchSize), '--report', 'csv'],
    { env },
  );
  if (r.code !== 0) throw new Error(`push-field exited ${r.code}: ${r.stderr}`);
  const updates = (await control(emu.url, 'stats')).updates - before;
  return { ms: r.ms, updates };
}

try {
  const batched = await run(100, 1);
  const single = await run(1, 2);
  console.log(`${count.toLocaleString('en-US')} updates from a CSV`);
  console.log(`batched (--batch-size 100):   ${s(batched.ms)}  (${batched.updates} saved)`);
  console.log(`one by one (--batch-size 1):  ${s(single.ms)}  (${single.updates} saved)`);
  console.log(`ratio one-by-one / batched:   ${(single.ms / batched.ms).toFixed(1)}x  (goal ≥ 5x)`);
} finally {
  await emu.stop();
}
