/**
 * The run lifecycle: parse the command line (./program.ts assembles the commands' own specs), make
 * the command's context (./context.ts), run it, and turn the outcome into one error line and an exit
 * code (./report.ts); Ctrl-C and a reader that went away (`| head`) abort the work. Never calls
 * process.exit: returns the exit code, so tests run it in-process with injected streams.
 */
import type { Command } from 'commander';
import { debugWanted, type GlobalOptions } from '../config/settings.js';
import { type CannotCreateError, ExitCode, cannotWriteError, isBrokenPipe } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { RunMetrics } from '../metrics/run.js';
import { COMPLETE_COMMAND, runComplete } from './complete.js';
import { createContext } from '../cli/context.js';
import type { Io } from '../cli/io.js';
import { buildProgram, commandPath, type Dispatch } from './program.js';
import { recordMetrics, reportError } from './report.js';

export { commanderLine } from './report.js';
export { buildProgram } from './program.js';
export { packageVersion } from '../cli/version.js';

export interface MainOptions {
  /** Abort signal from the process (Ctrl-C). */
  signal?: AbortSignal;
}

/** Run the CLI. Never calls process.exit; returns the exit code. */
export async function main(argv: string[], io: Io, options: MainOptions = {}): Promise<number> {
  if (argv[0] === COMPLETE_COMMAND) return runComplete(argv.slice(1), io);
  let exitCode: number = ExitCode.ok;
  let logger: Logger | undefined;
  let jsonLogs = false;
  let globals: GlobalOptions = {};
  // The command chosen by commander (known before its options are checked), for the metrics.
  let selected: Command | undefined;
  const metrics = new RunMetrics({ command: '', env: '' });
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  // `legacy ... | head`: the reader went away. Stop the work quietly and exit 0. Any other failure
  // of stdout (`> /dev/full`, a full disk) stops the work too and is the run's error: exit 73.
  let stdoutFailure: CannotCreateError | undefined;
  const onStdoutError = (error: Error) => {
    if (isBrokenPipe(error)) {
      controller.abort('epipe');
      return;
    }
    stdoutFailure ??= cannotWriteError(error, 'standard output');
    controller.abort('stdout');
  };
  io.stdout.on('error', onStdoutError);
  const errLine = (line: string) => {
    try {
      io.stderr.write(`${line}\n`);
    } catch {
      /* nothing to do */
    }
  };

  const dispatch: Dispatch = async (spec, args, opts, cmd) => {
    globals = cmd.optsWithGlobals() as GlobalOptions;
    const run = await createContext({
      io,
      globals,
      signal: controller.signal,
      metrics,
      onLogger: (l, json) => {
        logger = l;
        jsonLogs = json;
      },
    });
    let failed = true;
    try {
      const code = await spec.run!(run.ctx, args, opts as never);
      exitCode = typeof code === 'number' ? code : ExitCode.ok;
      failed = false;
    } finally {
      await run.finish(failed);
    }
  };

  const program = buildProgram(dispatch);
  // Every command throws instead of exiting, writes through the injected streams, and leaves the
  // one-line error to us.
  const configure = (cmd: Command) => {
    cmd.exitOverride();
    if (cmd.commands.length) {
      cmd.hook('preSubcommand', (_parent, sub) => {
        selected = sub;
      });
    }
    cmd.configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s), outputError: () => undefined });
    cmd.commands.forEach(configure);
  };
  configure(program);

  let reported = false;
  try {
    if (argv.length === 0) {
      program.outputHelp();
      return ExitCode.ok;
    }
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    globals = Object.keys(globals).length ? globals : ((selected ?? program).optsWithGlobals() as GlobalOptions);
    exitCode = reportError(stdoutFailure ?? error, { errLine, logger, jsonLogs, debug: debugWanted(globals, io.env) }, controller.signal);
    reported = true;
    if ((error as { code?: string }).code?.startsWith('commander.help') || (error as { code?: string }).code === 'commander.version') selected = undefined; // help is not a run
  } finally {
    // A command that finished although its output could not be written did not succeed.
    if (stdoutFailure && !reported) {
      exitCode = reportError(stdoutFailure, { errLine, logger, jsonLogs, debug: false }, controller.signal);
    }
    options.signal?.removeEventListener('abort', onOuterAbort);
    io.stdout.off('error', onStdoutError);
    if (controller.signal.reason === 'epipe' && exitCode !== ExitCode.interrupted) exitCode = ExitCode.ok;
    if (selected && selected.name() !== 'help') {
      await recordMetrics(metrics, commandPath(selected), exitCode, globals, io, (m) => (logger ? logger.warn(m) : errLine(`legacy: warning: ${m}`)));
    }
    if (logger) await logger.close();
  }
  return exitCode;
}
