/**
 * How a run ends on the command line: one line per error (never a stack unless asked for), the
 * exit code from the error model, and the run's series merged into the metrics file.
 */
import { resolve } from 'node:path';
import { CommanderError } from 'commander';
import { resolveDirs, resolveEnvName, resolveMetricsFile, type GlobalOptions } from '../config/settings.js';
import { loadConfig } from '../config/store.js';
import { ExitCode, InterruptedError, LegacyError, errorToJson, exitCodeFor, formatErrorLine, interruptionOf, oneLine } from '../errors/index.js';
import { type Logger, redactString } from '../log/index.js';
import type { RunMetrics } from '../metrics/run.js';
import type { Io } from '../cli/io.js';

/**
 * Commander's messages ("error: unknown option '--x'\n(Did you mean --y?)") as one line, without
 * echoing anything that may be a secret typed in the wrong place: the value of an unknown
 * --name=value option, or an unknown command word that does not look like a command.
 */
export function commanderLine(message: string): string {
  let text = oneLine(message.replace(/^error:\s*/i, '').replace(/\(Did you mean/g, '(did you mean'));
  text = text.replace(/'(--?[^'=\s]+)=[^']*'/g, "'$1=…'");
  text = text.replace(/unknown command '([^']*)'(?! \(did you mean)/, (whole, word: string) =>
    /^[a-z][a-z-]{0,24}$/.test(word) ? whole : 'unknown command (the word is not shown in case it is a secret)',
  );
  return text;
}

export interface Reporter {
  errLine(line: string): void;
  logger?: Logger;
  jsonLogs: boolean;
  debug: boolean;
}

/** The exit code of a run that threw, after saying what went wrong (help and version are not errors). */
export function reportError(error: unknown, r: Reporter, aborted: AbortSignal): number {
  if (error instanceof CommanderError) {
    if (['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code)) return ExitCode.ok;
    r.errLine(`legacy: ${commanderLine(error.message)}; see 'legacy --help'`);
    return ExitCode.usage;
  }
  if (aborted.aborted && aborted.reason === 'epipe') return ExitCode.ok;
  // After Ctrl-C, whatever the aborted work threw is reported as the interruption it is.
  const interrupted = aborted.aborted && (!(error instanceof LegacyError) || error instanceof InterruptedError);
  if (interrupted) {
    r.errLine(`legacy: ${interruptionOf(aborted)?.message ?? 'interrupted'}`);
    return ExitCode.interrupted;
  }
  if (r.logger && r.jsonLogs) {
    r.logger.error(formatErrorLine(error), { error: errorToJson(error) });
  } else {
    // Redacted like a log record: a server's message may quote a value we hold secret.
    r.errLine(`legacy: ${redactString(formatErrorLine(error))}`);
    r.logger?.debug('error details', { error: errorToJson(error) });
  }
  if (r.debug && error instanceof Error && error.stack) r.errLine(error.stack);
  return exitCodeFor(error);
}

/** Where the metrics go and the environment label (also when the run failed before its settings were known). */
async function metricsTarget(opts: GlobalOptions, io: Io): Promise<{ file?: string; env: string }> {
  let config: Awaited<ReturnType<typeof loadConfig>> | undefined;
  try {
    config = await loadConfig(resolveDirs(opts, io.env).configDir);
  } catch {
    /* an invalid config: the flag and the environment variables still say where */
  }
  // A bad --env or LEGACY_ENV is the run's own error, already reported: the metrics go unlabelled.
  let env = 'unknown';
  try {
    [env] = resolveEnvName(opts, io.env, config);
  } catch {
    /* reported by the run */
  }
  return { file: resolveMetricsFile(opts, io.env, config, env), env };
}

/** Merge the run's samples into the metrics file. A failure is a warning: it never changes the exit code. */
export async function recordMetrics(
  metrics: RunMetrics,
  command: string,
  exitCode: number,
  opts: GlobalOptions,
  io: Io,
  warn: (message: string) => void,
): Promise<void> {
  const target = await metricsTarget(opts, io);
  if (!target.file) return;
  const path = resolve(io.cwd, target.file);
  metrics.relabel({ command, env: target.env });
  try {
    const { writeMetricsFile } = await import('../metrics/file.js');
    const { dropped } = await writeMetricsFile(path, metrics.samples(exitCode));
    if (dropped) warn(`metrics file ${path}: dropped ${dropped} line(s) that were not legacy's series`);
  } catch (error) {
    warn(`cannot write metrics file ${path}: ${oneLine((error as Error).message)}`);
  }
}
