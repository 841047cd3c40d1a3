/**
 * The docs follow the command specs: every command and every option of every command (and every
 * global option) is in `man/legacy.1` and in that command's `--help`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, GLOBAL_OPTIONS } from '../../src/app/program.js';
import { SETTINGS, type SettingDefinition } from '../../src/config/definitions.js';
import type { CommandSpec } from '../../src/cli/spec.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { ROOT } from '../helpers/paths.js';

/** A section of a text: from its heading to the next heading of the same kind. */
function section(text: string, heading: RegExp, next: RegExp): string {
  const start = text.search(heading);
  expect(start, String(heading)).toBeGreaterThanOrEqual(0);
  const rest = text.slice(start + 1);
  const end = rest.search(next);
  return end < 0 ? rest : rest.slice(0, end);
}

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The man page as text with roff's escapes for '-' undone. */
const man = readFileSync(join(ROOT, 'man', 'legacy.1'), 'utf8')
  .replace(/\\-/g, '-')
  .replace(/\\f[BIRP]/g, '');

function walk(specs: ReadonlyArray<CommandSpec<never>>, path: string[] = []): Array<{ path: string[]; spec: CommandSpec<never> }> {
  return specs.flatMap((spec) => {
    const here = [...path, spec.name.split(/\s+/)[0]!];
    return [{ path: here, spec }, ...walk(spec.subcommands ?? [], here)];
  });
}

const longFlag = (flags: string) => /--[\w-]+/.exec(flags)?.[0];

describe('the docs follow the command specs', () => {
  const commands = walk(COMMANDS);

  it('every command and every option is in man/legacy.1', () => {
    const missing: string[] = [];
    for (const { path, spec } of commands) {
      if (!man.includes(path[path.length - 1]!)) missing.push(path.join(' '));
      for (const o of spec.options ?? []) {
        const flag = longFlag(o.flags);
        if (flag && !man.includes(flag)) missing.push(`${path.join(' ')} ${flag}`);
      }
    }
    for (const o of GLOBAL_OPTIONS) {
      const flag = longFlag(o.flags);
      if (flag && !man.includes(flag)) missing.push(`(global) ${flag}`);
    }
    expect(missing).toEqual([]);
  });

  it("every option is in its command's --help", async () => {
    const missing: string[] = [];
    for (const { path, spec } of commands) {
      if (!spec.options?.length) continue;
      const r = await runCli([...path, '--help'], { env: { LEGACY_CONFIG_DIR: tempDir() } });
      expect(r.code).toBe(0);
      for (const o of spec.options) {
        const flag = longFlag(o.flags);
        if (flag && !r.stdout.includes(flag)) missing.push(`${path.join(' ')} ${flag}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('every LEGACY_* environment variable the code reads is in man/legacy.1', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : f.endsWith('.ts') ? [join(dir, f)] : []));
    const vars = new Set(files(join(ROOT, 'src')).flatMap((f) => readFileSync(f, 'utf8').match(/LEGACY_[A-Z0-9_]+[A-Z0-9]/g) ?? []));
    expect(vars.size).toBeGreaterThan(10);
    expect([...vars].filter((v) => !man.includes(v)).sort()).toEqual([]);
  });

  it('every setting of the table is documented: its variable in ENVIRONMENT, its config key in CONFIGURATION and the README', () => {
    const environment = section(man, /^\.SH ENVIRONMENT/m, /^\.SH /m);
    const configuration = section(man, /^\.SH CONFIGURATION/m, /^\.SH /m);
    const readmeConfig = section(readme, /^## Configuration/m, /^## /m);
    const missing: string[] = [];
    for (const [name, row] of Object.entries(SETTINGS) as Array<[string, SettingDefinition]>) {
      if (row.env && !environment.includes(row.env)) missing.push(`man ENVIRONMENT: ${row.env}`);
      const key = (row.configKey ?? name).split('.').pop()!;
      if (row.config && row.config !== 'top') {
        if (!configuration.includes(key)) missing.push(`man CONFIGURATION: ${key}`);
        if (!readmeConfig.includes(`\`${key}\``)) missing.push(`README Configuration: ${key}`);
      }
      const flag = row.flag && longFlag(row.flag);
      if (flag && !readmeConfig.includes(flag)) missing.push(`README Configuration: ${flag}`);
    }
    expect(missing).toEqual([]);
  });
});
