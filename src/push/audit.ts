/**
 * The audit log: `<data dir>/audit.log`, one JSON line per attempted write (successful or not),
 * appended (O_APPEND, one write per batch, so concurrent writers never interleave lines), 0600.
 * Never holds a cookie or a password.
 */
import { appendFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir } from '../fs/index.js';
import { ConfigError } from '../errors/index.js';

export interface AuditRecord {
  time: string;
  env: string;
  baseUrl: string;
  table: string;
  key: string;
  field: string;
  old: unknown;
  new: unknown;
  stampBefore?: number;
  stampAfter?: number;
  /** The `__STAMP` of the exported file the value came from (push-field --from a --meta export). */
  stampExported?: number;
  /** Written with --force: someone's change since the export or the read may have been overwritten. */
  forced?: boolean;
  result: string;
  message?: string;
  requestId?: string;
}

export class AuditLog {
  readonly path: string;
  constructor(private readonly dataDir: string) {
    this.path = join(dataDir, 'audit.log');
  }

  async append(records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    ensurePrivateDir(this.dataDir, 'data directory');
    const text = records.map((r) => `${JSON.stringify(r)}\n`).join('');
    try {
      await appendFile(this.path, text, { mode: 0o600, flag: 'a' });
      await chmod(this.path, 0o600);
    } catch (error) {
      throw new ConfigError(`cannot append to the audit log ${this.path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
        hint: 'check the data directory (--data-dir) is writable',
      });
    }
  }
}
