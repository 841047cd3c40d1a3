/**
 * What every command gets: its streams, effective settings, the config, a logger, colour decisions,
 * an abort signal (Ctrl-C, closed pipe) and a lazily built 4D REST client for the environment.
 */
import type { ConfigFile } from '../config/store.js';
import type { Settings } from '../config/settings.js';
import type { Logger } from '../log/index.js';
import type { RestClient } from '../http/index.js';
import type { RunReporter } from '../metrics/run.js';
import type { Io } from './io.js';

export interface CommandContext {
  io: Io;
  settings: Settings;
  config: ConfigFile;
  logger: Logger;
  color: { stdout: boolean; stderr: boolean };
  /** Aborted on Ctrl-C / SIGTERM (reason 'interrupt') or when stdout's reader went away (reason 'epipe'). */
  signal: AbortSignal;
  /** The 4D REST client for the selected environment and session name (built on first use). */
  client(): Promise<RestClient>;
  /** Show progress spinners? Only on a terminal, never with --quiet. */
  interactive: boolean;
  /** Where the command reports its table and the rows it read and wrote (the run's metrics). */
  metrics: RunReporter;
}
