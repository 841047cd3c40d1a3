/**
 * `-o` writes to the path it is given instead of replacing it, keeps an
 * existing file's mode, and a full disk is exit 73 with one line and nothing half-written.
 *
 * - a symlink stays a link and its target gets the data (every format, and a dangling link);
 * - a FIFO stays a FIFO and its reader gets the data; `/dev/stdout` and a full character device
 *   are written in place, nothing is created beside them;
 * - a 0600 target stays 0600, a new file gets the umask's mode;
 * - `> /dev/full`, `-o` into a full file system and `sync` into a full file system: exit 73, one
 *   line, the final name untouched. The full file system is a real 64 KiB tmpfs mounted for the
 *   test (root only); where mounting is not permitted those tests are skipped and say why.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanupTempDirs, runCli, runProcess, runShell, tempDir } from '../helpers/cli.js';
import { startServer, type TestServer } from '../helpers/emulator.js';
import { expectCleanFailure, IS_ROOT, listDir } from './support.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/small.json', import.meta.url));
const FORMATS = ['csv', 'json', 'ndjson', 'xlsx'] as const;

let server: TestServer;
let big: TestServer;
const mounts: string[] = [];

beforeAll(async () => {
  server = await startServer({ data: FIXTURE });
  big = await startServer({ rows: { Artikel: 3000, Kunden: 20 } });
});
afterAll(async () => {
  await server?.stop();
  await big?.stop();
  for (const dir of mounts.splice(0)) {
    try {
      execFileSync('umount', [dir], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
  cleanupTempDirs();
  restoreDevStdout();
});

/** Today's defect replaced the system's /dev/stdout link with a file: put the link back if a run did. */
function restoreDevStdout(): void {
  try {
    if (!lstatSync('/dev/stdout').isSymbolicLink()) {
      unlinkSync('/dev/stdout');
      symlinkSync('/proc/self/fd/1', '/dev/stdout');
    }
  } catch {
    /* not ours to fix */
  }
}

/** The plain export on stdout, to compare files with. */
async function expected(format: string, s = server): Promise<string> {
  const r = await runCli(['get-table', 'Teile', `--${format}`], { env: s.env });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

/** A fresh tmpfs of `size` (needs root and mount permission), or why there cannot be one. */
function smallFileSystem(size: string): { dir: string } | { reason: string } {
  const dir = tempDir('legacy-fullfs-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
    return { reason: `cannot mount a small tmpfs here (${stderr || (error as Error).message}); run as root with mount permission to test a full file system` };
  }
  mounts.push(dir);
  return { dir };
}

/** Fill the file system holding `dir` to the last byte, then free `leave` bytes. */
function fill(dir: string, leave = 0): void {
  const chunk = Buffer.alloc(4096, 120);
  const path = join(dir, 'filler');
  for (let i = 0; ; i++) {
    try {
      writeFileSync(path, chunk, { flag: i === 0 ? 'w' : 'a' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
      throw error;
    }
  }
  // The last partial blocks too.
  for (let size = 2048; size >= 1; size = Math.floor(size / 2)) {
    try {
      writeFileSync(path, Buffer.alloc(size, 120), { flag: 'a' });
    } catch {
      /* full at this size */
    }
  }
  if (leave) truncateSync(path, Math.max(0, statSync(path).size - leave));
}

describe('-o writes to what the path names', () => {
  it.each(FORMATS)('a symlinked -o (%s): the link stays a link and its target gets the data', async (format) => {
    const dir = tempDir();
    const target = join(dir, `data.${format}`);
    writeFileSync(target, 'old content\n');
    symlinkSync(`data.${format}`, join(dir, `link.${format}`));
    const r = await runCli(['get-table', 'Teile', `--${format}`, '-o', `link.${format}`], { env: server.env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(lstatSync(join(dir, `link.${format}`)).isSymbolicLink()).toBe(true);
    const data = readFileSync(target);
    if (format === 'xlsx') expect(data.subarray(0, 2).toString('latin1')).toBe('PK');
    else expect(data.toString('utf8')).toBe(await expected(format));
    expect(listDir(dir)).toEqual([`data.${format}`, `link.${format}`]);
  });

  it('a dangling symlink: the file it names is created, the link stays', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'exports'));
    symlinkSync('exports/teile.csv', join(dir, 'latest.csv'));
    const r = await runCli(['get-table', 'Teile', '--csv', '-o', 'latest.csv'], { env: server.env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(lstatSync(join(dir, 'latest.csv')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dir, 'exports', 'teile.csv'), 'utf8')).toBe(await expected('csv'));
    expect(listDir(join(dir, 'exports'))).toEqual(['teile.csv']);
  });

  it('a FIFO: the reader gets the data and the FIFO stays', async () => {
    const dir = tempDir();
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'ignore'] });
    let got = '';
    reader.stdout.setEncoding('utf8').on('data', (d: string) => (got += d));
    const readerDone = new Promise<void>((resolve) => reader.on('close', () => resolve()));
    const r = await runProcess(['get-table', 'Teile', '--csv', '-o', 'pipe'], { env: server.env, cwd: dir });
    // Today's defect renamed a file over the FIFO: the reader would wait for ever.
    const timer = setTimeout(() => reader.kill('SIGKILL'), 3000);
    await readerDone;
    clearTimeout(timer);
    expect(r.code, r.stderr).toBe(0);
    expect(got).toBe(await expected('csv'));
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(listDir(dir)).toEqual(['pipe']);
  });

  it('-o /dev/stdout writes the process stdout itself and creates nothing', async () => {
    const dir = tempDir();
    const before = listDir('/dev').filter((f) => f.startsWith('.stdout.'));
    const r = await runProcess(['get-table', 'Teile', '--csv', '-o', '/dev/stdout'], { env: server.env, cwd: dir });
    const replaced = !lstatSync('/dev/stdout').isSymbolicLink();
    restoreDevStdout();
    expect(r.code, r.stderr).toBe(0);
    expect(replaced, '/dev/stdout must stay the system link').toBe(false);
    expect(r.stdout).toBe(await expected('csv'));
    expect(listDir('/dev').filter((f) => f.startsWith('.stdout.'))).toEqual(before);
    expect(listDir(dir)).toEqual([]);
  });

  it('a symlink to /dev/stdout: the data arrives on stdout, the link stays', async () => {
    const dir = tempDir();
    symlinkSync('/dev/stdout', join(dir, 'out.csv'));
    const r = await runProcess(['get-table', 'Teile', '--csv', '-o', 'out.csv'], { env: server.env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(await expected('csv'));
    expect(lstatSync(join(dir, 'out.csv')).isSymbolicLink()).toBe(true);
    expect(listDir(dir)).toEqual(['out.csv']);
  });

  it.runIf(IS_ROOT)('as root, an existing file keeps its owner and group', async () => {
    const dir = tempDir();
    const path = join(dir, 'theirs.csv');
    writeFileSync(path, 'old\n', { mode: 0o640 });
    chownSync(path, 4242, 4343);
    const r = await runCli(['get-table', 'Teile', '--csv', '-o', 'theirs.csv'], { env: server.env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const st = statSync(path);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([4242, 4343, 0o640]);
    expect(readFileSync(path, 'utf8')).toBe(await expected('csv'));
  });

  it('a 0600 target stays 0600 after -o; a new file gets the umask mode', async () => {
    const dir = tempDir();
    const secret = join(dir, 'secret.csv');
    writeFileSync(secret, 'old\n', { mode: 0o600 });
    chmodSync(secret, 0o600);
    const r = await runCli(['get-table', 'Teile', '--csv', '-o', 'secret.csv'], { env: server.env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(secret, 'utf8')).toBe(await expected('csv'));
    expect(statSync(secret).mode & 0o777).toBe(0o600);

    const fresh = await runCli(['get-table', 'Teile', '--csv', '-o', 'new.csv'], { env: server.env, cwd: dir });
    expect(fresh.code, fresh.stderr).toBe(0);
    const umask = process.umask();
    expect(statSync(join(dir, 'new.csv')).mode & 0o777).toBe(0o666 & ~umask);
  });
});

describe('--har keeps its file private', () => {
  it('an existing HAR file with a wider mode becomes 0600 (it may hold server details)', async () => {
    const dir = tempDir();
    const har = join(dir, 'run.har');
    writeFileSync(har, '{}\n');
    chmodSync(har, 0o644);
    const r = await runCli(['--har', har, 'tables'], { env: server.env });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(har).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(har, 'utf8')).log.entries.length).toBeGreaterThan(0);
  });
});

describe('a full disk is exit 73 with one line', () => {
  it('stdout redirected to /dev/full', async () => {
    const r = await runShell(`"${process.execPath}" "${BIN}" get-table Artikel --csv > /dev/full`, { env: big.env });
    expectCleanFailure(r, 73, /standard output: no space left/);
    expect(r.stderr).not.toMatch(/this is a bug/);
  });

  // A private node of the /dev/full device (1,7), not /dev/full itself: today's defect renames a
  // file over the device it is given, and the system's /dev/full must survive a run of this test.
  it('-o a full character device: written in place (the device stays), exit 73 naming it', async (ctx) => {
    const dir = tempDir();
    const device = join(dir, 'full');
    try {
      execFileSync('mknod', [device, 'c', '1', '7'], { stdio: 'ignore' });
    } catch {
      return ctx.skip('cannot create a device node here (mknod needs root); the /dev/full device test needs one');
    }
    const r = await runProcess(['get-table', 'Artikel', '--csv', '-o', 'full'], { env: big.env, cwd: dir });
    expectCleanFailure(r, 73, /\/full: no space left/);
    expect(statSync(device).isCharacterDevice()).toBe(true);
    expect(listDir(dir)).toEqual(['full']);
  });

  it('-o into a full file system: exit 73 naming the path, the old file intact, no temporary file', async (ctx) => {
    const fs = smallFileSystem('64k');
    if ('reason' in fs) return ctx.skip(fs.reason);
    writeFileSync(join(fs.dir, 'artikel.out'), 'yesterday\n');
    fill(fs.dir);
    // A name without a format extension, so that every format flag may write it.
    for (const format of FORMATS) {
      const r = await runCli(['get-table', 'Artikel', `--${format}`, '-o', join(fs.dir, 'artikel.out')], { env: big.env, timeoutMs: 60_000 });
      expectCleanFailure(r, 73, new RegExp(`${fs.dir.replace(/[/.]/g, '\\$&')}/artikel\\.out: no space left.*write somewhere else`));
      expect(readFileSync(join(fs.dir, 'artikel.out'), 'utf8')).toBe('yesterday\n');
      expect(readdirSync(fs.dir).sort()).toEqual(['artikel.out', 'filler']);
    }
  });

  // No block left: SQLite cannot even grow its shared-memory file ("disk I/O error"); 40 KiB left:
  // that succeeds and the database's writes find the disk full ("database or disk is full").
  it.each([
    ['no block left', 0],
    ['40 KiB left', 40 * 1024],
  ])('sync into a full file system (%s): exit 73 with one line, the database still sound', async (_, leave, ctx) => {
    const fs = smallFileSystem('512k');
    if ('reason' in fs) return ctx.skip(fs.reason);
    const db = join(fs.dir, 'copy.sqlite');
    const first = await runProcess(['sync', 'Kunden', '--db', db], { env: big.env });
    expect(first.code, first.stderr).toBe(0);
    fill(fs.dir, leave);
    const r = await runProcess(['sync', 'Artikel', '--db', db], { env: big.env });
    expectCleanFailure(r, 73, /sync database .*copy\.sqlite: no space left/);
    expect(r.stderr).not.toMatch(/this is a bug/);
    rmSync(join(fs.dir, 'filler'));
    const check = new Database(db, { readonly: true });
    try {
      expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
      expect((check.prepare('SELECT count(*) AS n FROM "Kunden"').get() as { n: number }).n).toBe(20);
    } finally {
      check.close();
    }
    expect(existsSync(db)).toBe(true);
  });
});
