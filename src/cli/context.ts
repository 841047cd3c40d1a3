/**
 * What every command gets: its streams, effective settings, the config, a logger, colour decisions,
 * an abort signal (Ctrl-C, closed pipe), a lazily built 4D REST client for the environment, the
 * run's metrics; and how a run's context is made and closed.
 */
import { resolveDirs, resolveLogFormat, resolveLogLevel, resolveSetting, resolveSettings, type GlobalOptions, type Settings } from '../config/settings.js';
import { loadConfig, type ConfigFile } from '../config/store.js';
import { UsageError } from '../errors/index.js';
import type { RestClient } from '../rest/index.js';
import { createLogger, type Logger } from '../log/index.js';
import type { RunMetrics, RunReporter } from '../metrics/run.js';
import { colorEnabled, type Io } from './io.js';
import { packageVersion } from './version.js';

export interface CommandContext {
  io: Io;
  settings: Settings;
  config: ConfigFile;
  logger: Logger;
  color: { stdout: boolean; stderr: boolean };
  /** Aborted on Ctrl-C / SIGTERM (reason: an InterruptedError naming the signal) or when stdout's reader went away (reason 'epipe'). */
  signal: AbortSignal;
  /** The 4D REST client for the selected environment and session name (built on first use). */
  client(): Promise<RestClient>;
  /** Show progress spinners? Only on a terminal, never with --quiet. */
  interactive: boolean;
  /** Where the command reports its table and the rows it read and wrote (the run's metrics). */
  metrics: RunReporter;
}

/** A run's context and what must happen when the command ends, whatever its outcome. */
export interface RunContext {
  ctx: CommandContext;
  /** Close the client (its session store), count its session for the metrics, write the HAR file. */
  finish(failed: boolean): Promise<void>;
}

export interface ContextInput {
  io: Io;
  globals: GlobalOptions;
  signal: AbortSignal;
  metrics: RunMetrics;
  /** Told once the logger exists (errors after that are logged through it). */
  onLogger(logger: Logger, json: boolean): void;
}

/**
 * Build what every command gets from the global options and the environment: the logger, the
 * config (an invalid one is exit 78 and never overwritten), the effective settings, the HAR
 * recorder (created before anything is sent, so an unwritable place fails first: 73) and a client
 * made on first use.
 */
export async function createContext({ io, globals, signal, metrics, onLogger }: ContextInput): Promise<RunContext> {
  const dirs = resolveDirs(globals, io.env);
  const format = resolveLogFormat(globals, io.env);
  // Colour goes through chalk, loaded only when stderr gets colour (a terminal, no NO_COLOR, no --no-color).
  const chalk = colorEnabled(io.stderr, globals.color, io.env) ? new (await import('chalk')).Chalk({ level: 1 }) : undefined;
  const logger = createLogger({
    level: resolveLogLevel(globals, io.env),
    format,
    stderr: io.stderr,
    file: resolveSetting('logFile', { opts: globals, env: io.env })?.value,
    chalk,
  });
  onLogger(logger, format === 'json');
  const config = await loadConfig(dirs.configDir);
  const password = (globals as { passwordStdin?: boolean }).passwordStdin ? await readStdin(io) : undefined;
  const settings = resolveSettings(globals, io.env, config, password);
  metrics.relabel({ env: settings.envName });
  const harPath = (globals as { har?: string }).har;
  const har = harPath
    ? await (await import('../transport/har.js')).HarRecorder.open(harPath, io.cwd, { name: 'legacy', version: packageVersion() })
    : undefined;
  let client: Promise<RestClient> | undefined;
  const ctx: CommandContext = {
    io,
    settings,
    config,
    logger,
    color: { stdout: colorEnabled(io.stdout, globals.color, io.env), stderr: colorEnabled(io.stderr, globals.color, io.env) },
    signal,
    interactive: io.stderr.isTTY === true && settings.logLevel !== 'error' && !io.env.CI,
    client: () =>
      (client ??= import('../rest/index.js').then((m) =>
        m.createRestClient({ settings, config, logger, signal, observers: har ? [metrics, har] : [metrics] }),
      )),
    metrics,
  };
  return {
    ctx,
    async finish(failed) {
      await client
        ?.then(async (c) => {
          metrics.addSession({ ...c.session.events, sessionCreatedAt: c.session.current()?.createdAt });
          await c.close();
          metrics.breaker(c.breaker.report());
        })
        .catch(() => undefined);
      // Written whatever the outcome: a failed run's exchanges are the ones worth reporting.
      await har?.close().catch((error: Error) => {
        if (!failed) throw error;
        logger.warn(`could not write the HAR file: ${error.message}`);
      });
    },
  };
}

async function readStdin(io: Io): Promise<string> {
  if (io.stdin.isTTY) throw new UsageError('--password-stdin expects the password on standard input, not a terminal');
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}
