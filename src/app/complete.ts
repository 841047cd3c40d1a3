/**
 * Shell completion, answered from the command specs (`legacy __complete <words...> <current>`; the
 * scripts of `legacy completion` call it on every TAB). The words typed so far are read the way
 * the parser reads them: options anywhere (global ones before or after the command), an option's
 * value skipped, `--` ending options, a subcommand only before any argument. What completes the
 * current word comes from the spec: options of the command and of the program, subcommands, an
 * option's choices, file or directory names, the configured environments, or the table names this
 * environment's catalog had when a run last read it (`servers.json`, rest/dialect.ts): no request
 * is sent, no session touched. Never fails: anything unreadable completes nothing.
 *
 * The answer is one directive line (`:words`, `:files`, `:dirs`), then one candidate per line,
 * `value<TAB>description` (fish and zsh show the description; bash drops it).
 */
import { Option } from 'commander';
import type { GlobalOptions } from '../config/settings.js';
import type { Io } from '../cli/io.js';
import { COMMANDS, GLOBAL_OPTIONS } from './program.js';
import { type CommandSpec, type Completion, occurrences, type OptionSpec, repeatable } from '../cli/spec.js';

/** The hidden command the completion scripts call. */
export const COMPLETE_COMMAND = '__complete';

interface Flag {
  short?: string;
  long?: string;
  /** Takes a value (`<x>`; an optional `[x]` value is only taken when attached with `=`). */
  value?: string;
  optionalValue: boolean;
  repeatable: boolean;
  spec: OptionSpec;
}

interface Node {
  spec: CommandSpec<never>;
  words: string[];
  flags: Flag[];
  args: Array<{ name: string; variadic: boolean }>;
}

export interface Answer {
  directive: 'words' | 'files' | 'dirs';
  candidates: Array<{ value: string; description?: string }>;
}

const HELP: OptionSpec = { flags: '-h, --help', description: 'show help' };
const VERSION: OptionSpec = { flags: '-V, --version', description: 'print the version' };

/** An option spec read by commander itself (the parser the command line uses), plus its value's placeholder name. */
function parseFlags(spec: OptionSpec): Flag {
  const option = new Option(spec.flags);
  const parse = spec.parse as unknown;
  return {
    short: option.short,
    long: option.long,
    value: option.required || option.optional ? (/[<[]([^>\]]*)[>\]]/.exec(spec.flags)?.[1] ?? '') : undefined,
    optionalValue: option.optional,
    repeatable: parse === repeatable || parse === occurrences,
    spec,
  };
}

function nodeOf(spec: CommandSpec<never>, words: string[], top: boolean): Node {
  const [name, ...argv] = spec.name.split(/\s+/);
  const flags = [...(spec.options ?? []), HELP, ...(top ? [VERSION] : [])].map(parseFlags);
  const args = argv.map((a) => ({ name: a.replace(/[<>[\].]/g, ''), variadic: a.includes('...') }));
  return { spec, words: top ? [] : [...words, name!], flags, args };
}

const ROOT: CommandSpec<never> = { name: 'legacy', description: '', options: GLOBAL_OPTIONS, subcommands: COMMANDS };

function subcommand(node: Node, word: string): CommandSpec<never> | undefined {
  return node.spec.subcommands?.find((s) => s.name.split(/\s+/)[0] === word || s.alias === word);
}

/** Where the words typed so far leave the parser. */
interface Position {
  chain: Node[];
  positionals: string[];
  used: Set<Flag>;
  /** The option whose value is being typed, if any. */
  valueFor?: Flag;
  /** Global option values seen (for the environment and the config directory). */
  globals: GlobalOptions;
  afterDashDash: boolean;
}

function findFlag(chain: Node[], word: string): Flag | undefined {
  for (let i = chain.length - 1; i >= 0; i--) {
    const f = chain[i]!.flags.find((x) => x.long === word || x.short === word || (x.long && word === `--no-${x.long.slice(2)}`));
    if (f) return f;
  }
  return undefined;
}

function noteGlobal(globals: GlobalOptions, flag: Flag, value: string): void {
  if (flag.long === '--env') globals.env = value;
  else if (flag.long === '--config-dir') globals.configDir = value;
  else if (flag.long === '--base-url') globals.baseUrl = value;
}

function locate(words: string[]): Position {
  const pos: Position = { chain: [nodeOf(ROOT, [], true)], positionals: [], used: new Set(), globals: {}, afterDashDash: false };
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const node = pos.chain[pos.chain.length - 1]!;
    if (!pos.afterDashDash && word === '--') {
      pos.afterDashDash = true;
    } else if (!pos.afterDashDash && word.startsWith('-') && word.length > 1) {
      const eq = word.indexOf('=');
      const name = eq > 0 ? word.slice(0, eq) : word;
      // -vv, -yq: short flags run together; only the last may take a value.
      const shorts = /^-\w{2,}$/.test(name) ? [...name.slice(1)].map((c) => `-${c}`) : [name];
      for (const s of shorts) {
        const flag = findFlag(pos.chain, s);
        if (!flag) continue;
        pos.used.add(flag);
        if (!flag.value || flag.optionalValue || s !== shorts[shorts.length - 1]) continue;
        if (eq > 0) noteGlobal(pos.globals, flag, word.slice(eq + 1));
        else if (i + 1 >= words.length) pos.valueFor = flag;
        else if (words[i + 1] === '=' && i + 2 >= words.length) {
          // bash splits `--format=c` into `--format`, `=`, `c`.
          pos.valueFor = flag;
          i += 1;
        } else {
          if (words[i + 1] === '=') i += 1;
          noteGlobal(pos.globals, flag, words[i + 1] ?? '');
          i += 1;
        }
      }
    } else {
      const sub = pos.positionals.length === 0 && !pos.afterDashDash ? subcommand(node, word) : undefined;
      if (sub) pos.chain.push(nodeOf(sub, node.words, false));
      else pos.positionals.push(word);
    }
  }
  return pos;
}

/** The environment's names and cached tables, read without a request; nothing on any failure. */
async function environment(io: Io, globals: GlobalOptions): Promise<{ environments: string[]; tables: () => Promise<string[]> }> {
  try {
    const { resolveDirs, resolveSettings } = await import('../config/settings.js');
    const { loadConfig } = await import('../config/store.js');
    const { configDir } = resolveDirs(globals, io.env);
    const config = await loadConfig(configDir);
    return {
      environments: Object.keys(config.environments),
      // A setting the words typed so far make invalid (`--timeout abc`) completes nothing.
      tables: async () => {
        try {
          const settings = resolveSettings(globals, io.env, config);
          const { DialectCache } = await import('../rest/dialect.js');
          return await DialectCache.inDir(configDir).tableNames(settings.envName, settings.baseUrl);
        } catch {
          return [];
        }
      },
    };
  } catch {
    return { environments: [], tables: async () => [] };
  }
}

async function values(what: Completion | undefined, io: Io, pos: Position): Promise<Answer> {
  if (what === 'files' || what === 'dirs') return { directive: what, candidates: [] };
  if (what === undefined || what === 'none') return { directive: 'words', candidates: [] };
  if (typeof what !== 'string') return { directive: 'words', candidates: what.map((value) => ({ value })) };
  const env = await environment(io, pos.globals);
  const names = what === 'environments' ? env.environments : await env.tables().catch(() => []);
  return { directive: 'words', candidates: names.map((value) => ({ value })) };
}

function valueCompletion(flag: Flag): Completion | undefined {
  if (flag.spec.complete) return flag.spec.complete;
  if (flag.spec.choices) return flag.spec.choices;
  if (/^(file|path)\b/.test(flag.value ?? '')) return 'files';
  if (/^dir\b/.test(flag.value ?? '')) return 'dirs';
  return undefined;
}

/** What completes `current`, after `words`. */
export async function complete(words: string[], current: string, io: Io): Promise<Answer> {
  const pos = locate(words);
  const node = pos.chain[pos.chain.length - 1]!;
  let answer: Answer;
  const attached = /^(--[\w-]+)=(.*)$/s.exec(current);
  const attachedFlag = attached && !pos.afterDashDash ? findFlag(pos.chain, attached[1]!) : undefined;
  if (pos.valueFor) {
    answer = await values(valueCompletion(pos.valueFor), io, pos);
  } else if (attached && attachedFlag?.value) {
    // `--format=c` typed as one word (fish, zsh): the candidates carry the option.
    const inner = await values(valueCompletion(attachedFlag), io, pos);
    answer = { directive: 'words', candidates: inner.candidates.map((c) => ({ value: `${attached[1]}=${c.value}` })) };
  } else if (current.startsWith('-') && !pos.afterDashDash) {
    const seen = new Set<string>();
    const candidates: Answer['candidates'] = [];
    // The command's own options first, then those of its parents and the program's.
    for (let i = pos.chain.length - 1; i >= 0; i--) {
      for (const f of pos.chain[i]!.flags) {
        const name = f.long ?? f.short!;
        if (seen.has(name) || (pos.used.has(f) && !f.repeatable)) continue;
        if (f.spec === VERSION && pos.chain.length > 1) continue;
        seen.add(name);
        candidates.push({ value: name, description: f.spec.description });
      }
    }
    answer = { directive: 'words', candidates };
  } else {
    const subs =
      pos.positionals.length === 0 && !pos.afterDashDash
        ? (node.spec.subcommands ?? []).map((s) => ({ value: s.name.split(/\s+/)[0]!, description: s.description }))
        : [];
    const k = node.args.length ? Math.min(pos.positionals.length, node.args.length - 1) : -1;
    const arg = k >= 0 && (pos.positionals.length < node.args.length || node.args[k]!.variadic) ? k : -1;
    if (arg < 0 || !node.spec.run) {
      answer = { directive: 'words', candidates: subs };
    } else {
      answer = await values(node.spec.complete?.[arg], io, pos);
      answer.candidates = [...subs, ...answer.candidates];
      if (arg > 0 || node.args[arg]!.variadic) {
        const given = new Set(pos.positionals);
        answer.candidates = answer.candidates.filter((c) => !given.has(c.value));
      }
    }
  }
  answer.candidates = answer.candidates.filter((c) => c.value.startsWith(current));
  return answer;
}

/** `legacy __complete <words...> <current>`: the answer on stdout; exit 0 whatever happens. */
export async function runComplete(argv: string[], io: Io): Promise<number> {
  const words = argv.slice(0, -1);
  const current = argv[argv.length - 1] ?? '';
  let answer: Answer;
  try {
    answer = await complete(words, current, io);
  } catch {
    answer = { directive: 'words', candidates: [] };
  }
  const oneLine = (s: string) => s.replace(/[\t\r\n]+/g, ' ');
  const lines = [
    `:${answer.directive}`,
    ...answer.candidates.map((c) => (c.description ? `${oneLine(c.value)}\t${oneLine(c.description)}` : oneLine(c.value))),
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
