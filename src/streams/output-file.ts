/**
 * The one way a user-named output file is written (`get-table -o` in every format, `--har`):
 *
 * - a regular file, or a name that does not exist yet: the data goes to a temporary file beside
 *   the file and is renamed over it only when the run succeeded, so the final name never holds a
 *   partial file (a failed or interrupted run removes its temporary file; a killed run's is removed
 *   by the next run to the same name);
 * - a symbolic link is followed (to the end of its chain, dangling or not) and its target is
 *   written that way: the link stays a link;
 * - an existing file keeps its mode (and, best effort, its owner and group): overwriting never
 *   widens permissions; a new file gets the caller's mode under the umask;
 * - a character device, a FIFO or a socket is written directly (no temporary file, no rename), and
 *   so are `/dev/stdout`, `/dev/stderr` and `/dev/fd/N`: they are the process's own descriptors.
 *
 * Every failure is a CannotCreateError (exit 73) naming the path; a full disk says so (errors/).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, fdatasync, type Stats } from 'node:fs';
import { chmod, chown, lstat, open, readdir, readlink, realpath, rename, stat, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { CannotCreateError, cannotWriteError } from '../errors/index.js';

export interface OutputFile {
  /** Where the data goes. */
  stream: Writable;
  /** The path the data ends up in (a link's target), for messages. */
  path: string;
  /** Written in place (device, FIFO, socket, standard stream): nothing is renamed. */
  direct: boolean;
  /** Finish the data and put it in place (fsync and rename for a file). */
  commit(): Promise<void>;
  /** Stop writing; a file's temporary file is removed, the final name is left as it was. */
  abort(): Promise<void>;
  /** An error met while writing, as the exit 73 it is when it came from this file; others unchanged. */
  explain(error: unknown): unknown;
}

export interface OutputFileOptions {
  /** Mode of a new file, before the umask (default 0666: an export is the user's data file; 0600 for files that may hold server details). */
  mode?: number;
  /** What the file is, for messages (default "output file"). */
  what?: string;
  /** Never wider than `mode`, even when the file exists with a wider one (files that may hold server details: 0600). */
  private?: boolean;
  /** The run's own standard streams, used for `/dev/stdout` and `/dev/stderr` (default: descriptors 1 and 2). */
  stdio?: { stdout?: Writable; stderr?: Writable };
}

/** `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N` → the descriptor, else undefined. */
function standardDescriptor(path: string): number | undefined {
  if (path === '/dev/stdout') return 1;
  if (path === '/dev/stderr') return 2;
  const m = /^\/(?:dev|proc\/self)\/fd\/(\d+)$/.exec(path);
  return m ? Number(m[1]) : undefined;
}

/**
 * Follow symbolic links to the end of the chain; the last name may not exist yet (a dangling link's
 * target). A chain that reaches a standard stream (`out.csv -> /dev/stdout`) ends there.
 */
async function followLinks(path: string): Promise<{ path: string; stats?: Stats; fd?: number }> {
  let current = path;
  for (let hops = 0; hops < 40; hops++) {
    const fd = standardDescriptor(current);
    if (fd !== undefined) return { path: current, fd };
    let stats: Stats;
    try {
      stats = await lstat(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { path: current };
      throw error;
    }
    if (!stats.isSymbolicLink()) return { path: current, stats };
    // Relative to the directory the link really is in (`..` after a linked directory is physical).
    current = resolve(await realpath(dirname(current)), await readlink(current));
  }
  throw Object.assign(new Error('too many levels of symbolic links'), { code: 'ELOOP' });
}

/**
 * Before renaming `from` over `finalPath`: its bytes on disk (fsync through a fresh descriptor), and
 * the target still a regular file or absent (one replaced meanwhile by something else is not renamed
 * over). Returns the target's stat, if it exists.
 */
async function syncForRename(from: string, finalPath: string): Promise<Stats | undefined> {
  const handle = await open(from, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  const now = await stat(finalPath).catch(() => undefined);
  if (now && !now.isFile()) throw Object.assign(new Error(`${finalPath} is no longer a regular file`), { code: 'EEXIST' });
  return now;
}

/** Is a process with this id alive (ours to signal or not)? For the pid in a lock or temporary file's name. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove temporary files of earlier runs to the same name whose process has died (SIGKILL). */
async function removeStaleTemps(finalPath: string): Promise<void> {
  const prefix = `.${basename(finalPath)}.`;
  const names = await readdir(dirname(finalPath)).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const m = /^(\d+)\.[0-9a-f]{6}\.tmp$/.exec(name.slice(prefix.length));
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) await unlink(join(dirname(finalPath), name)).catch(() => undefined);
  }
}

/** End (or destroy) a stream and wait until it is finished and closed. */
function closeStream(stream: Writable, destroy: boolean): Promise<void> {
  return new Promise((resolvePromise) => {
    if (stream.closed || stream.destroyed) return resolvePromise();
    stream.once('close', () => resolvePromise());
    if (destroy) stream.destroy();
    else stream.end();
  });
}

/** End a stream written in place and wait until its data is handed over (an fd stream we do not close emits no 'close'). */
function finishStream(stream: Writable): Promise<void> {
  return new Promise((resolvePromise) => {
    if (stream.writableFinished || stream.destroyed) return resolvePromise();
    const done = () => {
      stream.off('finish', done);
      stream.off('close', done);
      stream.off('error', done);
      resolvePromise();
    };
    stream.once('finish', done);
    stream.once('close', done);
    stream.once('error', done);
    stream.end();
  });
}

/** Wait until a freshly created stream is open (or failed to open): creation errors surface before any data is fetched. */
function opened(stream: Writable, event: string): Promise<Error | undefined> {
  return new Promise((resolvePromise) => {
    const onOpen = () => {
      stream.off('error', onError);
      resolvePromise(undefined);
    };
    const onError = (error: Error) => {
      stream.off(event, onOpen);
      resolvePromise(error);
    };
    stream.once(event, onOpen);
    stream.once('error', onError);
  });
}

/** A file that cannot be created, as the one-line exit 73 that says what to do. */
function creationError(error: unknown, what: string, path: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new CannotCreateError(`cannot create ${what} ${path}: ${code}`, { hint: 'the directory does not exist' });
  if (code === 'EACCES' || code === 'EPERM') {
    return new CannotCreateError(`cannot create ${what} ${path}: ${code}`, { hint: 'check the directory permissions, or write to stdout' });
  }
  return cannotWriteError(error, `${what} ${path}`, 'create');
}

/** Open `target` (relative to `cwd`) for writing; see the module comment for what each kind of path gets. */
export async function openOutputFile(target: string, cwd: string, options: OutputFileOptions = {}): Promise<OutputFile> {
  const what = options.what ?? 'output file';
  const named = resolve(cwd, target);
  const createFailure = (error: unknown, path: string) => creationError(error, what, path);

  let resolved: Awaited<ReturnType<typeof followLinks>>;
  try {
    resolved = await followLinks(named);
  } catch (error) {
    throw createFailure(error, named);
  }
  const { path, stats, fd } = resolved;
  if (fd !== undefined) {
    const own = fd === 1 ? options.stdio?.stdout : fd === 2 ? options.stdio?.stderr : undefined;
    return direct(own ?? createWriteStream(null as unknown as string, { fd, autoClose: false }), path, what, own !== undefined);
  }
  if (stats?.isDirectory()) throw new CannotCreateError(`cannot create ${what} ${path}: EISDIR`, { hint: 'it is a directory; give a file name' });
  if (stats?.isSocket()) {
    const socket = createConnection(path);
    const failed = await opened(socket, 'connect');
    if (failed) throw createFailure(failed, path);
    return direct(socket, path, what, false);
  }
  if (stats && !stats.isFile()) {
    // A character device or a FIFO (whose open waits for a reader): written in place, never replaced.
    const stream = createWriteStream(path, { flags: 'w' });
    const failed = await opened(stream, 'open');
    if (failed) throw createFailure(failed, path);
    return direct(stream, path, what, false);
  }
  return atomic(path, stats, what, options.mode ?? 0o666, createFailure, options.private === true);
}

/** Written in place: commit ends the stream (not the run's own stdout/stderr, which stay open). */
function direct(stream: Writable, path: string, what: string, shared: boolean): OutputFile {
  let streamError: Error | undefined;
  const onError = (error: Error) => {
    streamError ??= error;
  };
  stream.on('error', onError);
  const explain = (error: unknown) => (error !== undefined && error === streamError ? cannotWriteError(error, `${what} ${path}`) : error);
  let settled = false;
  return {
    stream,
    path,
    direct: true,
    explain,
    async commit() {
      if (settled) return;
      settled = true;
      if (!shared) await finishStream(stream);
      stream.off('error', onError);
      if (streamError) throw cannotWriteError(streamError, `${what} ${path}`);
    },
    async abort() {
      if (settled) return;
      settled = true;
      if (!shared) await finishStream(stream);
      stream.off('error', onError);
    },
  };
}

/** A regular file (or a new one): temporary file beside it, renamed over it on commit. */
async function atomic(
  finalPath: string,
  existing: Stats | undefined,
  what: string,
  newMode: number,
  createFailure: (error: unknown, path: string) => Error,
  privateFile = false,
): Promise<OutputFile> {
  await removeStaleTemps(finalPath);
  const temp = join(dirname(finalPath), `.${basename(finalPath)}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`);
  const stream = createWriteStream(temp, { flags: 'wx', mode: existing ? 0o600 : newMode });
  let streamError: Error | undefined;
  stream.on('error', (error) => {
    streamError ??= error;
  });
  const failed = await opened(stream, 'open');
  if (failed) throw createFailure(failed, finalPath);
  if (existing) {
    // The replacement is the same file to its readers: same mode (set exactly, the umask does not
    // apply), and the same owner and group where we may give them (root; a group we are in).
    try {
      // Owner first: a chown clears the set-id bits the chmod then restores.
      if (existing.uid !== process.getuid?.() || existing.gid !== process.getgid?.()) await chown(temp, existing.uid, existing.gid).catch(() => undefined);
      await chmod(temp, existing.mode & (privateFile ? newMode : 0o7777));
    } catch (error) {
      await closeStream(stream, true);
      await unlink(temp).catch(() => undefined);
      throw createFailure(error, finalPath);
    }
  }
  const explain = (error: unknown) => (error !== undefined && error === streamError ? cannotWriteError(error, `${what} ${finalPath}`) : error);
  let settled = false;
  return {
    stream,
    path: finalPath,
    direct: false,
    explain,
    async commit() {
      if (settled) return;
      settled = true;
      try {
        await closeStream(stream, false);
        if (streamError) throw streamError;
        // fsync through a fresh descriptor, then rename: the final name only ever holds a whole file.
        await syncForRename(temp, finalPath);
        await rename(temp, finalPath);
      } catch (error) {
        await unlink(temp).catch(() => undefined);
        throw cannotWriteError(error, `${what} ${finalPath}`);
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

/**
 * Where `target` (relative to `cwd`) is written by rename: the regular file (or new name) at the
 * end of its links, with its stats when it exists. Undefined for what is written in place
 * (devices, FIFOs, sockets, standard streams) and for names that cannot be resolved (openOutputFile
 * then says why).
 */
export async function renamedTarget(target: string, cwd: string): Promise<{ path: string; stats?: Stats } | undefined> {
  try {
    const { path, stats, fd } = await followLinks(resolve(cwd, target));
    if (fd !== undefined || (stats && !stats.isFile())) return undefined;
    return { path, stats };
  } catch {
    return undefined;
  }
}

/** An output file written under a fixed partial name beside it, which an interrupted run may keep (table/output/resume.ts). */
export interface PartialFile extends OutputFile {
  /** The partial file's path. */
  partialPath: string;
  /**
   * Everything written so far handed to the kernel and synced to the disk (fdatasync): its length
   * in bytes, which a resume may truncate the partial file back to.
   */
  checkpoint(): Promise<number>;
  /** The partial file's length once everything handed to the stream so far is written (queued bytes included). */
  offset(): number;
  /** Stop writing and leave the partial file for a later run (abort removes it). */
  keep(): Promise<void>;
}

export interface PartialFileOptions {
  /** Carry on the partial file from this byte length (what is beyond it is cut off first); absent: a new partial file. */
  append?: number;
  /** Mode of a new file, before the umask (default 0666). */
  mode?: number;
  what?: string;
}

/**
 * Write `finalPath` through `partialPath` (a regular file beside it). A new partial file gets the
 * mode a new file would get (0600 while the target exists: its own mode is set on commit, as for
 * the temporary file of atomic()); commit syncs it, gives it the target's mode, owner and group,
 * and renames it over the final name, which never holds a partial file.
 */
export async function openPartialFile(finalPath: string, partialPath: string, options: PartialFileOptions = {}): Promise<PartialFile> {
  const what = options.what ?? 'output file';
  const failure = (error: unknown) => creationError(error, what, finalPath);
  let start = 0;
  let stream: ReturnType<typeof createWriteStream>;
  try {
    if (options.append !== undefined) {
      // Only a regular file of ours is carried on, cut back to the last complete page.
      const stats = await lstat(partialPath);
      if (!stats.isFile()) throw Object.assign(new Error(`${partialPath} is not a regular file`), { code: 'EEXIST' });
      const handle = await open(partialPath, 'r+');
      try {
        await handle.truncate(options.append);
        await handle.sync();
      } finally {
        await handle.close();
      }
      start = options.append;
      stream = createWriteStream(partialPath, { flags: 'a' });
    } else {
      await unlink(partialPath).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
      const existing = await stat(finalPath).catch(() => undefined);
      stream = createWriteStream(partialPath, { flags: 'wx', mode: existing ? 0o600 : (options.mode ?? 0o666) });
    }
  } catch (error) {
    throw failure(error);
  }
  let streamError: Error | undefined;
  stream.on('error', (error) => {
    streamError ??= error;
  });
  const failed = await opened(stream, 'open');
  if (failed) throw failure(failed);
  const explain = (error: unknown) => (error !== undefined && error === streamError ? cannotWriteError(error, `${what} ${finalPath}`) : error);
  let settled = false;
  return {
    stream,
    path: finalPath,
    partialPath,
    direct: false,
    explain,
    offset() {
      return start + stream.bytesWritten + stream.writableLength;
    },
    checkpoint() {
      return new Promise((resolvePromise, reject) => {
        if (streamError) return reject(streamError);
        // An empty write's callback runs once every earlier chunk is written to the descriptor.
        stream.write(Buffer.alloc(0), (error) => {
          if (error) return reject(error);
          fdatasync((stream as unknown as { fd: number }).fd, (syncError) => (syncError ? reject(syncError) : resolvePromise(start + stream.bytesWritten)));
        });
      });
    },
    async commit() {
      if (settled) return;
      settled = true;
      try {
        await closeStream(stream, false);
        if (streamError) throw streamError;
        const now = await syncForRename(partialPath, finalPath);
        if (now) {
          if (now.uid !== process.getuid?.() || now.gid !== process.getgid?.()) await chown(partialPath, now.uid, now.gid).catch(() => undefined);
          await chmod(partialPath, now.mode & 0o7777);
        }
        await rename(partialPath, finalPath);
      } catch (error) {
        throw cannotWriteError(error, `${what} ${finalPath}`);
      }
    },
    async abort() {
      if (settled) return;
      settled = true;
      await closeStream(stream, true);
      await unlink(partialPath).catch(() => undefined);
    },
    async keep() {
      if (settled) return;
      settled = true;
      await closeStream(stream, streamError !== undefined);
    },
  };
}
