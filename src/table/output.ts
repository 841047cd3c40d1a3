/**
 * `-o FILE`: data goes to a temporary file beside the target and is renamed over it only when the
 * export succeeded. An interrupted or failed run removes its temporary file; the final name never
 * holds a partial export.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CannotCreateError } from '../errors/index.js';

export { CannotCreateError };

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

export async function openAtomic(target: string, cwd: string): Promise<AtomicFile> {
  const finalPath = resolve(cwd, target);
  await removeStaleTemps(finalPath);
  const temp = join(dirname(finalPath), `.${basename(finalPath)}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`);
  const stream = createWriteStream(temp, { flags: 'wx', mode: 0o644 });
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
    throw new CannotCreateError(`cannot create output file ${finalPath}: ${code ?? String(streamError)}`, {
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
        throw new CannotCreateError(`cannot write output file ${finalPath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
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
