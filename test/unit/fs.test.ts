/** The base file module: the caller chooses what a failure becomes (issue 24). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFileError } from '../../src/config/store.js';
import { CannotCreateError, ConfigError } from '../../src/errors/index.js';
import { ensurePrivateDir, withLock, writeFileAtomic } from '../../src/fs/index.js';
import { tempDir } from '../helpers/cli.js';

describe('fs: the caller chooses the error', () => {
  // A plain file where a directory should be: every operation below fails, whoever runs the tests.
  const blocked = () => {
    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, 'x');
    return file;
  };

  it('by default a file that cannot be written is output that cannot be created (73), never a config error', async () => {
    const where = blocked();
    const write = writeFileAtomic(join(where, 'legacy.prom'), 'x', 'metrics file');
    await expect(write).rejects.toBeInstanceOf(CannotCreateError);
    await expect(write).rejects.toThrow(/cannot write metrics file .*legacy\.prom/);
    expect(() => ensurePrivateDir(join(where, 'data'), 'data directory')).toThrow(CannotCreateError);
    await expect(withLock(join(where, 'x'), async () => 1, { what: 'the audit log' })).rejects.toBeInstanceOf(CannotCreateError);
  });

  it('the config directory’s files say so: configuration error (78) with the --config-dir hint', async () => {
    const where = blocked();
    const write = writeFileAtomic(join(where, 'config.json'), 'x', 'config file', { error: configFileError });
    await expect(write).rejects.toBeInstanceOf(ConfigError);
    await expect(write).rejects.toMatchObject({ hint: expect.stringMatching(/--config-dir/) });
    expect(() => ensurePrivateDir(join(where, 'cfg'), 'config directory', configFileError)).toThrow(ConfigError);
  });
});
