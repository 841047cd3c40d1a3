/**
 * `-o FILE`: data goes to a temporary file beside the target and is renamed over it only when the
 * export succeeded. An interrupted or failed run removes its temporary file; the final name never
 * holds a partial export.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { LegacyError } from '../errors/index.js';

/** The output file cannot be created (EX_CANTCREAT). */
export class CannotCreateError extends LegacyError {
  override readonly exitCode = 73;
  override readonly code = 'E_CANT_CREATE';
}

export interface AtomicFile {
  stream: WriteStream;
  /** fsync, close and rename into place. */
  commit(): Promise<void>;
  /** Close and remove the temporary file. */
  abort(): Promise<void>;
}

function endStream(stream: WriteStream): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    if (stream.closed || stream.destroyed) return resolvePromise();
    stream.once('error', reject);
    stream.end(() => resolvePromise());
  });
}

export async function openAtomic(target: string, cwd: string): Promise<AtomicFile> {
  const finalPath = resolve(cwd, target);
  const temp = join(dirname(finalPath), `.${basename(finalPath)}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`);
  let handle;
  try {
    handle = await open(temp, 'wx', 0o644);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CannotCreateError(`cannot create output file ${finalPath}: ${code ?? String(error)}`, {
      hint: code === 'ENOENT' ? 'the directory does not exist' : 'check the directory permissions, or write to stdout',
    });
  }
  const stream = createWriteStream(temp, { fd: handle.fd, autoClose: false });
  let settled = false;
  return {
    stream,
    async commit() {
      if (settled) return;
      settled = true;
      try {
        await endStream(stream);
        await handle.sync();
        await handle.close();
        await rename(temp, finalPath);
      } catch (error) {
        await handle.close().catch(() => undefined);
        await unlink(temp).catch(() => undefined);
        throw new CannotCreateError(`cannot write output file ${finalPath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      }
    },
    async abort() {
      if (settled) return;
      settled = true;
      stream.destroy();
      await handle.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
    },
  };
}
