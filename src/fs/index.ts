/**
 * File primitives shared by every store (config, sessions, the server dialect cache, metrics, the
 * audit log): private directories, atomic writes and a cross-process lock. User-named output files
 * (`-o`, `--har`) are streams/output-file.ts.
 *
 * The caller chooses the error a failure becomes (`error`): the config and session files are a
 * configuration matter (ConfigError, 78, with the --config-dir hint: config/store.ts `configFileError`);
 * anything else defaults to output that cannot be created (73; a full disk says so).
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { LockBusyError, cannotWriteError } from '../errors/index.js';

const require = createRequire(import.meta.url);

/** Turns a failed file operation into the error the caller wants: `what` names the file, `verb` the operation. */
export type FileErrorFactory = (what: string, cause: unknown, verb: string) => Error;

/** The default: output that cannot be created (73), a full disk or quota named as such. */
export const cannotCreate: FileErrorFactory = (what, cause, verb) => cannotWriteError(cause, what, verb);

/** A problem found by us (not an errno), for the factory's `cause`. */
class FileProblem extends Error {
  override name = 'FileProblem';
}

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Create `dir` (and parents) 0700; tighten an existing directory we own. Unwritable → `error` (default 73). */
export function ensurePrivateDir(dir: string, what = 'directory', error: FileErrorFactory = cannotCreate): void {
  try {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const st = statSync(dir);
    if (!st.isDirectory()) throw new FileProblem('not a directory');
    if ((st.mode & 0o077) !== 0 && typeof process.getuid === 'function' && st.uid === process.getuid()) {
      chmodSync(dir, PRIVATE_DIR_MODE);
    }
  } catch (cause) {
    throw error(`${what} ${dir}`, cause, 'create');
  }
}

/**
 * Write a file atomically (temp file + fsync + rename, mode 0600 unless said otherwise) with npm's write-file-atomic.
 * A reader never sees a half-written file; a crash leaves the old content.
 */
export async function writeFileAtomic(path: string, content: string, what = 'file', options: { mode?: number; error?: FileErrorFactory } = {}): Promise<void> {
  const writeAtomic = require('write-file-atomic') as typeof import('write-file-atomic');
  try {
    await writeAtomic(path, content, { mode: options.mode ?? PRIVATE_FILE_MODE, fsync: true, encoding: 'utf8' });
  } catch (cause) {
    throw (options.error ?? cannotCreate)(`${what} ${path}`, cause, 'write');
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
  /** What a lock that cannot be taken (not: is busy) becomes; default 73. */
  error?: FileErrorFactory;
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
  if (options.privateDir !== false) ensurePrivateDir(dirname(target), 'directory', options.error);
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
      if (code !== 'ELOCKED') throw (options.error ?? cannotCreate)(options.what ?? target, error, 'lock');
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
