#!/usr/bin/env node
// npm run demo: start the bundled 4D REST emulator on a free loopback port, export a table with
// `legacy`, export again to show the server session is reused, show `legacy session status` and
// `legacy doctor`, let the server drop its sessions and export again, then stop. Uses a temporary
// config dir, so it never touches your real configuration.
//
// npm run demo -- --generation v18|v20|v20r|v21 plays another 4D generation (default v20r): v18 sets
// only WASID4D, v20 only 4DSID_<App>, v21 adds force login (the demo then logs in through the
// application's authentify() with the credentials it configures).
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

const at = process.argv.indexOf('--generation');
const generation = at >= 0 ? process.argv[at + 1] : 'v20r';
if (!['v18', 'v20', 'v20r', 'v21'].includes(generation)) {
  console.error('demo: --generation must be one of v18, v20, v20r, v21');
  process.exit(64);
}
const auth = generation === 'v21' ? { user: 'demo', password: 'demo-password' } : null;
const dir = mkdtempSync(join(tmpdir(), 'legacy-demo-'));
const emulator = await startEmulator({ host: '127.0.0.1', port: 0, quiet: true, maxSessions: 3, generation, auth });
const env = {
  ...process.env,
  LEGACY_CONFIG_DIR: join(dir, 'config'),
  LEGACY_DATA_DIR: join(dir, 'data'),
  ...(auth ? { LEGACY_USERNAME: auth.user, LEGACY_PASSWORD: auth.password } : {}),
};
// The emulator runs in this process, so the CLI must run asynchronously beside it.
const legacy = async (title, args) => {
  process.stderr.write(`\n$ legacy ${args.join(' ')}   # ${title}\n`);
  const child = spawn(process.execPath, [join(root, 'bin', 'legacy.js'), ...args], { env, stdio: 'inherit' });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`legacy ${args.join(' ')} exited ${code}`);
};

try {
  process.stderr.write(`emulator listening on ${emulator.url} (demo data, 3 licences, 4D ${generation}${auth ? ', force login' : ''})\n`);
  await legacy('register the emulator as the default environment', ['env', 'add', 'demo', emulator.url, '--default']);
  await legacy('the main job: a table as CSV', ['get-table', 'Artikel', '--csv', '--limit', '20']);
  await legacy('a second export reuses the stored session', ['get-table', 'Kunden', '--csv', '--limit', '5', '--fields', 'KundenNr,Firma,PLZ,Ort']);
  await legacy('the persisted session (cookie masked)', ['session', 'status']);
  await legacy('one line per check: the 4D generation and the login mode among them', ['doctor']);
  const before = emulator.stats().sessionsCreated;
  emulator.control.expireSessions();
  process.stderr.write('\n# the server drops every session (a restart); four exports start together\n');
  const children = Array.from({ length: 4 }, () =>
    spawn(process.execPath, [join(root, 'bin', 'legacy.js'), 'get-table', 'Kunden', '--limit', '100'], { env, stdio: 'ignore' }),
  );
  const codes = await Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve))));
  if (codes.some((c) => c !== 0)) throw new Error(`an export after the drop exited ${codes.join(', ')}`);
  const stats = emulator.stats();
  process.stderr.write(
    `\nserver sessions created: ${stats.sessionsCreated} (${before} for the first exports, ${stats.sessionsCreated - before} for the four after the drop), duplicate cookies: ${stats.duplicateCookieRejections}\n`,
  );
} finally {
  await emulator.stop();
  rmSync(dir, { recursive: true, force: true });
}
