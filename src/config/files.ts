/**
 * File primitives shared by every store (config, sessions, sync state, audit log) and output file
 * (exports, HAR files): private directories, atomic writes, atomic streamed files and a
 * cross-process lock.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, createWriteStream, mkdirSync, statSync, type WriteStream } from 'node:fs';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { CannotCreateError, ConfigError, LockBusyError } from '../errors/index.js';

const require = createRequire(import.meta.url);

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Create `dir` (and parents) 0700; tighten an existing directory we own. Unwritable → ConfigError (78). */
export function ensurePrivateDir(dir: string, what = 'directory'): void {
  try {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const st = statSync(dir);
    if (!st.isDirectory()) throw new ConfigError(`${what} ${dir} is not a directory`);
    if ((st.mode & 0o077) !== 0 && typeof process.getuid === 'function' && st.uid === process.getuid()) {
      chmodSync(dir, PRIVATE_DIR_MODE);
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`cannot create ${what} ${dir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'choose a writable location with --config-dir / --data-dir or fix its permissions',
      cause: error,
    });
  }
}

/**
 * Write a file atomically (temp file + fsync + rename, mode 0600 unless said otherwise) with npm's write-file-atomic.
 * A reader never sees a half-written file; a crash leaves the old content.
 */
export async function writeFileAtomic(path: string, content: string, what = 'file', mode = PRIVATE_FILE_MODE): Promise<void> {
  const writeAtomic = require('write-file-atomic') as typeof import('write-file-atomic');
  try {
    await writeAtomic(path, content, { mode, fsync: true, encoding: 'utf8' });
  } catch (error) {
    throw new ConfigError(`cannot write ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'check the permissions of the directory, or choose another one with --config-dir',
      cause: error,
    });
  }
}

/** Move a damaged file aside as `<path>.corrupt-<time>`; returns the new name. */
export async function quarantine(path: string): Promise<string> {
  const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  await rename(path, aside);
  return aside;
}

export interface LockOptions {
  /** How long to wait for another process to release the lock, in ms. */
  timeoutMs?: number;
  /** A lock whose holder stopped refreshing it for this long is reclaimed (killed process). */
  staleMs?: number;
  /** What the lock protects, for the error message. */
  what?: string;
  /**
   * Create the directory 0700 (and tighten one we own) first: the default. False for a directory
   * another program must read (the metrics file's): it must exist and is left as it is.
   */
  privateDir?: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run `fn` while holding the cross-process lock `<target>.lock` (proper-lockfile: an atomic mkdir,
 * refreshed while held, reclaimed when stale). Waits with jittered backoff up to `timeoutMs`, then
 * throws LockBusyError (exit 75).
 */
export async function withLock<T>(target: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const lockfile = require('proper-lockfile') as typeof import('proper-lockfile');
  const timeoutMs = options.timeoutMs ?? 30_000;
  const staleMs = Math.max(options.staleMs ?? 6_000, 5_000);
  const deadline = Date.now() + timeoutMs;
  let compromised: Error | undefined;
  let delay = 20;
  let release: (() => Promise<void>) | undefined;
  if (options.privateDir !== false) ensurePrivateDir(dirname(target));
  for (;;) {
    try {
      release = await lockfile.lock(target, {
        realpath: false,
        lockfilePath: `${target}.lock`,
        stale: staleMs,
        retries: 0,
        // The default handler throws inside a timer and kills the process; note it and let the
        // critical section finish (its writes are atomic anyway).
        onCompromised: (error) => {
          compromised = error;
        },
      });
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ELOCKED') {
        throw new ConfigError(`cannot lock ${options.what ?? target}: ${code ?? String(error)}`, { cause: error });
      }
      if (Date.now() + delay > deadline) {
        throw new LockBusyError(`${options.what ?? target} is locked by another legacy process`, {
          hint: `waited ${Math.round(timeoutMs / 1000)} s; try again later, or remove ${target}.lock if no legacy process is running`,
        });
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 500);
    }
  }
  try {
    return await fn();
  } finally {
    if (!compromised) {
      await release().catch(() => undefined);
    }
  }
}

export interface AtomicFile {
  stream: WriteStream;
  /** fsync, close and rename into place. */
  commit(): Promise<void>;
  /** Close and remove the temporary file. */
  abort(): Promise<void>;
}

/** End (or destroy) the stream and wait until its file descriptor is closed. */
function closeStream(stream: WriteStream, destroy: boolean): Promise<void> {
  return new Promise((resolvePromise) => {
    if (stream.closed) return resolvePromise();
    stream.once('close', () => resolvePromise());
    if (destroy) stream.destroy();
    else stream.end();
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove temporary files of earlier exports to the same name whose process has died (SIGKILL). */
async function removeStaleTemps(finalPath: string): Promise<void> {
  const prefix = `.${basename(finalPath)}.`;
  const names = await readdir(dirname(finalPath)).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const m = /^(\d+)\.[0-9a-f]{6}\.tmp$/.exec(name.slice(prefix.length));
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) await unlink(join(dirname(finalPath), name)).catch(() => undefined);
  }
}

export interface OpenAtomicOptions {
  /** File mode of the result (default 0644: an export is the user's data file; 0600 for files that may hold server details). */
  mode?: number;
  /** What the file is, for messages (default "output file"). */
  what?: string;
}

/**
 * `-o FILE`, `--har FILE`: data goes to a temporary file beside the target and is renamed over it
 * only when the run succeeded. An interrupted or failed run removes its temporary file (a killed
 * one's is removed by the next run to the same name); the final name never holds a partial file.
 */
export async function openAtomic(target: string, cwd: string, options: OpenAtomicOptions = {}): Promise<AtomicFile> {
  const what = options.what ?? 'output file';
  const finalPath = resolve(cwd, target);
  await removeStaleTemps(finalPath);
  const temp = join(dirname(finalPath), `.${basename(finalPath)}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`);
  const stream = createWriteStream(temp, { flags: 'wx', mode: options.mode ?? 0o644 });
  let streamError: Error | undefined;
  stream.on('error', (error) => {
    streamError ??= error;
  });
  // Creation errors (directory missing or not writable) surface before any data is fetched.
  await new Promise<void>((resolvePromise) => {
    stream.once('open', () => resolvePromise());
    stream.once('error', () => resolvePromise());
  });
  if (streamError) {
    const code = (streamError as NodeJS.ErrnoException).code;
    throw new CannotCreateError(`cannot create ${what} ${finalPath}: ${code ?? String(streamError)}`, {
      hint: code === 'ENOENT' ? 'the directory does not exist' : 'check the directory permissions, or write to stdout',
    });
  }
  let settled = false;
  return {
    stream,
    async commit() {
      if (settled) return;
      settled = true;
      try {
        await closeStream(stream, false);
        if (streamError) throw streamError;
        // fsync through a fresh descriptor, then rename: the final name only ever holds a whole file.
        const handle = await open(temp, 'r+');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temp, finalPath);
      } catch (error) {
        await unlink(temp).catch(() => undefined);
        throw new CannotCreateError(`cannot write ${what} ${finalPath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      }
    },
    async abort() {
      if (settled) return;
      settled = true;
      await closeStream(stream, true);
      await unlink(temp).catch(() => undefined);
    },
  };
}
