/**
 * The command-line frame: global options, command registration, error → exit code mapping.
 *
 * Command modules are imported only when their command runs, so `--help`, `env list` and usage
 * errors never pay for got, winston, csv-stringify or cli-table3.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { loadConfig } from '../config/store.js';
import { resolveDirs, resolveLogFormat, resolveLogLevel, resolveSettings, type GlobalOptions } from '../config/settings.js';
import { ExitCode, InterruptedError, LegacyError, UsageError, errorToJson, exitCodeFor, formatErrorLine, isBrokenPipe, oneLine } from '../errors/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { RunMetrics } from '../metrics/run.js';
import type { CommandContext } from './context.js';
import { colorEnabled, type Io } from './io.js';

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** A command module: `run(ctx, args, opts)` returns the exit code (0 unless it says otherwise). */
export interface CommandModule {
  run(ctx: CommandContext, args: string[], opts: Record<string, unknown>): Promise<number | void>;
}

type Loader = () => Promise<CommandModule>;

const EXIT_CODES_HELP = `
Exit codes:
  0 ok · 1 unexpected error · 64 usage · 65 bad data (unknown table/field, rejected filter, conflict)
  69 server unavailable · 73 output file cannot be created · 75 temporary (licences all in use,
  lock busy) · 77 authentication · 78 configuration · 130 interrupted`;

/** -v, -vv: each occurrence adds one. */
function increase(_value: string, previous: number): number {
  return previous + 1;
}

/** Build the commander program. `dispatch` runs a command module with its parsed args and options. */
export function buildProgram(dispatch: (loader: Loader, args: string[], opts: Record<string, unknown>, cmd: Command) => Promise<void>): Command {
  const program = new Command('legacy');
  const load = (loader: Loader) =>
    async function action(this: Command, ...received: unknown[]) {
      const cmd = received[received.length - 1] as Command;
      const args = received.slice(0, -2).flat().filter((a): a is string => typeof a === 'string');
      // Merged with the parents' options: `sync status --json` must see --json even though `sync` has one too.
      await dispatch(loader, args, cmd.optsWithGlobals(), cmd);
    };

  program
    .description('Export, update and replicate data of a legacy 4D ERP over the 4D REST API.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .option('-e, --env <name>', 'environment to use (LEGACY_ENV; default: the config\'s default, else "live")')
    .option('--base-url <url>', 'server URL, overriding the environment\'s (LEGACY_BASE_URL)')
    .option('--config-dir <dir>', 'configuration and session directory (LEGACY_CONFIG_DIR)')
    .option('--data-dir <dir>', 'data directory: sync databases, audit log (LEGACY_DATA_DIR)')
    .option('--session <name>', 'named session slot for isolated workflows (LEGACY_SESSION; default "default")')
    .option('--timeout <ms>', 'per-request timeout in ms (LEGACY_TIMEOUT; default 60000)')
    .option('--retries <n>', 'retries for transient failures (LEGACY_RETRIES; default 3)')
    .option('-v, --verbose', 'more output on stderr (-vv for debug)', increase, 0)
    .option('-q, --quiet', 'only errors on stderr')
    .addOption(new Option('--log-level <level>', 'error, warn, info or debug (LEGACY_LOG_LEVEL)'))
    .option('--log-file <path>', 'also write logs to this file (LEGACY_LOG_FILE)')
    .addOption(new Option('--log-format <format>', 'text or json (LEGACY_LOG_FORMAT)'))
    .option('--no-color', 'no colour (also NO_COLOR)')
    .option('--insecure', 'do not verify TLS certificates (prefer the environment setting "insecure")')
    .option('--password-stdin', 'read the password for servers that require login from standard input')
    .option('--debug', 'show stack traces on errors (LEGACY_DEBUG)')
    .option('--har <file>', "record the run's HTTP exchanges as an HTTP Archive (HAR 1.2; cookies and passwords masked; 0600)")
    .option('--metrics-file <path>', 'at the end of the run, merge its metrics into this Prometheus textfile (LEGACY_METRICS_FILE)')
    .showSuggestionAfterError(true)
    .addHelpText('after', `${EXIT_CODES_HELP}\n\nSee 'legacy help <command>' and 'man legacy' for more.`);

  const env = program.command('env').description('manage environments (named servers) in the config file');
  env.command('list').description('list environments').option('--json', 'JSON output')
    .action(load(() => import('../commands/env.js').then((m) => ({ run: m.runList }))));
  env.command('add <name> <url>').description('add or replace an environment').option('--default', 'make it the default environment')
    .action(load(() => import('../commands/env.js').then((m) => ({ run: m.runAdd }))));
  env.command('current').description('show the effective settings of this run and where each came from')
    .option('--json', 'JSON output')
    .action(load(() => import('../commands/env.js').then((m) => ({ run: m.runCurrent }))));
  env.command('remove <name>').alias('rm').description('remove an environment')
    .action(load(() => import('../commands/env.js').then((m) => ({ run: m.runRemove }))));
  env.command('default <name>').description('set the default environment')
    .action(load(() => import('../commands/env.js').then((m) => ({ run: m.runDefault }))));

  const session = program.command('session').description('inspect and manage the persisted server session');
  session.command('status').description('show stored sessions (no server request unless --server)')
    .option('--all', 'every environment and session name, not just the selected one')
    .option('--json', 'JSON output')
    .option('--server', 'also ask the server ($info) for its live sessions')
    .action(load(() => import('../commands/session.js').then((m) => ({ run: m.runStatus }))));
  session.command('refresh').description('confirm the stored session with one cheap request; create one if none')
    .option('--json', 'JSON output')
    .action(load(() => import('../commands/session.js').then((m) => ({ run: m.runRefresh }))));
  session.command('clear').description('forget stored session cookie(s) locally (never logs out)')
    .option('--all', 'every environment and session name')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(load(() => import('../commands/session.js').then((m) => ({ run: m.runClear }))));

  program.command('doctor').description('check config, server reachability, REST prefix, session and licence headroom')
    .option('--json', 'JSON output')
    .option('--probe', "ask the server what it is (URL decoding, cookies, $params, entity sets, dates, session life) and store it")
    .action(load(() => import('../commands/doctor.js')));

  program.command('tables').description('list the tables (dataclasses) the server exposes')
    .option('--json', 'JSON output')
    .action(load(() => import('../commands/tables.js').then((m) => ({ run: m.runTables }))));
  program.command('describe <table>').description('show a table\'s attributes, types and key')
    .option('--json', 'JSON output')
    .action(load(() => import('../commands/tables.js').then((m) => ({ run: m.runDescribe }))));

  program.command('get-table <table>')
    .description('stream a whole table out as CSV, JSON, NDJSON, an Excel workbook or a terminal table')
    .option('--csv', 'CSV (default when stdout is not a terminal)')
    .option('--json', 'one JSON array')
    .option('--ndjson', 'one JSON object per line')
    .option('--table', 'a terminal table (default on a terminal; at most 100 rows unless --limit)')
    .option('--xlsx', 'an Excel workbook with typed cells (needs -o FILE or a redirected stdout)')
    .addOption(new Option('-f, --format <format>', 'output format').choices(['csv', 'json', 'ndjson', 'table', 'xlsx']))
    .option('-o, --output <file>', 'write to this file (atomically: temp file, renamed on success); - for stdout')
    .option('--fields <list>', 'comma-separated attributes, in this order')
    .option('--where <cond>', 'condition <field><op><value>, op one of = != < > <= >= begin (repeatable, ANDed)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--filter <query>', 'a raw 4D query, passed as $filter')
    .option('--order-by <spec>', 'sort, e.g. "Nummer desc,Bezeichnung"')
    .option('--limit <n>', 'at most n rows')
    .option('--skip <n>', 'skip the first n rows')
    .option('--page-size <n>', 'rows per request (default 1000)')
    .option('--concurrency <n>', 'pages fetched in parallel (default 3)')
    .option('--raw', 'values as the server sends them (no date/time conversion)')
    .option('--meta', 'add __KEY, __STAMP and __TIMESTAMP columns')
    .option('--delimiter <c>', 'CSV delimiter (default ,)')
    .option('--bom', 'start CSV with a UTF-8 byte order mark (for Excel)')
    .option('--excel-safe', 'neutralise CSV cells starting with = + - @')
    .option('--no-header', 'no CSV header row')
    .option('--count', 'print the number of rows (respecting filters) and nothing else')
    .option('--no-entityset', 'page with $skip/$top instead of a server-side entity set')
    .addHelpText('after', `
Examples:
  legacy get-table Artikel --csv > artikel.csv
  legacy get-table Artikel --where 'Bezeichnung=Engel@' --fields Nummer,Bezeichnung --limit 20
  legacy get-table Kunden --ndjson -o kunden.ndjson
  legacy get-table Artikel --xlsx -o artikel.xlsx
  legacy get-table Belege --count --where 'Datum>=2025-01-01'`)
    .action(load(() => import('../commands/get-table.js')));

  program.command('push-field <table> [args...]')
    .usage('<Table> <key> <field> <value> [options]  |  <Table> --from <file|-> [options]')
    .description('update fields of records safely (optimistic locking with __STAMP)')
    .option('--type <type>', 'value type: auto, string, number, bool, date, time or json (default auto: from the catalog)')
    .option('--from <file>', 'bulk: CSV (header row) or NDJSON file, - for stdin; a key column and one or more field columns')
    .option('--key-column <name>', 'bulk: the column holding the key (default: the table\'s key)')
    .option('--batch-size <n>', 'bulk: records per update request (default 100)')
    .option('--continue-on-error', 'bulk: keep going after rows that fail')
    .option('--report <format>', 'bulk: report as table, ndjson or csv (default: table on a terminal, else ndjson)')
    .option('--dry-run', 'read and validate, show what would change, write nothing')
    .option('-y, --yes', 'do not ask for confirmation (required when not on a terminal)')
    .option('--json', 'JSON result (one object; NDJSON report in bulk)')
    .option('--force', 'overwrite even if someone else changed the field since it was read')
    .addHelpText('after', `
Examples:
  legacy push-field Artikel 7464FEB39C516942B01E62F44B1ED454 Bezeichnung 'Engel, groß' --yes
  legacy push-field Artikel 7464FEB3... Auslaufdatum 2026-12-31 --dry-run
  legacy push-field Kunden --from kunden-plz.csv --key-column KundenNr --yes`)
    .action(load(() => import('../commands/push-field.js')));

  const sync = program.command('sync')
    .description('incremental, crash-safe replication of tables into SQLite or PostgreSQL')
    .argument('[tables...]', 'tables to sync (default: sync.tables of the environment in the config)')
    .option('--db <path|url>', 'SQLite file (default: <data dir>/<environment>.sqlite) or postgres://user@host:port/db')
    .option('--full', 'read every row again instead of the incremental window')
    .option('--reconcile', "also compare every row's key and stamp with the server: fetch missing and stale rows, mark vanished ones _deleted_at")
    .option('--lookback <duration>', 're-read this far behind the cursor, e.g. 2d (default: the cursor\'s own day)')
    .option('--page-size <n>', 'rows per request (default 1000)')
    .option('--json', 'JSON summary')
    .option('--dry-run', 'say what would be read, write nothing')
    .addHelpText('after', `
Examples:
  legacy sync Artikel Kunden                 # incremental after the first (full) run
  legacy sync --reconcile                    # tables from the config; also detect deletions
  legacy sync status --json`)
    .action(load(() => import('../commands/sync.js').then((m) => ({ run: m.runSync }))));
  sync.command('status').description('per table: rows, last successful run, cursor, last error; recent runs')
    .option('--db <path|url>', 'SQLite file or postgres:// URL').option('--json', 'JSON output')
    .action(load(() => import('../commands/sync.js').then((m) => ({ run: m.runStatus }))));
  sync.command('verify [tables...]').description("compare every row's key and stamp with the server, read-only; exit 0 when equal, 1 when the copy differs")
    .option('--db <path|url>', 'SQLite file or postgres:// URL').option('--json', 'JSON output: counts of missing, extra and stale rows, example keys')
    .action(load(() => import('../commands/sync.js').then((m) => ({ run: m.runVerify }))));
  sync.command('runs').description('run history')
    .option('--db <path|url>', 'SQLite file or postgres:// URL').option('--limit <n>', 'at most n runs (default 20)').option('--json', 'JSON output')
    .action(load(() => import('../commands/sync.js').then((m) => ({ run: m.runRuns }))));
  sync.command('prune').description('delete run history older than a duration')
    .option('--db <path|url>', 'SQLite file or postgres:// URL').requiredOption('--older-than <duration>', 'e.g. 7d, 12h')
    .action(load(() => import('../commands/sync.js').then((m) => ({ run: m.runPrune }))));

  program.command('completion <shell>').description('print a shell completion script (bash, zsh or fish)')
    .action(load(() => import('../commands/completion.js')));

  return program;
}

/**
 * Turn commander's messages ("error: unknown option '--x'\n(Did you mean --y?)") into one line,
 * without echoing anything that may be a secret typed in the wrong place: the value of an
 * unknown --name=value option, or an unknown command word that does not look like a command.
 */
export function commanderLine(message: string): string {
  let text = oneLine(message.replace(/^error:\s*/i, '').replace(/\(Did you mean/g, '(did you mean'));
  text = text.replace(/'(--?[^'=\s]+)=[^']*'/g, "'$1=…'");
  text = text.replace(/unknown command '([^']*)'(?! \(did you mean)/, (whole, word: string) =>
    /^[a-z][a-z-]{0,24}$/.test(word) ? whole : 'unknown command (the word is not shown in case it is a secret)',
  );
  return text;
}

export interface MainOptions {
  /** Abort signal from the process (Ctrl-C). */
  signal?: AbortSignal;
}

/** Run the CLI. Never calls process.exit; returns the exit code. */
export async function main(argv: string[], io: Io, options: MainOptions = {}): Promise<number> {
  let exitCode: number = ExitCode.ok;
  let logger: Logger | undefined;
  let globalOpts: GlobalOptions = {};
  let jsonLogs = false;
  // The run's metrics: the command path is known once commander has chosen the command.
  const metrics = new RunMetrics({ command: '', env: '' });
  let selected: Command | undefined;
  let metricsSettings: { file?: string; env: string } | undefined;
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(options.signal?.reason ?? 'interrupt');
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });

  // `legacy ... | head`: the reader went away. Stop the work quietly and exit 0.
  let pipeClosed = false;
  const onStdoutError = (error: Error) => {
    if (isBrokenPipe(error)) {
      pipeClosed = true;
      controller.abort('epipe');
    }
  };
  io.stdout.on('error', onStdoutError);

  const errLine = (line: string) => {
    try {
      io.stderr.write(`${line}\n`);
    } catch {
      /* nothing to do */
    }
  };

  const dispatch = async (loader: Loader, args: string[], opts: Record<string, unknown>, cmd: Command) => {
    selected = cmd;
    globalOpts = cmd.optsWithGlobals() as GlobalOptions;
    const dirs = resolveDirs(globalOpts, io.env);
    const format = resolveLogFormat(globalOpts, io.env);
    logger = createLogger({
      level: resolveLogLevel(globalOpts, io.env),
      format,
      stderr: io.stderr,
      file: globalOpts.logFile ?? (io.env.LEGACY_LOG_FILE || undefined),
      color: colorEnabled(io.stderr, globalOpts.color, io.env),
    });
    jsonLogs = format === 'json';
    // Every command needs a readable config (an invalid one is exit 78, never overwritten).
    const config = await loadConfig(dirs.configDir);
    const passwordFromStdin = (globalOpts as { passwordStdin?: boolean }).passwordStdin ? await readStdin(io) : undefined;
    const settings = resolveSettings(globalOpts, io.env, config!, passwordFromStdin);
    metricsSettings = { file: settings.metricsFile, env: settings.envName };
    const log = logger;
    // --har: created before anything is sent, so an unwritable place fails first (73).
    const harPath = (globalOpts as { har?: string }).har;
    const har = harPath ? await (await import('../transport/har.js')).HarRecorder.open(harPath, io.cwd, { name: 'legacy', version: packageVersion() }) : undefined;
    let clientPromise: Promise<import('../http/index.js').RestClient> | undefined;
    const ctx: CommandContext = {
      io,
      settings,
      config,
      logger: log,
      color: {
        stdout: colorEnabled(io.stdout, globalOpts.color, io.env),
        stderr: colorEnabled(io.stderr, globalOpts.color, io.env),
      },
      signal: controller.signal,
      interactive: io.stderr.isTTY === true && settings.logLevel !== 'error' && !io.env.CI,
      client: () => {
        clientPromise ??= import('../http/index.js').then((m) =>
          m.createRestClient({ settings, config, logger: log, signal: controller.signal, observers: har ? [metrics, har] : [metrics] }),
        );
        return clientPromise;
      },
      metrics,
    };
    let failed = true;
    try {
      const mod = await loader();
      const code = await mod.run(ctx, args, opts);
      exitCode = typeof code === 'number' ? code : ExitCode.ok;
      failed = false;
    } finally {
      if (clientPromise) {
        await clientPromise
          .then((c) => {
            metrics.addSession({ ...c.session.events, sessionCreatedAt: c.session.current()?.createdAt });
            return c.close();
          })
          .catch(() => undefined);
      }
      // Written whatever the outcome: a failed run's exchanges are the ones worth reporting.
      if (har) {
        try {
          await har.close();
        } catch (error) {
          if (!failed) throw error;
          log.warn(`could not write the HAR file: ${(error as Error).message}`);
        }
      }
    }
  };

  const program = buildProgram(dispatch);
  // Every command throws instead of exiting, writes through the injected streams, and leaves the
  // one-line error to us.
  const configure = (cmd: Command) => {
    cmd.exitOverride();
    if (cmd.commands.length) cmd.hook('preSubcommand', (_parent, sub) => void (selected = sub));
    cmd.configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s), outputError: () => undefined });
    cmd.commands.forEach(configure);
  };
  configure(program);

  try {
    if (argv.length === 0) {
      program.outputHelp();
      return ExitCode.ok;
    }
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') {
        exitCode = ExitCode.ok;
        selected = undefined; // help is not a run
      } else {
        exitCode = ExitCode.usage;
        globalOpts = (selected ?? program).optsWithGlobals() as GlobalOptions;
        errLine(`legacy: ${commanderLine(error.message)}; see 'legacy --help'`);
      }
    } else if (pipeClosed || (controller.signal.aborted && controller.signal.reason === 'epipe')) {
      exitCode = ExitCode.ok;
    } else {
      // After Ctrl-C, whatever the aborted work threw is reported as the interruption it is.
      const interrupted = controller.signal.aborted && (!(error instanceof LegacyError) || error instanceof InterruptedError);
      const reported = interrupted ? new InterruptedError('interrupted') : error;
      exitCode = exitCodeFor(reported);
      if (!(reported instanceof InterruptedError)) {
        const debug = globalOpts.debug === true || Boolean(io.env.LEGACY_DEBUG);
        if (logger && jsonLogs) {
          logger.error(formatErrorLine(reported), { error: errorToJson(reported) });
        } else {
          errLine(`legacy: ${formatErrorLine(reported)}`);
          logger?.debug('error details', { error: errorToJson(reported) });
        }
        if (debug && reported instanceof Error && reported.stack) errLine(reported.stack);
      } else {
        errLine('legacy: interrupted');
      }
    }
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
    io.stdout.off('error', onStdoutError);
    if (pipeClosed && exitCode !== ExitCode.interrupted) exitCode = ExitCode.ok;
    if (selected && selected.name() !== 'help') {
      await recordMetrics(metrics, commandPath(selected), exitCode, metricsSettings ?? (await metricsTarget(globalOpts, io)), io, logger ?? errLine);
    }
    if (logger) await logger.close();
  }
  return exitCode;
}

/** `sync status`, `session refresh`, `get-table`: the command's names below the program. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Where the metrics go and the environment label when the run failed before its settings were known. */
async function metricsTarget(opts: GlobalOptions, io: Io): Promise<{ file?: string; env: string }> {
  let config: Awaited<ReturnType<typeof loadConfig>> | undefined;
  try {
    config = await loadConfig(resolveDirs(opts, io.env).configDir);
  } catch {
    /* an invalid config: the flag and the environment variables still say where */
  }
  const env = opts.env ?? (io.env.LEGACY_ENV || undefined) ?? config?.defaultEnv ?? 'live';
  const file = opts.metricsFile ?? (io.env.LEGACY_METRICS_FILE || undefined) ?? config?.environments[env]?.metricsFile ?? config?.defaults?.metricsFile;
  return { file, env };
}

/** Merge the run's samples into the metrics file. A failure is a warning: it never changes the exit code. */
async function recordMetrics(metrics: RunMetrics, command: string, exitCode: number, target: { file?: string; env: string }, io: Io, warn: Logger | ((line: string) => void)): Promise<void> {
  if (!target.file) return;
  const path = resolve(io.cwd, target.file);
  metrics.relabel({ command, env: target.env });
  try {
    const { writeMetricsFile } = await import('../metrics/file.js');
    const { dropped } = await writeMetricsFile(path, metrics.samples(exitCode));
    if (dropped) say(warn, `metrics file ${path}: dropped ${dropped} line(s) that were not legacy's series`);
  } catch (error) {
    say(warn, `cannot write metrics file ${path}: ${oneLine((error as Error).message)}`);
  }
}

function say(warn: Logger | ((line: string) => void), message: string): void {
  if (typeof warn === 'function') warn(`legacy: warning: ${message}`);
  else warn.warn(message);
}

async function readStdin(io: Io): Promise<string> {
  if (io.stdin.isTTY) throw new UsageError('--password-stdin expects the password on standard input, not a terminal');
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

