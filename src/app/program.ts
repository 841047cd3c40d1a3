/**
 * The command line assembled from the commands' own specs (src/commands/<name>.ts): the global
 * options here, each command's arguments, options, examples and run there. The result is a
 * commander tree; `dispatch` runs the chosen spec with its parsed arguments and options.
 */
import { Command, Option } from 'commander';
import { spec as completion } from '../commands/completion.js';
import { spec as doctor } from '../commands/doctor.js';
import { spec as env } from '../commands/env.js';
import { spec as getTable } from '../commands/get-table.js';
import { spec as pushField } from '../commands/push-field.js';
import { spec as session } from '../commands/session.js';
import { spec as sync } from '../commands/sync.js';
import { specs as tables } from '../commands/tables.js';
import { spec as watch } from '../commands/watch.js';
import { occurrences, type CommandSpec, type OptionSpec } from '../cli/spec.js';
import { packageVersion } from '../cli/version.js';
import { FLAG_SETTINGS, helpLine, SETTINGS, type SettingDefinition } from '../config/definitions.js';

/** Every command, in the order `legacy --help` lists them. */
export const COMMANDS: ReadonlyArray<CommandSpec<never>> = [env, session, doctor, ...tables, getTable, pushField, sync, watch, completion];

/**
 * Options every command takes: the rows of the settings table with a flag (config/definitions.ts),
 * each with the variable that also sets it and its default in the help.
 */
export const GLOBAL_OPTIONS: readonly OptionSpec[] = FLAG_SETTINGS.map((name) => {
  const d: SettingDefinition = SETTINGS[name];
  return { flags: d.flag!, description: helpLine(d), ...(d.counted ? { parse: occurrences } : {}), ...(d.complete ? { complete: d.complete } : {}) };
});

const EXIT_CODES_HELP = `
Exit codes:
  0 ok · 1 unexpected error (sync verify: the copy differs) · 64 usage · 65 bad data (unknown
  table/field, rejected or ignored filter, conflict) · 69 server unavailable (or its circuit
  breaker is open: nothing was sent) · 73 output file cannot
  be created · 75 temporary (licences all in use, lock busy, selection rebuilt) · 77 authentication
  · 78 configuration · 130 interrupted`;

/** Runs the chosen command: its spec, the arguments and the options (merged with the globals), the commander node. */
export type Dispatch = (spec: CommandSpec<never>, args: string[], opts: Record<string, unknown>, cmd: Command) => Promise<void>;

function addOption(cmd: Command, o: OptionSpec): void {
  const option = new Option(o.flags, o.description);
  if (o.choices) option.choices(o.choices);
  if (o.parse) option.argParser(o.parse as (value: string, previous: unknown) => unknown);
  if (o.required) option.makeOptionMandatory();
  if (o.parse === occurrences) option.default(0);
  cmd.addOption(option);
}

function addCommand(parent: Command, spec: CommandSpec<never>, dispatch: Dispatch): void {
  const cmd = parent.command(spec.name).description(spec.description);
  if (spec.alias) cmd.alias(spec.alias);
  if (spec.usage) cmd.usage(spec.usage);
  for (const o of spec.options ?? []) addOption(cmd, o);
  if (spec.examples?.length) cmd.addHelpText('after', `\nExamples:\n${spec.examples.map((e) => `  ${e}`).join('\n')}`);
  if (spec.run) {
    cmd.action(async (...received: unknown[]) => {
      const self = received[received.length - 1] as Command;
      const args = received
        .slice(0, -2)
        .flat()
        .filter((a): a is string => typeof a === 'string');
      // Merged with the parents' options: `sync status --json` must see --json even though `sync` has one too.
      await dispatch(spec, args, self.optsWithGlobals(), self);
    });
  }
  for (const sub of spec.subcommands ?? []) addCommand(cmd, sub, dispatch);
}

/** The commander program for these specs. */
export function buildProgram(dispatch: Dispatch, commands: ReadonlyArray<CommandSpec<never>> = COMMANDS): Command {
  const program = new Command('legacy')
    .description('Export, update and replicate data of a legacy 4D ERP over the 4D REST API.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .showSuggestionAfterError(true)
    .addHelpText('after', `${EXIT_CODES_HELP}\n\nSee 'legacy help <command>' and 'man legacy' for more.`);
  for (const o of GLOBAL_OPTIONS) addOption(program, o);
  for (const spec of commands) addCommand(program, spec, dispatch);
  return program;
}

/** `sync status`, `session refresh`, `get-table`: the command's names below the program. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}
