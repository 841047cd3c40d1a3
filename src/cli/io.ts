/** The streams and environment a command runs with. Injected, so tests can run commands in-process. */
import type { Readable, Writable } from 'node:stream';

export type OutStream = Writable & { isTTY?: boolean; columns?: number };
export type InStream = Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };

export interface Io {
  stdout: OutStream;
  stderr: OutStream;
  stdin: InStream;
  env: Record<string, string | undefined>;
  cwd: string;
}

export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
  };
}

/**
 * Should we colour this stream? --no-color and a non-empty NO_COLOR always win (chalk alone
 * ignores NO_COLOR); FORCE_COLOR forces; TERM=dumb and non-terminals get none.
 */
export function colorEnabled(stream: OutStream, flag: boolean | undefined, env: Io['env']): boolean {
  if (flag === false) return false;
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  if (env.TERM === 'dumb') return false;
  return stream.isTTY === true;
}

import { write } from '../streams/write.js';

export { write };

/**
 * The one `--json` output: indented JSON and a newline on stdout; 64-bit integers (bigint) as exact
 * text, never rounded or a crash.
 */
export async function writeJson(io: Pick<Io, 'stdout'>, value: unknown): Promise<void> {
  await write(
    io.stdout,
    `${JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v), 2)}\n`,
  );
}
