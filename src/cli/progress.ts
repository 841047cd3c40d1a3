/** A spinner on stderr with rows done / total, rate and ETA. Only ever started on a terminal. */
import type { Writable } from 'node:stream';

export interface Progress {
  update(p: { rows: number; total?: number; label?: string }): void;
  /** Free text instead of rows (a follower's state). */
  say(text: string): void;
  stop(): void;
}

const nf = new Intl.NumberFormat('en-US');

function eta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
}

/** What is shown instead when no progress can be drawn. */
const NO_PROGRESS: Progress = { update() {}, say() {}, stop() {} };

/**
 * A spinner, or nothing when the terminal's width is unknown or 0 (`script -qc`, some CI
 * terminals): a renderer that cannot tell how many lines its text takes would clear lines forever.
 */
export async function startProgress(stream: Writable, text: string): Promise<Progress> {
  const columns = (stream as Writable & { columns?: number }).columns;
  if (typeof columns !== 'number' || !Number.isFinite(columns) || columns < 1) return NO_PROGRESS;
  const { default: ora } = await import('ora');
  // discardStdin: false so a prompt or piped stdin keeps working; the spinner only hooks terminals.
  // isEnabled: the caller decided (CommandContext.interactive, the one home of that rule); ora would
  // otherwise decide again from process.env.CI and the real process's streams.
  const spinner = ora({ text, stream: stream as NodeJS.WritableStream, discardStdin: false, isEnabled: true }).start();
  const started = Date.now();
  let last = 0;
  return {
    update({ rows, total, label }) {
      const now = Date.now();
      if (now - last < 100 && !(total !== undefined && rows >= total)) return;
      last = now;
      const elapsed = (now - started) / 1000;
      const rate = elapsed > 0 ? rows / elapsed : 0;
      const parts = [`${label ?? ''}: ${nf.format(rows)}${total !== undefined ? ` / ${nf.format(total)}` : ''} rows`];
      if (rate > 0) parts.push(`${nf.format(Math.round(rate))} rows/s`);
      if (total !== undefined && rate > 0 && rows < total) parts.push(`ETA ${eta((total - rows) / rate)}`);
      spinner.text = parts.join(' · ');
    },
    say(text) {
      // Drawn now, not at the next frame: a short run may end before one.
      spinner.text = text;
      spinner.render();
    },
    stop() {
      spinner.stop();
    },
  };
}
