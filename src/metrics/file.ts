/**
 * The metrics file: read what is there, merge this run's samples, write it back atomically
 * (temporary file + rename, so the textfile collector never reads half a file), all under a
 * cross-process lock so that cron jobs ending at the same time never lose each other's series.
 *
 * Mode 0644, unlike every other file legacy writes: node_exporter runs as another user and must
 * read it, and it holds no secret (no cookie, URL or password; only names, counts and times).
 */
import { readFile } from 'node:fs/promises';
import { withLock, writeFileAtomic } from '../fs/index.js';
import { merge, parse, render, type Sample } from './exposition.js';

export const METRICS_FILE_MODE = 0o644;

export interface WriteResult {
  /** Lines of the old file that were not ours or were damaged, and were dropped. */
  dropped: number;
  series: number;
}

export async function writeMetricsFile(path: string, samples: Sample[], options: { lockTimeoutMs?: number } = {}): Promise<WriteResult> {
  return withLock(
    path,
    async () => {
      let old = '';
      try {
        old = await readFile(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      const stored = parse(old);
      const merged = merge(stored.samples, samples);
      await writeFileAtomic(path, render(merged), 'metrics file', { mode: METRICS_FILE_MODE });
      return { dropped: stored.dropped, series: merged.length };
    },
    { what: `metrics file ${path}`, timeoutMs: options.lockTimeoutMs ?? 10_000, privateDir: false },
  );
}
