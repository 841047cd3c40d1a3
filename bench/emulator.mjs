#!/usr/bin/env node
// Emulator throughput: read a 200,000-row Artikel table in pages of 1,000 with a plain sequential HTTP loop
// (one keep-alive connection, one session cookie), then time the bin's start-up to "listening".
// The emulator (imported from ../dist/emulator/index.js; run `npm run build` first) runs in a worker thread so
// the client's JSON.parse does not share its event loop.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const ROWS = Number(process.env.BENCH_ROWS ?? 200_000);
const PAGE = 1000;
const distIndex = new URL('../dist/emulator/index.js', import.meta.url);
const bin = fileURLToPath(new URL('../bin/legacy-emulator.js', import.meta.url));

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** GET; `ttfb` = ms until the response head arrived (the emulator renders the whole body before it). */
function get(url, cookie) {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: cookie ? { cookie } : {} }, (res) => {
      const ttfb = performance.now() - t0;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), ttfb }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

async function readAll() {
  const worker = new Worker(new URL(import.meta.url), { workerData: { rows: ROWS } });
  const url = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const emu = { url };
  try {
    const info = await get(`${emu.url}/rest/$info`);
    const cookie = info.headers['set-cookie'][0].split(';')[0];
    const pageMs = [];
    const ttfbMs = [];
    const parseMs = [];
    let rows = 0;
    let bytes = 0;
    const t0 = performance.now();
    for (let skip = 0; ; skip += PAGE) {
      const t = performance.now();
      const res = await get(`${emu.url}/rest/Artikel?$top=${PAGE}&$skip=${skip}`, cookie);
      if (res.status !== 200) throw new Error(`HTTP ${res.status} at skip ${skip}`);
      const tp = performance.now();
      const page = JSON.parse(res.body.toString('utf8'));
      parseMs.push(performance.now() - tp);
      ttfbMs.push(res.ttfb);
      pageMs.push(performance.now() - t);
      rows += page.__SENT;
      bytes += res.body.length;
      if (page.__SENT < PAGE) break;
    }
    const totalMs = performance.now() - t0;
    if (rows !== ROWS) throw new Error(`read ${rows} rows, expected ${ROWS}`);
    const stats = JSON.parse((await get(`${emu.url}/__emulator/stats`)).body.toString('utf8'));
    if (stats.sessionsCreated !== 1) throw new Error(`expected 1 session, got ${stats.sessionsCreated}`);
    for (const a of [pageMs, ttfbMs, parseMs]) a.sort((x, y) => x - y);
    console.log(`read ${rows} Artikel rows in ${pageMs.length} pages of ${PAGE} (${(bytes / 1e6).toFixed(1)} MB)`);
    console.log(`  total ${(totalMs / 1000).toFixed(2)} s, ${Math.round(rows / (totalMs / 1000)).toLocaleString('en')} rows/s`);
    const line = (name, a) => `median ${pct(a, 50).toFixed(1)}, p95 ${pct(a, 95).toFixed(1)}  ${name}`;
    console.log(`  ms per page: ${line('(whole loop step: request, transfer, JSON.parse)', pageMs)}`);
    console.log(`               ${line('(serve: request to response head; the emulator renders the whole page first)', ttfbMs)}`);
    console.log(`               ${line('(client JSON.parse only)', parseMs)}`);
  } finally {
    agent.destroy();
    worker.postMessage('stop');
    await new Promise((resolve) => worker.once('exit', resolve));
  }
}

async function startup(runs = 5) {
  const times = [];
  for (let k = 0; k < runs; k++) {
    const t0 = performance.now();
    const child = spawn(process.execPath, [bin, '--port', '0', '--rows', `Artikel=${ROWS}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c) => {
        out += c;
        if (out.includes('listening on http://')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`legacy-emulator exited with ${code} before listening`)));
    });
    times.push(performance.now() - t0);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  times.sort((a, b) => a - b);
  console.log(
    `bin start-up to "listening" with --rows Artikel=${ROWS}: median ${pct(times, 50).toFixed(0)} ms, max ${times[times.length - 1].toFixed(0)} ms (${runs} runs)`,
  );
}

if (!isMainThread) {
  // worker: host the emulator until told to stop
  const { startEmulator } = await import(distIndex.href);
  const emu = await startEmulator({ port: 0, rows: { Artikel: workerData.rows }, maxSessions: 3 });
  parentPort.postMessage(emu.url);
  parentPort.once('message', async () => {
    await emu.stop();
    parentPort.close();
  });
} else {
  if (!existsSync(distIndex)) {
    console.error('bench/emulator.mjs: dist/ is missing; run `npm run build` first');
    process.exit(1);
  }
  await readAll();
  await startup();
}
