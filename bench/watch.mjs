// npm run bench:watch — `legacy watch` against the emulator in its own process, 4D change tracking on.
//
// 1. Latency: the emulator's churn driver makes BENCH_RATE changes/s (default 50) to Kunden for
//    BENCH_SECONDS (default 60). `legacy watch Kunden --interval 1s` and, in the same run against the
//    same changes, a minimal poller (a bare keep-alive loop asking `__GlobalStamp > last` every 1 s,
//    no state, no checks) print what they see. Change-to-event latency = when the event line
//    arrived − when the emulator made the change (its own record), for every change whose record
//    had a delivered event; p50 and p99 of each.
// 2. Idle: no changes for BENCH_IDLE_SECONDS (default 60): requests per minute (emulator stats)
//    and CPU of the follower.
// 3. Memory: peak RSS of the follower over the whole run (VmHWM).
import { spawn } from 'node:child_process';
import { benchEnv, control, cpuMs, legacyBin, peakRss, startEmulatorProcess, tempDir } from './lib.mjs';

const rate = Number(process.env.BENCH_RATE ?? 50);
const seconds = Number(process.env.BENCH_SECONDS ?? 60);
const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const emu = await startEmulatorProcess(['--rows', 'Kunden=20000', '--change-tracking', 'Kunden', '--max-sessions', '10']);
const env = benchEnv(tempDir(), emu.url);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : Number.NaN;
};

/** Arrival times of events per key, from a line-per-event stream. */
function arrivals(stream, keyOf) {
  const seen = [];
  let buffer = '';
  stream.setEncoding('utf8').on('data', (d) => {
    const now = Date.now();
    buffer += d;
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      const key = keyOf(line);
      if (key !== undefined) seen.push({ key, at: now });
    }
  });
  return seen;
}

/** The minimal poller: one keep-alive GET per second for rows with a newer global stamp. */
async function minimalPoller(stop) {
  const seen = [];
  let cookie = '';
  let last = 0;
  const base = `${emu.url}/rest/Kunden`;
  const first = await fetch(`${base}?$top=1`);
  cookie = (first.headers.getSetCookie?.() ?? []).map((c) => c.split(';')[0]).join('; ');
  last = (await first.json()).__GlobalStamp;
  while (!stop.done) {
    const url = `${base}?$filter=${encodeURIComponent(`"__GlobalStamp >= ${last}"`)}&$top=10000&$attributes=KundenNr,__GlobalStamp`;
    const r = await fetch(url, { headers: { cookie } });
    const body = await r.json();
    const now = Date.now();
    for (const e of body.__ENTITIES ?? []) {
      seen.push({ key: String(e.KundenNr), at: now });
      last = Math.max(last, e.__GlobalStamp + 1);
    }
    await sleep(1000);
  }
  return seen;
}

function latencies(changes, seen) {
  const byKey = new Map();
  for (const s of seen) {
    if (!byKey.has(s.key)) byKey.set(s.key, []);
    byKey.get(s.key).push(s.at);
  }
  const out = [];
  for (const c of changes) {
    const next = (byKey.get(c.key) ?? []).find((at) => at >= c.at);
    if (next !== undefined) out.push(next - c.at);
  }
  return out;
}

try {
  // A consumer starting now (its snapshot taken before the churn).
  const snap = spawn(process.execPath, [legacyBin, 'watch', 'Kunden', '--once'], { env, stdio: 'ignore' });
  await new Promise((r) => snap.once('exit', r));
  const follower = spawn(process.execPath, [legacyBin, 'watch', 'Kunden', '--interval', '1s'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const ours = arrivals(follower.stdout, (line) => {
    try {
      return JSON.parse(line).subject;
    } catch {
      return undefined;
    }
  });
  await sleep(2000);
  const stop = { done: false };
  const bare = minimalPoller(stop);
  const since = (await control(emu.url, 'stats')).requests;
  await control(emu.url, 'churn', { tables: ['Kunden'], rate, mix: { update: 0.7, insert: 0.3, delete: 0 } });
  const startedAt = Date.now();
  await sleep(seconds * 1000);
  await fetch(`${emu.url}/__emulator/churn`, { method: 'DELETE' });
  await sleep(2500);
  stop.done = true;
  const bareSeen = await bare;
  const changes = (await (await fetch(`${emu.url}/__emulator/changes`)).json()).filter((c) => c.at >= startedAt);
  const busyRequests = (await control(emu.url, 'stats')).requests - since;
  const oursLat = latencies(changes, ours);
  const bareLat = latencies(changes, bareSeen);

  // Idle.
  const idleFrom = { requests: (await control(emu.url, 'stats')).requests, cpu: cpuMs(follower.pid), at: Date.now() };
  await sleep(idleSeconds * 1000);
  const idle = {
    requests: (await control(emu.url, 'stats')).requests - idleFrom.requests,
    cpuMs: cpuMs(follower.pid) - idleFrom.cpu,
    minutes: (Date.now() - idleFrom.at) / 60_000,
  };
  const hwm = peakRss(follower.pid);
  follower.kill('SIGINT');
  await new Promise((r) => follower.once('exit', r));

  const f = (ms) => `${(ms / 1000).toFixed(2)} s`;
  console.log(`changes: ${changes.length} in ${seconds} s at ${rate}/s (Kunden, 20,000 rows, change tracking on); --interval 1s`);
  console.log(`                      p50       p99       changes delivered`);
  console.log(
    `legacy watch        ${f(quantile(oursLat, 0.5)).padEnd(9)} ${f(quantile(oursLat, 0.99)).padEnd(9)} ${oursLat.length}/${changes.length}   (goal p50 ≤ 1 s, p99 ≤ 2 s)`,
  );
  console.log(`minimal poller      ${f(quantile(bareLat, 0.5)).padEnd(9)} ${f(quantile(bareLat, 0.99)).padEnd(9)} ${bareLat.length}/${changes.length}`);
  console.log(`requests while busy: ${busyRequests} in ${seconds} s (both pollers)`);
  console.log(
    `idle ${idle.minutes.toFixed(1)} min: ${(idle.requests / idle.minutes).toFixed(1)} requests/min (one table; goal ≤ ${(60).toFixed(0)} at --interval 1s), CPU ${(idle.cpuMs / idle.minutes / 1000).toFixed(2)} s/min`,
  );
  console.log(`peak RSS of the follower: ${(hwm / 1024 / 1024).toFixed(0)} MB (goal ≤ 120 MB)`);
} finally {
  await emu.stop();
}
