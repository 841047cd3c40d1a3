/**
 * The legacy-emulator bin as a process: ready line, exit codes, signals, request log.
 * Runs the built code (bin → dist/emulator/cli.js); `npm test` builds first. Skipped when dist/ is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../../bin/legacy-emulator.js', import.meta.url));
const BUILT = existsSync(fileURLToPath(new URL('../../dist/emulator/cli.js', import.meta.url)));
const tmp = mkdtempSync(join(tmpdir(), 'legacy-emulator-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

async function untilListening(r: Run): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)\n$/.exec(r.stdout());
    if (m) return m[1]!;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`no ready line; stderr: ${r.stderr()}`);
}

describe.skipIf(!BUILT)('legacy-emulator bin', () => {
  it('prints exactly one ready line, serves, logs with -v to stderr, and stops with exit 0 on SIGTERM and SIGINT', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const r = run(['--port', '0', '--rows', 'Artikel=200000', '-v']);
      const url = await untilListening(r);
      const res = await fetch(`${url}/rest/Artikel?$top=1&$skip=199999`);
      expect((await res.json()).__COUNT).toBe(200000);
      r.child.kill(signal);
      expect(await r.exit).toBe(0);
      expect(r.stdout()).toBe(`listening on ${url}\n`);
      expect(r.stderr()).toMatch(/^GET \/rest\/Artikel\?\$top=1&\$skip=199999 200 \d+ms\n$/);
    }
  });

  it('bad options: one line on stderr, exit 64', async () => {
    for (const args of [
      ['--bogus'],
      ['--port', 'x'],
      ['--rows', 'Nope=5'],
      ['--duplicate-cookie', 'maybe'],
      ['--faults', '0.1:boom'],
      ['--url-decoding', 'raw'],
      ['--lifetime-unit', 'hours'],
      ['--ignore-filters', 'yes'],
      ['--change-tracking', 'Nope'],
      ['--change-tracking', ','],
    ]) {
      const r = run(args);
      expect(await r.exit, args.join(' ')).toBe(64);
      expect(r.stdout()).toBe('');
      expect(r.stderr().trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr()).toMatch(/^legacy-emulator: /);
    }
  });

  it('port in use: one line, exit 69', async () => {
    const blocker = net.createServer();
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', res));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = run(['--port', String(port)]);
      expect(await r.exit).toBe(69);
      expect(r.stderr()).toBe(`legacy-emulator: port ${port} is already in use\n`);
    } finally {
      blocker.close();
    }
  });

  it('fixtures: missing file → 66, invalid fixture → 65, a good one is served', async () => {
    const missing = run(['--port', '0', '--data', join(tmp, 'none.json')]);
    expect(await missing.exit).toBe(66);
    const badFile = join(tmp, 'bad.json');
    writeFileSync(badFile, JSON.stringify({ dataClasses: [{ name: 'T', key: 'ID', attributes: [{ name: 'ID', type: 'int' }] }] }));
    const bad = run(['--port', '0', '--data', badFile]);
    expect(await bad.exit).toBe(65);
    expect(bad.stderr()).toMatch(/unknown type "int"/);
    const good = run(['--port', '0', '--data', fileURLToPath(new URL('./fixtures/erp.json', import.meta.url))]);
    const url = await untilListening(good);
    expect((await (await fetch(`${url}/rest/Kunde?$top=0`)).json()).__COUNT).toBe(8);
    good.child.kill('SIGTERM');
    expect(await good.exit).toBe(0);
  });

  it('--change-tracking: __GlobalStamp in the envelope and the tracked table', async () => {
    const r = run(['--port', '0', '--rows', 'Kunden=4,Belege=2', '--change-tracking', 'Kunden,Belege']);
    const url = await untilListening(r);
    const page = await (await fetch(`${url}/rest/Kunden`)).json();
    expect(page.__GlobalStamp).toBe(7);
    expect(page.__ENTITIES.map((e: { __GlobalStamp: number }) => e.__GlobalStamp)).toHaveLength(4);
    expect((await (await fetch(`${url}/rest/__DeletedRecords`)).json()).__COUNT).toBe(0);
    r.child.kill('SIGTERM');
    expect(await r.exit).toBe(0);
  });

  it('--help and --version', async () => {
    const help = run(['--help']);
    expect(await help.exit).toBe(0);
    expect(help.stdout()).toMatch(/^Usage: legacy-emulator/);
    const version = run(['-V']);
    expect(await version.exit).toBe(0);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    expect(version.stdout()).toBe(`${pkg.version}\n`);
  });
});
