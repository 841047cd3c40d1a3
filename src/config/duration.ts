/** Durations as users write them (`--lookback 2d`, `--older-than 12h`). */
import { UsageError } from '../errors/index.js';

/** `7d`, `12h`, `30m`, `45s`, `500ms`, `2w` → ms; anything else is a usage error (64). */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!m) throw new UsageError(`'${text}' is not a duration like 7d, 12h or 30m`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 'ms'];
  return Number(m[1]) * unit;
}
