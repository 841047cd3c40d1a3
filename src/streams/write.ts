/**
 * Writing to Node streams with backpressure: the one helper every output path uses (exports,
 * reports, command output), so nothing buffers a whole table because a reader is slow.
 */
import type { Writable } from 'node:stream';

/** Write and wait for the stream to accept more (backpressure). */
export function write(stream: Writable, chunk: string | Uint8Array): Promise<void> | void {
  if (stream.write(chunk)) return;
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.off('error', onError);
      stream.off('close', onDrain);
      resolve();
    };
    const onError = (error: Error) => {
      stream.off('drain', onDrain);
      stream.off('close', onDrain);
      reject(error);
    };
    stream.once('drain', onDrain);
    stream.once('close', onDrain);
    stream.once('error', onError);
  });
}
