/** The CLI frame, configuration precedence, bad config, modes, usage errors. */
import { chmodSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, cleanupTempDirs, runCli, runProcess, runShell, tempDir } from '../helpers/cli.js';
import { runMain } from '../helpers/run.js';

afterAll(cleanupTempDirs);

const mode = (path: string) => statSync(path).mode & 0o777;

describe('frame', () => {
  it('--help lists the commands and exits 0', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['get-table', 'session', 'env', 'doctor', 'tables', 'describe', 'completion']) expect(r.stdout).toContain(cmd);
    expect(r.stderr).toBe('');
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    const r = await runCli(['--version']);
    expect(r.stdout.trim()).toBe(pkg.version);
    expect(r.code).toBe(0);
  });

  it('help <command> shows that command', async () => {
    const r = await runCli(['help', 'get-table']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--where');
  });

  it('an unknown command exits 64 with one line and a suggestion, not a help dump', async () => {
    const r = await runCli(['get-tabel', 'Artikel'], { env: { LEGACY_CONFIG_DIR: tempDir() } });
    expect(r.code).toBe(64);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/did you mean get-table/);
    expect(r.stdout).toBe('');
  });

  it('an unknown option exits 64 with one line', async () => {
    const r = await runCli(['env', 'list', '--jsno'], { env: { LEGACY_CONFIG_DIR: tempDir() } });
    expect(r.code).toBe(64);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown option '--jsno'.*did you mean --json/);
  });

  it('completion scripts are printed for bash, zsh and fish; other shells are a usage error', async () => {
    for (const shell of ['bash', 'zsh', 'fish']) {
      const r = await runCli(['completion', shell], { env: { LEGACY_CONFIG_DIR: tempDir() } });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('legacy __complete');
    }
    const bad = await runCli(['completion', 'tcsh'], { env: { LEGACY_CONFIG_DIR: tempDir() } });
    expect(bad.code).toBe(64);
  });
});

describe('npm install -g . (issue 22 item 10)', () => {
  // npm 11.16+ lists the install-time scripts of a package installed from a folder (npm install -g .,
  // npm link) for approval in allowScripts, which a global install has no project to hold, and npm 12
  // skips them: preinstall, install, postinstall and prepare. The build runs on the checkout's own
  // installs instead (the `dependencies` script; `prepack` for a tarball).
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const installScripts = ['preinstall', 'install', 'postinstall', 'prepare'].filter((s) => pkg.scripts[s] !== undefined);

  it('the package has no install-time script, and the checkout still builds on npm ci and npm pack', () => {
    expect(installScripts).toEqual([]);
    expect(pkg.scripts.dependencies).toBe(pkg.scripts.build);
    expect(pkg.scripts.prepack).toBe(pkg.scripts.build);
  });

  // Never with an install script: it would rebuild dist/ under the other tests' feet.
  it.skipIf(installScripts.length > 0)('installs cleanly into a prefix, and the installed legacy runs', async () => {
    const prefix = tempDir('legacy-global-');
    const r = await runShell(`npm install -g . --prefix '${prefix}' --offline --no-audit --no-fund --loglevel=warn`, { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const installed = await runShell(`'${join(prefix, 'bin', 'legacy')}' --version && '${join(prefix, 'bin', 'legacy')}' help tables`, {
      env: { LEGACY_CONFIG_DIR: tempDir() },
    });
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.stdout).toContain(`${JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version}\n`);
    expect(installed.stdout).toContain('list the tables');
  });
});

describe('the bin as a process', () => {
  it('exit codes reach the process, and --version answers without loading the CLI', async () => {
    expect((await runProcess(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect((await runProcess(['--help'])).code).toBe(0);
    const usage = await runProcess(['get-table']);
    expect(usage.code).toBe(64);
    expect(usage.stderr.trim().split('\n')).toHaveLength(1);
    const config = await runProcess(['tables'], { env: { LEGACY_CONFIG_DIR: tempDir(), LEGACY_ENV: 'nope' } });
    expect(config.code).toBe(78);
    expect(config.signal).toBeNull();
  });
});

describe('environments and config file', () => {
  it('env add / list --json round-trips; dir 0700 and file 0600', async () => {
    const dir = join(tempDir(), 'cfg');
    const env = { LEGACY_CONFIG_DIR: dir };
    expect((await runCli(['env', 'add', 'test', 'http://127.0.0.1:8090', '--default'], { env })).code).toBe(0);
    expect((await runCli(['env', 'add', 'live', 'http://127.0.0.1:8080/rest/'], { env })).code).toBe(0);
    const r = await runCli(['env', 'list', '--json'], { env });
    expect(r.code).toBe(0);
    const data = JSON.parse(r.stdout);
    expect(data.defaultEnv).toBe('test');
    expect(data.environments).toEqual([
      { name: 'test', baseUrl: 'http://127.0.0.1:8090', default: true, selected: true },
      { name: 'live', baseUrl: 'http://127.0.0.1:8080', default: false, selected: false },
    ]);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, 'config.json'))).toBe(0o600);
  });

  it('modes stay private even with a permissive umask', async () => {
    const dir = join(tempDir(), 'cfg');
    const r = await runShell(`umask 000; node ${BIN} env add a http://127.0.0.1:1`, { env: { LEGACY_CONFIG_DIR: dir } });
    expect(r.code).toBe(0);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, 'config.json'))).toBe(0o600);
  });

  it('env default / remove, with suggestions for unknown names', async () => {
    const env = { LEGACY_CONFIG_DIR: tempDir() };
    await runCli(['env', 'add', 'test', 'http://127.0.0.1:8090'], { env });
    await runCli(['env', 'add', 'live', 'http://127.0.0.1:8080'], { env });
    expect((await runCli(['env', 'default', 'live'], { env })).code).toBe(0);
    const bad = await runCli(['env', 'default', 'tset'], { env });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toMatch(/did you mean test/);
    expect((await runCli(['env', 'remove', 'test'], { env })).code).toBe(0);
    const list = JSON.parse((await runCli(['env', 'list', '--json'], { env })).stdout);
    expect(list.environments.map((e: { name: string }) => e.name)).toEqual(['live']);
    expect(list.defaultEnv).toBe('live');
  });

  it('env add never replaces an environment silently, and says what it did (issue 22 item 10)', async () => {
    const dir = tempDir();
    const env = { LEGACY_CONFIG_DIR: dir };
    const added = await runCli(['env', 'add', 'live', 'http://127.0.0.1:8080'], { env });
    expect(added.code).toBe(0);
    expect(added.stdout).toBe('');
    expect(added.stderr).toBe('added environment live → http://127.0.0.1:8080; it is now the default\n');
    const path = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(path, 'utf8'));
    config.environments.live.timeout = 5000;
    writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
    const before = readFileSync(path, 'utf8');
    const refused = await runCli(['env', 'add', 'live', 'http://127.0.0.1:9999'], { env });
    expect(refused.code).toBe(64);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/environment live already exists \(http:\/\/127\.0\.0\.1:8080\); not replaced.*--force/);
    expect(readFileSync(path, 'utf8')).toBe(before);
    // The same URL again changes nothing and is no error (scripts may run it twice).
    const again = await runCli(['env', 'add', 'live', 'http://127.0.0.1:8080'], { env });
    expect(again.code).toBe(0);
    expect(again.stderr).toBe('environment live is already http://127.0.0.1:8080\n');
    const forced = await runCli(['env', 'add', 'live', 'http://127.0.0.1:9999', '--force'], { env });
    expect(forced.code).toBe(0);
    expect(forced.stderr).toBe('replaced environment live: http://127.0.0.1:8080 → http://127.0.0.1:9999 (its other settings kept)\n');
    expect(JSON.parse(readFileSync(path, 'utf8')).environments.live).toEqual({ baseUrl: 'http://127.0.0.1:9999', timeout: 5000 });
    expect((await runCli(['-q', 'env', 'add', 'test', 'http://127.0.0.1:8090'], { env })).stderr).toBe('');
  });

  it('env current shows the pages in flight really used: adaptive unless the config pins them (issue 22 item 10)', async () => {
    const dir = tempDir();
    const env = { LEGACY_CONFIG_DIR: dir, LEGACY_BASE_URL: 'http://127.0.0.1:1' };
    const line = (out: string) => out.split('\n').find((l) => l.startsWith('concurrency '));
    const adaptive = await runCli(['env', 'current'], { env });
    expect(line(adaptive.stdout)).toBe('concurrency        adaptive: get-table and sync from 3 up to 8 pages in flight');
    expect(JSON.parse((await runCli(['env', 'current', '--json'], { env })).stdout).concurrency).toBeNull();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ defaults: { concurrency: 4 }, environments: {} }), { mode: 0o600 });
    const pinned = await runCli(['env', 'current'], { env });
    expect(line(pinned.stdout)).toBe('concurrency        4 pages in flight (pinned by concurrency in the config)');
    expect(JSON.parse((await runCli(['env', 'current', '--json'], { env })).stdout).concurrency).toBe(4);
  });

  it('an unknown key in the config file is a configuration error naming the file and key, with a suggestion (issue 22 item 10)', async () => {
    const dir = tempDir();
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify({ defaults: { pagesize: 50 }, environments: { a: { baseUrl: 'http://127.0.0.1:1' } } }), { mode: 0o600 });
    const r = await runCli(['env', 'current'], { env: { LEGACY_CONFIG_DIR: dir } });
    expect(r.code).toBe(78);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(path);
    expect(r.stderr).toMatch(/unknown key defaults\.pagesize \(did you mean pageSize\?\)/);
    // Anywhere in the file: an environment, its sync block and its tables.
    writeFileSync(
      path,
      JSON.stringify({
        environments: { a: { baseUrl: 'http://127.0.0.1:1', sync: { tables: [{ name: 'Artikel', cusor: ['d'] }], dbb: '/x' } } },
        defaultenv: 'a',
      }),
      { mode: 0o600 },
    );
    const all = await runCli(['env', 'list'], { env: { LEGACY_CONFIG_DIR: dir } });
    expect(all.code).toBe(78);
    expect(all.stderr).toContain('unknown key defaultenv (did you mean defaultEnv?)');
    expect(all.stderr).toContain('unknown key environments.a.sync.dbb (did you mean db?)');
    expect(all.stderr).toContain('unknown key environments.a.sync.tables[0].cusor (did you mean cursor?)');
  });

  it('concurrent env add from many processes loses no change', async () => {
    const env = { LEGACY_CONFIG_DIR: tempDir() };
    await Promise.all(Array.from({ length: 8 }, (_, i) => runProcess(['env', 'add', `e${i}`, `http://127.0.0.1:${9000 + i}`], { env })));
    const list = JSON.parse((await runCli(['env', 'list', '--json'], { env })).stdout);
    expect(list.environments).toHaveLength(8);
  });

  it('precedence: flag beats environment variable beats config file beats default', async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        defaultEnv: 'a',
        defaults: { timeout: 1111, retries: 1 },
        environments: {
          a: { baseUrl: 'http://127.0.0.1:1001' },
          b: { baseUrl: 'http://127.0.0.1:1002', timeout: 2222 },
          c: { baseUrl: 'http://127.0.0.1:1003' },
        },
      }),
      { mode: 0o600 },
    );
    const current = async (args: string[], env: Record<string, string> = {}) => {
      const r = await runCli([...args, 'env', 'current', '--json'], { env: { LEGACY_CONFIG_DIR: dir, ...env } });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout);
    };
    const fromConfig = await current([]);
    expect(fromConfig).toMatchObject({ env: 'a', envSource: 'config', baseUrl: 'http://127.0.0.1:1001', timeout: 1111, retries: 1 });
    // env current says what set each value.
    expect(fromConfig.origins).toMatchObject({ env: 'defaultEnv', baseUrl: 'environments.a.baseUrl', timeout: 'defaults.timeout', pageSize: 'default' });
    const fromEnv = await current([], { LEGACY_ENV: 'b', LEGACY_RETRIES: '5' });
    expect(fromEnv).toMatchObject({ env: 'b', envSource: 'env', baseUrl: 'http://127.0.0.1:1002', timeout: 2222, retries: 5 });
    expect(fromEnv.origins).toMatchObject({ env: 'LEGACY_ENV', timeout: 'environments.b.timeout', retries: 'LEGACY_RETRIES' });
    const fromFlag = await current(['--env', 'c', '--retries', '7', '--timeout', '3333', '--base-url', 'http://127.0.0.1:1009'], {
      LEGACY_ENV: 'b',
      LEGACY_RETRIES: '5',
      LEGACY_TIMEOUT: '4444',
      LEGACY_BASE_URL: 'http://127.0.0.1:1008',
    });
    expect(fromFlag).toMatchObject({ env: 'c', envSource: 'flag', baseUrl: 'http://127.0.0.1:1009', baseUrlSource: 'flag', timeout: 3333, retries: 7 });
    expect(fromFlag.origins).toMatchObject({ env: '--env', baseUrl: '--base-url', timeout: '--timeout', retries: '--retries' });
    const envUrl = await current([], { LEGACY_BASE_URL: 'http://127.0.0.1:1008' });
    expect(envUrl).toMatchObject({ baseUrl: 'http://127.0.0.1:1008', baseUrlSource: 'env' });
    const defaults = await current([], { LEGACY_CONFIG_DIR: tempDir() });
    expect(defaults).toMatchObject({ env: 'live', envSource: 'default', timeout: 60000, retries: 3, baseUrl: null });
  });

  it('a config file that is not valid JSON: exit 78 naming the path, file untouched', async () => {
    const dir = tempDir();
    const path = join(dir, 'config.json');
    const broken = '{"environments": {"test": {"baseUrl": "http://127.0.0.1:1"}},,}';
    writeFileSync(path, broken, { mode: 0o600 });
    for (const args of [
      ['env', 'list'],
      ['env', 'add', 'x', 'http://127.0.0.1:2'],
      ['get-table', 'Artikel'],
    ]) {
      const r = await runCli(args, { env: { LEGACY_CONFIG_DIR: dir } });
      expect(r.code).toBe(78);
      expect(r.stderr).toContain(path);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(readFileSync(path, 'utf8')).toBe(broken);
  });

  it('a config file that fails validation: exit 78 saying what is wrong', async () => {
    const dir = tempDir();
    const path = join(dir, 'config.json');
    const invalid = JSON.stringify({ environments: { test: { baseUrl: 'ftp://x', timeout: -1 } } });
    writeFileSync(path, invalid, { mode: 0o600 });
    const r = await runCli(['env', 'list'], { env: { LEGACY_CONFIG_DIR: dir } });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/environments\.test\.baseUrl/);
    expect(r.stderr).toMatch(/environments\.test\.timeout/);
    expect(readFileSync(path, 'utf8')).toBe(invalid);
  });

  it('an unwritable config dir: exit 78 with the path', async () => {
    const parent = tempDir();
    const dir = join(parent, 'ro');
    mkdirSync(dir, { mode: 0o500 });
    chmodSync(dir, 0o500);
    const r = await runCli(['env', 'add', 'x', 'http://127.0.0.1:2'], { env: { LEGACY_CONFIG_DIR: join(dir, 'sub') } });
    // root ignores directory permissions; then the write succeeds, which is also fine.
    if (process.getuid?.() !== 0) {
      expect(r.code).toBe(78);
      expect(r.stderr).toContain(dir);
    }
    chmodSync(dir, 0o700);
  });

  it('an unknown environment for a server command: exit 78 with a suggestion', async () => {
    const env = { LEGACY_CONFIG_DIR: tempDir() };
    await runCli(['env', 'add', 'test', 'http://127.0.0.1:8090'], { env });
    const r = await runCli(['-e', 'tset', 'tables'], { env });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/unknown environment 'tset'.*did you mean test/);
  });

  it('credentials are never taken from the command line', async () => {
    const r = await runCli(['--password', 'secret', 'env', 'list'], { env: { LEGACY_CONFIG_DIR: tempDir() } });
    expect(r.code).toBe(64);
    expect(r.stderr).not.toContain('secret');
  });
});

describe('colour', () => {
  // `env list` on a fresh config warns that there are no environments.
  const run = (extra: string[], env: Record<string, string | undefined>) =>
    runMain(['env', 'list', '-v', ...extra], { env: { LEGACY_CONFIG_DIR: tempDir(), NO_COLOR: undefined, ...env }, stderrTty: true });

  it('level names are coloured (through chalk) only on a terminal, never with NO_COLOR or --no-color', async () => {
    const tty = await run([], {});
    expect(tty.stderr).toMatch(/legacy: \u001b\[33mwarning\u001b\[39m: no environments/);
    expect((await run([], { NO_COLOR: '1' })).stderr).not.toContain('\u001b');
    expect((await run(['--no-color'], {})).stderr).not.toContain('\u001b');
    const notTty = await runMain(['env', 'list', '-v'], { env: { LEGACY_CONFIG_DIR: tempDir(), NO_COLOR: undefined } });
    expect(notTty.stderr).not.toContain('\u001b');
  });
});
