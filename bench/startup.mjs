// npm run bench:startup — start-up cost of `legacy --version` and `legacy env list` against bare
// `node -e 0`, measured in one run (median of N fresh processes each), printed as ratios.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'legacy.js');
const runs = Number(process.env.BENCH_RUNS ?? 21);
const configDir = mkdtempSync(join(tmpdir(), 'legacy-bench-'));
const env = { ...process.env, LEGACY_CONFIG_DIR: configDir, NO_COLOR: '1' };
spawnSync(process.execPath, [bin, 'env', 'add', 'test', 'http://127.0.0.1:8090', '--default'], { env });

function median(args) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

// Interleave warm-up so the file cache is hot for all three.
median(['-e', '0']);
const node = median(['-e', '0']);
const version = median([bin, '--version']);
const envList = median([bin, 'env', 'list']);
const help = median([bin, '--help']);
// One TAB: table names from the cached catalog (servers.json), no request.
writeFileSync(
  join(configDir, 'servers.json'),
  JSON.stringify({ version: 1, servers: { 'test http://127.0.0.1:8090': { baseUrl: 'http://127.0.0.1:8090', identity: '', tables: ['Artikel', 'Kunden'] } } }),
);
const tab = median([bin, '__complete', 'get-table', '']);
rmSync(configDir, { recursive: true, force: true });
const fmt = (ms) => `${ms.toFixed(1)} ms`;
console.log(`runs per command: ${runs} (median)`);
console.log(`node -e 0            ${fmt(node)}`);
console.log(`legacy --version     ${fmt(version)}  ratio ${(version / node).toFixed(2)}x  (goal ≤ 2x)`);
console.log(`legacy env list      ${fmt(envList)}  ratio ${(envList / node).toFixed(2)}x  (goal ≤ 3x)`);
console.log(`legacy --help        ${fmt(help)}  ratio ${(help / node).toFixed(2)}x`);
console.log(`TAB (get-table …)    ${fmt(tab)}  ratio ${(tab / node).toFixed(2)}x  (goal ≤ 3x)`);
