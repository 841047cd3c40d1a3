// npm run bench:session — server sessions created and wall time for 100 sequential runs and for
// 16 workers x 10 runs each, all against one emulator (its own process) with 4 licences (one per scenario); then the
// same runs through a real Redis on loopback (100 sequential; 160 from two simulated hosts, cold); then
// the burst after the server drops its sessions: 3 rounds of "drop every session, start 8 runs at once"
// against a server with 3 licences (issue 21: one new session per round, every run succeeds).
// With BENCH_BEFORE=<another checkout>: what the first contact under the slot lock costs when nothing
// was dropped, as medians of alternating rounds (20 sequential runs; 8 runs started together), this
// checkout against that one, in the same run.
import { join } from 'node:path';
import { startRedis } from '../test/helpers/services.mjs';
import { control, legacyBin, measure, s, startEmulatorProcess, tempDir } from './lib.mjs';

const emu = await startEmulatorProcess(['--max-sessions', '4']);
const env = (dir, extra = {}) => ({ ...process.env, LEGACY_CONFIG_DIR: dir, LEGACY_BASE_URL: emu.url, LEGACY_ENV: 'bench', NO_COLOR: '1', ...extra });
const redis = await startRedis();

/** 16 workers x 10 runs of `legacy tables`; worker i uses envs[i % envs.length]. */
async function workers(envs) {
  const before = (await control(emu.url, 'stats')).sessionsCreated;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; i < 10; i++) {
        const r = await measure(process.execPath, [legacyBin, 'tables'], { env: envs[w % envs.length] });
        if (r.code !== 0) throw new Error(r.stderr);
      }
    }),
  );
  return { ms: Date.now() - started, sessions: (await control(emu.url, 'stats')).sessionsCreated - before };
}
/** 100 runs of `legacy tables`, one after another. */
async function sequential(runEnv) {
  const before = (await control(emu.url, 'stats')).sessionsCreated;
  const started = Date.now();
  for (let i = 0; i < 100; i++) {
    const r = await measure(process.execPath, [legacyBin, 'tables'], { env: runEnv });
    if (r.code !== 0) throw new Error(r.stderr);
  }
  return { ms: Date.now() - started, sessions: (await control(emu.url, 'stats')).sessionsCreated - before };
}
/** Rounds of: the server drops every session, then 8 runs start together (one config dir, 3 licences). */
async function bursts(runEnv, rounds = 3) {
  await control(emu.url, 'expire-sessions', {}); // the scenarios above hold the other licences
  await control(emu.url, 'options', { maxSessions: 3 });
  const warm = await measure(process.execPath, [legacyBin, 'tables'], { env: runEnv });
  if (warm.code !== 0) throw new Error(warm.stderr);
  const out = [];
  for (let round = 0; round < rounds; round++) {
    await control(emu.url, 'expire-sessions', {});
    const before = await control(emu.url, 'stats');
    const started = Date.now();
    const runs = await Promise.all(Array.from({ length: 8 }, () => measure(process.execPath, [legacyBin, 'tables'], { env: runEnv })));
    const after = await control(emu.url, 'stats');
    out.push({
      ms: Date.now() - started,
      failed: runs.filter((r) => r.code !== 0).length,
      sessions: after.sessionsCreated - before.sessionsCreated,
      rejected402: after.rejected402 - before.rejected402,
    });
  }
  await control(emu.url, 'options', { maxSessions: 4 });
  return out;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Per-run cost when nothing was dropped: this checkout vs BENCH_BEFORE, alternating, medians. */
async function cost(beforeRoot, rounds = 5) {
  const bins = { after: legacyBin, before: join(beforeRoot, 'bin', 'legacy.js') };
  const dirs = { after: join(tempDir(), 'cfg'), before: join(tempDir(), 'cfg') };
  const seq = { after: [], before: [] };
  const burst = { after: [], before: [] };
  for (const which of ['after', 'before']) {
    const warm = await measure(process.execPath, [bins[which], 'tables'], { env: env(dirs[which]) });
    if (warm.code !== 0) throw new Error(warm.stderr);
  }
  for (let round = 0; round < rounds; round++) {
    for (const which of round % 2 ? ['before', 'after'] : ['after', 'before']) {
      let started = Date.now();
      for (let i = 0; i < 20; i++) {
        const r = await measure(process.execPath, [bins[which], 'tables'], { env: env(dirs[which]) });
        if (r.code !== 0) throw new Error(r.stderr);
      }
      seq[which].push((Date.now() - started) / 20);
      started = Date.now();
      const runs = await Promise.all(Array.from({ length: 8 }, () => measure(process.execPath, [bins[which], 'tables'], { env: env(dirs[which]) })));
      if (runs.some((r) => r.code !== 0)) throw new Error(runs.find((r) => r.code !== 0).stderr);
      burst[which].push(Date.now() - started);
    }
  }
  // Give both sessions back, so the scenarios below find the licences they count on.
  for (const which of ['after', 'before']) await measure(process.execPath, [legacyBin, 'session', 'clear', '--logout'], { env: env(dirs[which]) });
  return {
    seq: { after: median(seq.after), before: median(seq.before) },
    burst: { after: median(burst.after), before: median(burst.before) },
  };
}

try {
  if (process.env.BENCH_BEFORE) {
    const c = await cost(process.env.BENCH_BEFORE);
    console.log(
      `cost when nothing was dropped (medians of 5 alternating rounds): sequential ${c.seq.after.toFixed(0)} ms/run vs ${c.seq.before.toFixed(0)} before (${(c.seq.after / c.seq.before).toFixed(2)}x); 8 runs started together ${c.burst.after} ms vs ${c.burst.before} before (${(c.burst.after / c.burst.before).toFixed(2)}x)`,
    );
  }
  const seq = await sequential(env(join(tempDir(), 'cfg')));
  const seqRedis = redis ? await sequential(env(join(tempDir(), 'cfg'), { LEGACY_SESSION_STORE: redis.url })) : undefined;
  const par = await workers([env(join(tempDir(), 'cfg'))]);
  const fleet = redis ? await workers([0, 1].map(() => env(join(tempDir(), 'cfg'), { LEGACY_SESSION_STORE: redis.url, LEGACY_SESSION: 'fleet' }))) : undefined;
  const burst = await bursts(env(join(tempDir(), 'cfg'), { LEGACY_LICENCE_WAIT_MS: '5000' }));
  const stats = await control(emu.url, 'stats');
  for (const [i, b] of burst.entries()) {
    console.log(
      `drop + 8 runs at once, round ${i + 1}: ${s(b.ms)}, new server sessions: ${b.sessions}, failed runs: ${b.failed}, 402 answers: ${b.rejected402}`,
    );
  }
  console.log(`100 sequential runs:        ${s(seq.ms)} (${(seq.ms / 100).toFixed(0)} ms/run), server sessions created: ${seq.sessions}`);
  if (seqRedis) {
    console.log(
      `100 sequential via Redis:   ${s(seqRedis.ms)} (${(seqRedis.ms / 100).toFixed(0)} ms/run), server sessions created: ${seqRedis.sessions}; time ratio Redis / file store: ${(seqRedis.ms / seq.ms).toFixed(2)}`,
    );
  }
  console.log(`16 workers x 10 runs:       ${s(par.ms)} (${(par.ms / 160).toFixed(0)} ms/run), server sessions created: ${par.sessions}`);
  if (fleet) {
    console.log(
      `2 hosts via Redis, 16 x 10: ${s(fleet.ms)} (${(fleet.ms / 160).toFixed(0)} ms/run), server sessions created: ${fleet.sessions}; time ratio Redis / file store: ${(fleet.ms / par.ms).toFixed(2)}`,
    );
  } else {
    console.log('2 hosts via Redis: SKIPPED, redis-server is not installed');
  }
  console.log(`402 answers: ${stats.rejected402}, duplicate-cookie rejections: ${stats.duplicateCookieRejections}`);
} finally {
  await emu.stop();
  await redis?.stop();
}
