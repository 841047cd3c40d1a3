// npm run bench:push — push-field against the emulator (its own process), in one run:
// 1. 5,000 updates from a CSV (BENCH_ROWS), batched (--batch-size 100) vs one-by-one (--batch-size 1).
// 2. The round trip (issue 23): a 10,000-row `get-table --meta` export (BENCH_ROUNDTRIP_ROWS) with 1% of
//    its rows edited, pushed back, against the same file with every row edited: time and requests
//    (reads, update requests, records saved). Goal: update requests follow the edits, not the rows.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { benchEnv, control, legacyBin, mb, measure, s, startEmulatorProcess, tempDir } from './lib.mjs';

const count = Number(process.env.BENCH_ROWS ?? 5000);
const roundTripRows = Number(process.env.BENCH_ROUNDTRIP_ROWS ?? 10_000);
const work = tempDir();

async function keys(env) {
  const out = join(work, 'keys.csv');
  const r = await measure(process.execPath, [legacyBin, 'get-table', 'Artikel', '--fields', 'UID', '--no-header', '-o', out], { env });
  if (r.code !== 0) throw new Error(r.stderr);
  return readFileSync(out, 'utf8').trim().split('\n');
}

async function batching() {
  const emu = await startEmulatorProcess(['--rows', `Artikel=${count}`, '--max-sessions', '10']);
  const env = benchEnv(work, emu.url);
  const run = async (batchSize, round) => {
    const input = join(work, `in-${batchSize}.csv`);
    const uids = await keys(env);
    writeFileSync(input, `UID,Preis\n${uids.map((k, i) => `${k},${(1000 + round * 10 + (i % 7)).toFixed(2)}`).join('\n')}\n`);
    const before = (await control(emu.url, 'stats')).updates;
    const r = await measure(
      process.execPath,
      [legacyBin, 'push-field', 'Artikel', '--from', input, '--yes', '--batch-size', String(batchSize), '--report', 'csv'],
      { env },
    );
    if (r.code !== 0) throw new Error(`push-field exited ${r.code}: ${r.stderr}`);
    return { ms: r.ms, updates: (await control(emu.url, 'stats')).updates - before };
  };
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
}

async function roundTrip() {
  const emu = await startEmulatorProcess(['--rows', `Artikel=${roundTripRows}`, '--max-sessions', '10']);
  const env = benchEnv(work, emu.url);
  /** Export with --meta, edit the Preis of every `every`-th row, push it back; the run's figures. */
  const run = async (every, round) => {
    const file = join(work, `roundtrip-${every}.csv`);
    const exported = await measure(process.execPath, [legacyBin, 'get-table', 'Artikel', '--meta', '--csv', '-o', file], { env });
    if (exported.code !== 0) throw new Error(exported.stderr);
    const records = parse(readFileSync(file), { columns: true });
    let edits = 0;
    for (const [i, r] of records.entries()) {
      if (i % every !== 0) continue;
      r.Preis = (Number(r.Preis) + round).toFixed(2);
      edits++;
    }
    writeFileSync(file, stringify(records, { header: true }));
    const before = await control(emu.url, 'stats');
    const r = await measure(process.execPath, [legacyBin, 'push-field', 'Artikel', '--from', file, '--yes', '--report', 'csv'], { env });
    if (r.code !== 0) throw new Error(`push-field exited ${r.code}: ${r.stderr}`);
    const after = await control(emu.url, 'stats');
    const updateRequests = after.updateRequests - before.updateRequests;
    return {
      rows: records.length,
      edits,
      ms: r.ms,
      cpuMs: r.cpuMs,
      peakRss: r.peakRss,
      requests: after.requests - before.requests,
      updateRequests,
      reads: after.dataRequests - before.dataRequests - updateRequests,
      saved: after.updates - before.updates,
    };
  };
  try {
    const few = await run(100, 1);
    const all = await run(1, 2);
    const line = (label, x) =>
      console.log(
        `${label} ${String(x.edits).padStart(6)} edited  ${s(x.ms).padStart(8)}  ${String(x.requests).padStart(4)} requests (${x.reads} reads, ${x.updateRequests} updates)  ${x.saved} saved  client CPU ${s(x.cpuMs)}  peak ${mb(x.peakRss)}`,
      );
    console.log(`\nround trip: a ${few.rows.toLocaleString('en-US')}-row get-table --meta CSV pushed back`);
    line('1% of the rows:', few);
    line('every row:     ', all);
    console.log(
      `update requests 1% / every row: ${few.updateRequests} / ${all.updateRequests}  (goal: in proportion to the edits, ${(few.edits / all.edits).toFixed(2)})`,
    );
    if (few.saved !== few.edits || all.saved !== all.edits) throw new Error('a round trip saved other records than the edited ones');
  } finally {
    await emu.stop();
  }
}

if (process.env.BENCH_PUSH_CASE !== 'roundtrip') await batching();
if (process.env.BENCH_PUSH_CASE !== 'batching') await roundTrip();
