/**
 * The errno codes that mean "the output cannot be stored" are mapped in one place
 * (errors/), each to exit 73 with one line that names the path and says what to do. The codes a test
 * cannot provoke on a real file system here (a quota, a read-only or size-limited one) are checked
 * through that mapping.
 */
import { describe, expect, it } from 'vitest';
import { CannotCreateError, cannotWriteError, exitCodeFor, formatErrorLine, noSpaceReason } from '../../src/errors/index.js';

const errno = (code: string) => Object.assign(new Error(`${code}: some system text`), { code });

describe('full-disk errors are exit 73 with one line', () => {
  it.each([
    ['ENOSPC', /no space left on the device/],
    ['EDQUOT', /disk quota exceeded/],
    ['EROFS', /read-only file system/],
    ['EFBIG', /file too large/],
    ['SQLITE_FULL', /no space left on the device/],
  ])('%s', (code, reason) => {
    const error = cannotWriteError(errno(code), 'output file /srv/exports/artikel.csv');
    expect(error).toBeInstanceOf(CannotCreateError);
    expect(exitCodeFor(error)).toBe(73);
    const line = formatErrorLine(error);
    expect(line).toMatch(/^cannot write output file \/srv\/exports\/artikel\.csv: /);
    expect(line).toMatch(reason);
    expect(line).toMatch(/free some space .* or write somewhere else/);
    expect(line).not.toMatch(/\n|this is a bug/);
  });

  it('other failures keep their code, still exit 73; non-space failures are not taken for a full disk', () => {
    expect(formatErrorLine(cannotWriteError(errno('EACCES'), 'output file /x'))).toBe('cannot write output file /x: EACCES');
    for (const code of ['EACCES', 'EPIPE', 'ECONNRESET', 'SQLITE_BUSY', undefined]) expect(noSpaceReason({ code })).toBeUndefined();
    expect(noSpaceReason(null)).toBeUndefined();
  });
});
