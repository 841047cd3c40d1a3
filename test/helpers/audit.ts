/** push-field's audit log and NDJSON reports as tests read them. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The lines of a text that holds one JSON value per line (blank lines skipped). */
export function ndjson(text: string): Array<Record<string, any>> {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Every line of `<data dir>/audit.log` (none when there is no log yet). */
export function auditLines(dataDir: string): Array<Record<string, any>> {
  const path = join(dataDir, 'audit.log');
  return existsSync(path) ? ndjson(readFileSync(path, 'utf8')) : [];
}

/** The audit lines with an outcome (every write also has a `pending` line written before it). */
export function auditOutcomes(dataDir: string): Array<Record<string, any>> {
  return auditLines(dataDir).filter((a) => a.result !== 'pending');
}
