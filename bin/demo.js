#!/usr/bin/env node
// npm run demo: start the bundled 4D REST emulator on a free loopback port, export a table with
// `legacy`, export again to show the server session is reused, show `legacy session status`,
// then stop. Uses a temporary config dir, so it never touches your real configuration.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(join(root, 'dist', 'emulator', 'index.js'))) {
  console.error('demo: dist/ is missing; run `npm ci` (it builds) or `npm run build` first');
  process.exit(1);
}
const { startEmulator } = await import('../dist/emulator/index.js');

const dir = mkdtempSync(join(tmpdir(), 'legacy-demo-'));
const emulator = await startEmulator({ host: '127.0.0.1', port: 0, quiet: true, maxSessions: 3 });
const env = { ...process.env, LEGACY_CONFIG_DIR: join(dir, 'config'), LEGACY_DATA_DIR: join(dir, 'data') };
// The emulator runs in this process, so the CLI must run asynchronously beside it.
const legacy = async (title, args) => {
  process.stderr.write(`\n$ legacy ${args.join(' ')}   # ${title}\n`);
  const child = spawn(process.execPath, [join(root, 'bin', 'legacy.js'), ...args], { env, stdio: 'inherit' });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`legacy ${args.join(' ')} exited ${code}`);
};

try {
  process.stderr.write(`emulator listening on ${emulator.url} (demo data, 3 licences)\n`);
  await legacy('register the emulator as the default environment', ['env', 'add', 'demo', emulator.url, '--default']);
  await legacy('the main job: a table as CSV', ['get-table', 'Artikel', '--csv', '--limit', '20']);
  await legacy('a second export reuses the stored session', ['get-table', 'Kunden', '--csv', '--limit', '5', '--fields', 'KundenNr,Firma,PLZ,Ort']);
  await legacy('the persisted session (cookie masked)', ['session', 'status']);
  const stats = emulator.stats();
  process.stderr.write(
    `\nserver sessions created: ${stats.sessionsCreated} (two exports, one session), duplicate cookies: ${stats.duplicateCookieRejections}\n`,
  );
} finally {
  await emulator.stop();
  rmSync(dir, { recursive: true, force: true });
}
