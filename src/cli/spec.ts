/**
 * How a command describes itself: its name and arguments, options with typed parsers, examples and
 * its `run`, all in `src/commands/<name>.ts`; ./program.ts assembles the specs into the command
 * line. A command's `run` imports the library lazily, so loading every spec (for parsing and
 * help) stays cheap and `--help`, `env list` or a usage error never pay for the HTTP stack.
 */
import { parseDuration } from '../config/duration.js';
import { UsageError } from '../errors/index.js';
import type { CommandContext } from './context.js';

/**
 * What the shell completes for an option's value or a positional argument (./complete.ts): a
 * fixed list, file or directory names, the configured environments, or the table names cached
 * from this environment's catalog (no server round trip); 'none' offers nothing.
 */
export type Completion = 'files' | 'dirs' | 'tables' | 'environments' | 'none' | readonly string[];

export interface OptionSpec {
  /** commander flags: `-o, --output <file>`, `--no-header`, `--where <cond>`. */
  flags: string;
  description: string;
  /** Typed parser: the value as the command wants it; throws UsageError (exit 64) with one line. */
  parse?: (value: string, previous: never) => unknown;
  /** Allowed values (checked by commander, listed in the help). */
  choices?: readonly string[];
  /** The option must be given. */
  required?: boolean;
  /** What completes its value; default: `choices`, else files for a `<file>`/`<path>` value, else nothing. */
  complete?: Completion;
}

export type Run<O> = (ctx: CommandContext, args: string[], opts: O) => Promise<number | undefined>;

export interface CommandSpec<O = Record<string, unknown>> {
  /** The command word and its arguments: `get-table <table>`, `verify [tables...]`. */
  name: string;
  description: string;
  usage?: string;
  alias?: string;
  options?: readonly OptionSpec[];
  /** Shown under "Examples:" in the command's help. */
  examples?: readonly string[];
  subcommands?: ReadonlyArray<CommandSpec<never>>;
  /** What completes each positional argument, in order (the last one repeats for `[args...]`); default nothing. */
  complete?: readonly Completion[];
  run?: Run<O>;
}

/** A spec with its options type checked against its run, kept in a list of specs of other types. */
export function command<O>(spec: CommandSpec<O>): CommandSpec<never> {
  return spec as unknown as CommandSpec<never>;
}

/** The `--json` switch of the commands that have one. */
export const JSON_OPTION: OptionSpec = { flags: '--json', description: 'JSON output' };

// ---- typed parsers ------------------------------------------------------------------------------

/** A whole number in [min, max]: `--limit`, `--page-size`, `--concurrency`. */
export function wholeNumber(flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || n < min) throw new UsageError(`${flag} must be a whole number ≥ ${min}, got '${value}'`);
    if (n > max) throw new UsageError(`${flag} is at most ${max}`);
    return n;
  };
}

/** An option given several times: each value is added (`--where a --where b`). */
export function repeatable(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** A flag that counts its occurrences (`-v`, `-vv`). */
export function occurrences(_value: string, previous: number | undefined): number {
  return (previous ?? 0) + 1;
}

/** A comma-separated list (`--fields a,b,c`), empty items dropped. */
export function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A duration (`7d`, `12h`, `30m`) in milliseconds. */
export function duration(value: string): number {
  return parseDuration(value);
}
