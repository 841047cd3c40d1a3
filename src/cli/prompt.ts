/**
 * The one rule for commands that change or remove something a person may not mean to (push-field's
 * writes, `session clear --all`): `--yes` goes ahead; on a terminal the person is asked, and a "no"
 * does nothing and exits 1; anywhere else (cron, a pipe, a redirected stderr) the command refuses
 * before doing anything, exit 64, with one line naming --yes. Never a silent yes off a terminal.
 */
import { UsageError } from '../errors/index.js';
import type { Io } from './io.js';

/** A person can be asked: the question goes to stderr and the answer comes from stdin, both terminals. */
export function canAsk(io: Io): boolean {
  return io.stdin.isTTY === true && io.stderr.isTTY === true;
}

/**
 * Before anything is read or changed: refuse (64) when confirmation is needed and nobody can give
 * it. `action` says what the command would do; `alternative` another way out (e.g. --dry-run).
 */
export function requireConfirmation(io: Io, yes: boolean | undefined, action: string, alternative?: string): void {
  if (yes || canAsk(io)) return;
  throw new UsageError(`${action}; add --yes to confirm when not on a terminal${alternative ? ` (${alternative})` : ''}`);
}

/** Yes/no on the terminal (callers check requireConfirmation first). */
export async function confirm(io: Io, question: string, signal?: AbortSignal): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises'); // loaded only when someone is asked
  const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: io.stdin.isTTY === true });
  try {
    const answer = await rl.question(`${question} [y/N] `, { signal });
    return /^(y|yes|j|ja)$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
