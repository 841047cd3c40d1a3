/** Yes/no confirmation on a terminal. Callers must not prompt when stdin is not a terminal. */
import { createInterface } from 'node:readline/promises';
import type { Io } from './io.js';

export async function confirm(io: Io, question: string, signal?: AbortSignal): Promise<boolean> {
  const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: io.stdin.isTTY === true });
  try {
    const answer = await rl.question(`${question} [y/N] `, { signal });
    return /^(y|yes|j|ja)$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
