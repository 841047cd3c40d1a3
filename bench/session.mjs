// npm run bench:session — server sessions created and wall time for 100 sequential runs and for
// 16 workers x 10 runs each, all against one emulator (its own process) with 3 licences.
import { join } from 'node:path';
import { control, legacyBin, measure, s, startEmulatorProcess, tempDir } from './lib.mjs';

const emu = await startEmulatorProcess(['--max-sessions', '3']);
const env = (dir) => ({ ...process.env, LEGACY_CONFIG_DIR: dir, LEGACY_BASE_URL: emu.url, LEGACY_ENV: 'bench', NO_COLOR: '1' });
try {
  const seqDir = join(tempDir(), 'cfg');
  let before = (await control(emu.url, 'stats')).sessionsCreated;
  let started = Date.now();
  for (let i = 0; i < 100; i++) {
    const r = await measure(process.execPath, [legacyBin, 'tables'], { env: env(seqDir) });
    if (r.code !== 0) throw new Error(r.stderr);
  }
  const seqMs = Date.now() - started;
  const seqSessions = (await control(emu.url, 'stats')).sessionsCreated - before;

  const parDir = join(tempDir(), 'cfg');
  before = (await control(emu.url, 'stats')).sessionsCreated;
  started = Date.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = 0; i < 10; i++) {
        const r = await measure(process.execPath, [legacyBin, 'tables'], { env: env(parDir) });
        if (r.code !== 0) throw new Error(r.stderr);
      }
    }),
  );
  const parMs = Date.now() - started;
  const stats = await control(emu.url, 'stats');
  console.log(`100 sequential runs:        ${s(seqMs)} (${(seqMs / 100).toFixed(0)} ms/run), server sessions created: ${seqSessions}`);
  console.log(`16 workers x 10 runs:       ${s(parMs)} (${(parMs / 160).toFixed(0)} ms/run), server sessions created: ${stats.sessionsCreated - before}`);
  console.log(`402 answers: ${stats.rejected402}, duplicate-cookie rejections: ${stats.duplicateCookieRejections}`);
} finally {
  await emu.stop();
}
