// npm run bench:breaker — how fast a run fails while the environment's circuit breaker is open
// (issue 27: "all exit 69 in under a second once open"), against a server that is down: a loopback
// port that drops every connection, counted. Median of N fresh processes, one at a time, then 20 at
// once (the slowest of them); the breaker lives in the file store (a fresh config dir).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'legacy.js');
const runs = Number(process.env.BENCH_RUNS ?? 21);
const configDir = mkdtempSync(join(tmpdir(), 'legacy-bench-'));

let connections = 0;
const server = createServer((socket) => {
  connections += 1;
  socket.destroy();
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const env = {
  ...process.env,
  LEGACY_CONFIG_DIR: configDir,
  LEGACY_BASE_URL: `http://127.0.0.1:${port}`,
  LEGACY_ENV: 'bench',
  LEGACY_RETRIES: '3',
  LEGACY_BREAKER_FAILURES: '3',
  LEGACY_BREAKER_COOL_DOWN_MS: '3600000',
  NO_COLOR: '1',
};

const run = () =>
  new Promise((resolve) => {
    const t = process.hrtime.bigint();
    const child = spawn(process.execPath, [bin, 'tables'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code, stderr, ms: Number(process.hrtime.bigint() - t) / 1e6 }));
  });

// Open it: three runs that find the server down (each retrying: the slow way).
const slow = [];
for (let i = 0; i < 3; i++) slow.push((await run()).ms);
const opened = connections;

const times = [];
for (let i = 0; i < runs; i++) {
  const r = await run();
  if (r.code !== 69 || !/circuit breaker/.test(r.stderr)) throw new Error(`expected a fast failure, got ${r.code}: ${r.stderr}`);
  times.push(r.ms);
}
times.sort((a, b) => a - b);
const t0 = process.hrtime.bigint();
const burst = await Promise.all(Array.from({ length: 20 }, run));
const burstMs = Number(process.hrtime.bigint() - t0) / 1e6;
const slowest = Math.max(...burst.map((r) => r.ms));
const median = (args) => {
  const list = [];
  for (let i = 0; i < Math.min(runs, 9); i++) {
    const t = process.hrtime.bigint();
    spawnSync(process.execPath, args, { env, stdio: 'ignore' });
    list.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return list.sort((a, b) => a - b)[Math.floor(list.length / 2)];
};
const node = median(['-e', '0']);
const envList = median([bin, 'env', 'list']);
server.close();
rmSync(configDir, { recursive: true, force: true });

const fmt = (ms) => `${ms.toFixed(0)} ms`;
console.log(`unavailable run, breaker closed (retries 3)   ${fmt(slow.reduce((a, b) => a + b, 0) / slow.length)} (mean of 3)`);
console.log(
  `refused run, breaker open                     ${fmt(times[Math.floor(times.length / 2)])} (median of ${runs}; node -e 0: ${fmt(node)}, legacy env list: ${fmt(envList)})  (goal < 1000 ms)`,
);
console.log(
  `20 refused runs at once                       slowest ${fmt(slowest)}, all done in ${fmt(burstMs)}  (goal: each < 1000 ms; on 2 cores 20 node start-ups alone take longer)`,
);
console.log(`requests that reached the server once open    ${connections - opened}  (goal 0)`);
