/**
 * Shell completion (issue 22 item 8): what `legacy __complete` answers, from the command specs, the
 * config and the cached catalog (no request); and the bash script driving it in a real bash.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, runShell, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { ROOT } from '../helpers/paths.js';

/** The candidates (without descriptions) and the directive of `legacy __complete <words...>`. */
async function complete(words: string[], env: Record<string, string> = { LEGACY_CONFIG_DIR: tempDir() }) {
  const r = await runCli(['__complete', ...words], { env });
  expect(r.code).toBe(0);
  expect(r.stderr).toBe('');
  const [directive, ...lines] = r.stdout.replace(/\n$/, '').split('\n');
  return { directive, values: lines.filter(Boolean).map((l) => l.split('\t')[0]) };
}

describe('legacy __complete', () => {
  it('completes a command option after the command’s argument', async () => {
    expect((await complete(['get-table', 'Artikel', '--wh'])).values).toEqual(['--where']);
  });

  it('completes after global options given first, skipping their values', async () => {
    expect((await complete(['-e', 'live', 'get-table', '--wh'])).values).toEqual(['--where']);
    expect((await complete(['--env=live', '--timeout', '5000', 'get-table', 'Artikel', '--li'])).values).toEqual(['--limit']);
    // A value that looks like a command is the option's value, not the command.
    expect((await complete(['--session', 'sync', 'get-table', '--co'])).values).toEqual(['--concurrency', '--count', '--config-dir']);
  });

  it('offers global options after the command too, and not an option already given', async () => {
    const r = await complete(['get-table', 'Artikel', '--csv', '--']);
    expect(r.values).toContain('--base-url');
    expect(r.values).toContain('--where');
    expect(r.values).not.toContain('--csv');
    expect(r.values).not.toContain('--version');
    // Repeatable options stay.
    expect((await complete(['get-table', 'A', '--where', 'x=1', '--wh'])).values).toEqual(['--where']);
  });

  it('completes commands, subcommands and argument values from the specs', async () => {
    expect((await complete(['get'])).values).toEqual(['get-table']);
    expect((await complete(['session', ''])).values).toEqual(['status', 'refresh', 'clear']);
    expect((await complete(['completion', ''])).values).toEqual(['bash', 'zsh', 'fish']);
    expect((await complete(['get-table', 'A', '--format', ''])).values).toEqual(['csv', 'json', 'ndjson', 'table', 'xlsx']);
    expect((await complete(['get-table', 'A', '--format=n'])).values).toEqual(['--format=ndjson']);
    // bash splits `--format=n` into three words.
    expect((await complete(['get-table', 'A', '--format', '=', 'n'])).values).toEqual(['ndjson']);
    expect((await complete(['--log-level', 'd'])).values).toEqual(['debug']);
  });

  it('asks the shell for file or directory names where the value is one', async () => {
    expect((await complete(['get-table', 'A', '-o', ''])).directive).toBe(':files');
    expect((await complete(['push-field', 'A', '--from', 'k'])).directive).toBe(':files');
    expect((await complete(['--config-dir', ''])).directive).toBe(':dirs');
    // A free-text value completes nothing (and never a file name).
    expect(await complete(['get-table', 'A', '--where', ''])).toEqual({ directive: ':words', values: [] });
  });

  it('completes environment names from the config', async () => {
    const env = { LEGACY_CONFIG_DIR: tempDir() };
    expect((await runCli(['env', 'add', 'live', 'http://127.0.0.1:1'], { env })).code).toBe(0);
    expect((await runCli(['env', 'add', 'test', 'http://127.0.0.1:2'], { env })).code).toBe(0);
    expect((await complete(['-e', ''], env)).values).toEqual(['live', 'test']);
    expect((await complete(['env', 'remove', 't'], env)).values).toEqual(['test']);
    // A new environment's name is not one of the old ones.
    expect((await complete(['env', 'add', ''], env)).values).toEqual([]);
  });

  it('never fails: a damaged config completes nothing, exit 0', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'config.json'), '{ not json');
    expect(await complete(['-e', ''], { LEGACY_CONFIG_DIR: dir })).toEqual({ directive: ':words', values: [] });
    expect(await complete(['get-table', ''], { LEGACY_CONFIG_DIR: dir })).toEqual({ directive: ':words', values: [] });
  });
});

describe('table names from the cached catalog', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a run that read the catalog leaves its table names; completion reads them without a request', async () => {
    expect((await complete(['get-table', ''], server.env)).values).toEqual([]);
    expect((await runCli(['tables'], { env: server.env })).code).toBe(0);
    const before = (await server.stats()).requests;
    expect((await complete(['get-table', 'Art'], server.env)).values).toEqual(['Artikel', 'Artikel_Familie', 'Artikel_Variante']);
    expect((await complete(['describe', ''], server.env)).values).toContain('Kunden');
    // sync takes several tables: one already given is not offered again; its subcommands are.
    const sync = await complete(['sync', 'Artikel', ''], server.env);
    expect(sync.values).toContain('Kunden');
    expect(sync.values).not.toContain('Artikel');
    expect((await complete(['sync', ''], server.env)).values).toEqual(expect.arrayContaining(['status', 'verify', 'Artikel']));
    // push-field: the table first, then nothing to offer for key, field and value.
    expect((await complete(['push-field', 'Ku'], server.env)).values).toEqual(['Kunden']);
    expect((await complete(['push-field', 'Kunden', ''], server.env)).values).toEqual([]);
    expect((await server.stats()).requests).toBe(before);
    // Another environment has its own catalog (none yet).
    expect((await complete(['-e', 'other', 'get-table', ''], { ...server.env, LEGACY_BASE_URL: '' })).values).toEqual([]);
  });
});

describe('the bash script in a real bash', () => {
  it('completes options after arguments, after global options, and table names', async () => {
    const server = await startServer();
    try {
      const bin = tempDir();
      mkdirSync(bin, { recursive: true });
      writeFileSync(join(bin, 'legacy'), `#!/bin/sh\nexec node ${JSON.stringify(join(ROOT, 'bin/legacy.js'))} "$@"\n`);
      chmodSync(join(bin, 'legacy'), 0o755);
      const env = { ...server.env, PATH: `${bin}:${process.env.PATH}` };
      expect((await runCli(['tables'], { env: server.env })).code).toBe(0);
      // COMP_WORDS as bash fills them for the line typed so far, the cursor in the last word.
      const line = (words: string[]) =>
        `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _legacy; printf '%s\\n' "\${COMPREPLY[@]}"; echo ---`;
      const script = [
        'source <(legacy completion bash)',
        line(['legacy', 'get-table', 'Artikel', '--wh']),
        line(['legacy', '-e', 'test', 'get-table', '--wh']),
        line(['legacy', 'get-table', 'Artikel_V']),
        line(['legacy', 'get-table', 'Artikel', '-o', 'pack']),
      ].join('\n');
      const r = await runShell(script, { env, cwd: ROOT });
      expect(r.stderr).toBe('');
      const answers = r.stdout.split('---\n').map((a) => a.trim());
      expect(answers.slice(0, 4)).toEqual(['--where', '--where', 'Artikel_Variante', 'package-lock.json\npackage.json']);
    } finally {
      await server.stop();
    }
  });
});
