/**
 * Effective settings for one run, with the precedence flags > environment variables > config file > defaults.
 */
import { ConfigError, UsageError } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import type { LogLevel } from '../log/index.js';
import { defaultConfigDir, defaultDataDir } from './paths.js';
import { authentifyBodyProblem, type ConfigFile, type EnvironmentConfig, normaliseBaseUrl, sessionStoreProblem } from './store.js';

/** Global options as parsed from the command line (undefined = not given). */
export interface GlobalOptions {
  env?: string;
  baseUrl?: string;
  configDir?: string;
  dataDir?: string;
  timeout?: string;
  retries?: string;
  session?: string;
  verbose?: number;
  quiet?: boolean;
  logLevel?: string;
  logFile?: string;
  logFormat?: string;
  color?: boolean;
  debug?: boolean;
  insecure?: boolean;
  metricsFile?: string;
  /** false after --no-breaker (commander's default for a --no- flag is true: "not given"). */
  breaker?: boolean;
}

export type Source = 'flag' | 'env' | 'config' | 'default';

export interface Credentials {
  username: string;
  password: string;
}

export interface Settings {
  envName: string;
  envSource: Source;
  /** The environment's config entry, when the environment is configured. */
  envConfig?: EnvironmentConfig;
  baseUrl?: string;
  baseUrlSource?: Source;
  configDir: string;
  dataDir: string;
  timeout: number;
  retries: number;
  pageSize: number;
  /**
   * Pages in flight pinned by `concurrency` in the config (per environment or under defaults);
   * undefined: get-table and sync adapt them to the server (table/concurrency.ts).
   */
  concurrency?: number;
  sessionName: string;
  sessionIdleMinutes: number;
  licenceWaitMs: number;
  licenceRetries: number;
  insecure: boolean;
  /** 'file' (default) or a redis:// URL (may hold a password: show it through maskUrl). */
  sessionStore: string;
  sessionStoreSource: Source;
  /** Redis down → exit 69 instead of falling back to the file store. */
  sessionStoreStrict: boolean;
  /** Licence budget per server across hosts (Redis store only). */
  maxSessions?: number;
  logLevel: LogLevel;
  logFile?: string;
  logFormat: 'text' | 'json';
  debug: boolean;
  credentials?: Credentials;
  /** Where the run's metrics go (--metrics-file, LEGACY_METRICS_FILE, metricsFile in the config); none by default. */
  metricsFile?: string;
  /** How long a sync command waits for a database another run is writing (SQLite busy, PostgreSQL lock), then exit 75. */
  syncBusyTimeoutMs: number;
  /** Where sync writes when the command gives no --db (LEGACY_SYNC_DB, the environment's sync.db), and what said so. */
  syncDb: { db?: string; what: string };
  /** The `authentify()` parameters template for force login (LEGACY_AUTHENTIFY_BODY, authentifyBody); undefined = the docs' example. */
  authentifyBody?: unknown;
  /** The environment's circuit breaker (session/breaker.ts). */
  breaker: BreakerSettings;
}

/** When the circuit breaker of an environment opens, and for how long it refuses runs. */
export interface BreakerSettings {
  enabled: boolean;
  /** Unavailable runs within `windowMs` that open it. */
  failures: number;
  windowMs: number;
  /** How long it stays open before one run probes the server. */
  coolDownMs: number;
  /** The cool-down doubles after each failed probe, up to this (never below coolDownMs). */
  maxCoolDownMs: number;
}

/** LEGACY_AUTHENTIFY_BODY (JSON text) or the config's authentifyBody; a bad one is exit 78. */
function resolveAuthentifyBody(env: Env, envConfig: EnvironmentConfig | undefined, defaults: ConfigFile['defaults']): unknown {
  const raw = env.LEGACY_AUTHENTIFY_BODY;
  if (raw) {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new ConfigError('LEGACY_AUTHENTIFY_BODY is not valid JSON', { hint: 'e.g. [{"name":"{user}","password":"{password}"}]' });
    }
    const problem = authentifyBodyProblem(value);
    if (problem) throw new ConfigError(`LEGACY_AUTHENTIFY_BODY ${problem}`);
    return value;
  }
  return envConfig?.authentifyBody ?? defaults?.authentifyBody;
}

export const DEFAULTS = {
  env: 'live',
  timeout: 60_000,
  retries: 3,
  pageSize: 1000,
  sessionName: 'default',
  sessionIdleMinutes: 60,
  licenceWaitMs: 60_000,
  licenceRetries: 5,
  breakerFailures: 5,
  breakerWindowMs: 600_000,
  breakerCoolDownMs: 60_000,
  breakerMaxCoolDownMs: 600_000,
  syncBusyTimeoutMs: 5000,
} as const;

const BOOLEAN_WORDS = ['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'];

/**
 * The breaker's settings: --no-breaker, then LEGACY_BREAKER* variables, then the environment's
 * config, then `defaults`, then DEFAULTS.
 */
function resolveBreaker(
  opts: GlobalOptions,
  env: Env,
  envConfig: EnvironmentConfig | undefined,
  defaults: NonNullable<ConfigFile['defaults']>,
): BreakerSettings {
  const int = (envVar: string, key: 'breakerFailures' | 'breakerWindowMs' | 'breakerCoolDownMs' | 'breakerMaxCoolDownMs'): number => {
    const raw = env[envVar];
    if (raw) return parseInteger(raw, envVar, 'env', 1);
    return envConfig?.[key] ?? defaults[key] ?? DEFAULTS[key];
  };
  const raw = env.LEGACY_BREAKER?.toLowerCase();
  if (raw && !BOOLEAN_WORDS.includes(raw)) throw new ConfigError(`LEGACY_BREAKER must be 1 or 0, got '${env.LEGACY_BREAKER}'`);
  const enabled = opts.breaker === false ? false : raw ? ['1', 'true', 'yes', 'on'].includes(raw) : (envConfig?.breaker ?? defaults.breaker ?? true);
  const coolDownMs = int('LEGACY_BREAKER_COOL_DOWN_MS', 'breakerCoolDownMs');
  return {
    enabled,
    failures: int('LEGACY_BREAKER_FAILURES', 'breakerFailures'),
    windowMs: int('LEGACY_BREAKER_WINDOW_MS', 'breakerWindowMs'),
    coolDownMs,
    maxCoolDownMs: Math.max(coolDownMs, int('LEGACY_BREAKER_MAX_COOL_DOWN_MS', 'breakerMaxCoolDownMs')),
  };
}

type Env = Record<string, string | undefined>;

/** Directories come from flags or environment only (they say where the config file is). */
export function resolveDirs(opts: GlobalOptions, env: Env): { configDir: string; dataDir: string } {
  return {
    configDir: opts.configDir ?? (env.LEGACY_CONFIG_DIR || undefined) ?? defaultConfigDir(),
    dataDir: opts.dataDir ?? (env.LEGACY_DATA_DIR || undefined) ?? defaultDataDir(),
  };
}

function parseInteger(raw: string, what: string, source: Source, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    const message = `${what} must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}, got '${raw}'`;
    throw source === 'flag' ? new UsageError(message) : new ConfigError(message);
  }
  return n;
}

/** The first defined value with its source. */
function pick<T>(...candidates: Array<[T | undefined, Source]>): [T, Source] | undefined {
  for (const c of candidates) if (c[0] !== undefined && c[0] !== null && (c[0] as unknown) !== '') return c as [T, Source];
  return undefined;
}

const LEVELS: LogLevel[] = ['error', 'warn', 'info', 'debug'];

export function resolveLogLevel(opts: GlobalOptions, env: Env): LogLevel {
  if (opts.logLevel) {
    const level = opts.logLevel.toLowerCase() === 'warning' ? 'warn' : opts.logLevel.toLowerCase();
    if (!LEVELS.includes(level as LogLevel)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}, got '${opts.logLevel}'`);
    return level as LogLevel;
  }
  if (opts.quiet) return 'error';
  if (opts.verbose && opts.verbose >= 2) return 'debug';
  if (opts.verbose === 1) return 'info';
  if (opts.debug) return 'debug';
  const fromEnv = env.LEGACY_LOG_LEVEL?.toLowerCase();
  if (fromEnv) {
    if (!LEVELS.includes(fromEnv as LogLevel)) throw new ConfigError(`LEGACY_LOG_LEVEL must be one of ${LEVELS.join(', ')}, got '${fromEnv}'`);
    return fromEnv as LogLevel;
  }
  return 'warn';
}

export function resolveLogFormat(opts: GlobalOptions, env: Env): 'text' | 'json' {
  const raw = opts.logFormat ?? env.LEGACY_LOG_FORMAT ?? 'text';
  if (raw !== 'text' && raw !== 'json') {
    const message = `log format must be text or json, got '${raw}'`;
    throw opts.logFormat ? new UsageError(message) : new ConfigError(message);
  }
  return raw;
}

/** Per-environment variable names: LEGACY_<ENV>_USERNAME with the name upper-cased and '-' → '_'. */
export function envVarFor(envName: string, suffix: string): string {
  return `LEGACY_${envName.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${suffix}`;
}

/** The environment's name and where it came from: --env, LEGACY_ENV, the config's defaultEnv, "live". */
export function resolveEnvName(opts: GlobalOptions, env: Env, config: Pick<ConfigFile, 'defaultEnv'> | undefined): [string, Source] {
  return pick<string>([opts.env, 'flag'], [env.LEGACY_ENV, 'env'], [config?.defaultEnv, 'config']) ?? [DEFAULTS.env, 'default'];
}

/** The metrics file: --metrics-file, LEGACY_METRICS_FILE, the environment's metricsFile, the defaults'. */
export function resolveMetricsFile(opts: GlobalOptions, env: Env, config: ConfigFile | undefined, envName: string): string | undefined {
  const envConfig = config && Object.hasOwn(config.environments, envName) ? config.environments[envName] : undefined;
  return opts.metricsFile ?? (env.LEGACY_METRICS_FILE || undefined) ?? envConfig?.metricsFile ?? config?.defaults?.metricsFile;
}

/** Where sync writes unless the command says (--db): LEGACY_SYNC_DB, else the environment's sync.db; and what said so. */
export function resolveSyncDb(env: Env, envName: string, envConfig: EnvironmentConfig | undefined): { db?: string; what: string } {
  if (env.LEGACY_SYNC_DB) return { db: env.LEGACY_SYNC_DB, what: 'LEGACY_SYNC_DB' };
  return { db: envConfig?.sync?.db, what: `environments.${envName}.sync.db` };
}

export function resolveSettings(opts: GlobalOptions, env: Env, config: ConfigFile, passwordFromStdin?: string): Settings {
  const { configDir, dataDir } = resolveDirs(opts, env);
  const [envName, envSource] = resolveEnvName(opts, env, config);
  const envConfig = Object.hasOwn(config.environments, envName) ? config.environments[envName] : undefined;
  const defaults = config.defaults ?? {};

  let baseUrl: string | undefined;
  let baseUrlSource: Source | undefined;
  const urlPick = pick<string>([opts.baseUrl, 'flag'], [env.LEGACY_BASE_URL, 'env'], [envConfig?.baseUrl, 'config']);
  if (urlPick) {
    [baseUrl, baseUrlSource] = urlPick;
    try {
      baseUrl = normaliseBaseUrl(baseUrl);
    } catch (error) {
      const what = baseUrlSource === 'flag' ? '--base-url' : baseUrlSource === 'env' ? 'LEGACY_BASE_URL' : `environment '${envName}'`;
      const message = `${what}: ${(error as Error).message}`;
      throw baseUrlSource === 'flag' ? new UsageError(message) : new ConfigError(message);
    }
  }

  const intSetting = (flag: string | undefined, envVar: string, key: 'timeout' | 'retries', what: string, min: number, max?: number): number => {
    if (flag !== undefined) return parseInteger(flag, what, 'flag', min, max);
    const fromEnv = env[envVar];
    if (fromEnv) return parseInteger(fromEnv, envVar, 'env', min, max);
    return envConfig?.[key] ?? defaults[key] ?? DEFAULTS[key];
  };

  const sessionName = opts.session ?? (env.LEGACY_SESSION || undefined) ?? DEFAULTS.sessionName;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(sessionName)) {
    throw new UsageError(`session name '${sessionName}' must be letters, digits, '.', '-' or '_'`);
  }

  const [sessionStore, sessionStoreSource] = pick<string>(
    [env.LEGACY_SESSION_STORE, 'env'],
    [envConfig?.sessionStore, 'config'],
    [defaults.sessionStore, 'config'],
  ) ?? ['file', 'default' as Source];
  const storeProblem = sessionStoreProblem(sessionStore);
  if (storeProblem) throw new ConfigError(`${sessionStoreSource === 'env' ? 'LEGACY_SESSION_STORE' : 'sessionStore'}: ${storeProblem}`);
  const strictRaw = env.LEGACY_SESSION_STORE_STRICT?.toLowerCase();
  if (strictRaw && !['1', '0', 'true', 'false', 'yes', 'no'].includes(strictRaw)) {
    throw new ConfigError(`LEGACY_SESSION_STORE_STRICT must be 1 or 0, got '${env.LEGACY_SESSION_STORE_STRICT}'`);
  }

  // Credentials never come from argv: environment variables, --password-stdin, or the config file.
  const username = env[envVarFor(envName, 'USERNAME')] || env.LEGACY_USERNAME || envConfig?.username;
  const password = passwordFromStdin ?? (env[envVarFor(envName, 'PASSWORD')] || env.LEGACY_PASSWORD || envConfig?.password);

  return {
    envName,
    envSource,
    envConfig,
    baseUrl,
    baseUrlSource,
    configDir,
    dataDir,
    timeout: intSetting(opts.timeout, 'LEGACY_TIMEOUT', 'timeout', 'timeout (ms)', 1),
    retries: intSetting(opts.retries, 'LEGACY_RETRIES', 'retries', 'retries', 0, 100),
    pageSize: envConfig?.pageSize ?? defaults.pageSize ?? DEFAULTS.pageSize,
    concurrency: envConfig?.concurrency ?? defaults.concurrency,
    sessionName,
    sessionIdleMinutes: envConfig?.sessionIdleMinutes ?? defaults.sessionIdleMinutes ?? DEFAULTS.sessionIdleMinutes,
    licenceWaitMs: env.LEGACY_LICENCE_WAIT_MS
      ? parseInteger(env.LEGACY_LICENCE_WAIT_MS, 'LEGACY_LICENCE_WAIT_MS', 'env', 0)
      : (envConfig?.licenceWaitMs ?? defaults.licenceWaitMs ?? DEFAULTS.licenceWaitMs),
    licenceRetries: env.LEGACY_LICENCE_RETRIES
      ? parseInteger(env.LEGACY_LICENCE_RETRIES, 'LEGACY_LICENCE_RETRIES', 'env', 0)
      : (envConfig?.licenceRetries ?? defaults.licenceRetries ?? DEFAULTS.licenceRetries),
    insecure: opts.insecure ?? envConfig?.insecure ?? defaults.insecure ?? false,
    sessionStore,
    sessionStoreSource,
    sessionStoreStrict: strictRaw ? ['1', 'true', 'yes'].includes(strictRaw) : (envConfig?.sessionStoreStrict ?? defaults.sessionStoreStrict ?? false),
    maxSessions: env.LEGACY_MAX_SESSIONS
      ? parseInteger(env.LEGACY_MAX_SESSIONS, 'LEGACY_MAX_SESSIONS', 'env', 1)
      : (envConfig?.maxSessions ?? defaults.maxSessions),
    logLevel: resolveLogLevel(opts, env),
    logFile: opts.logFile ?? (env.LEGACY_LOG_FILE || undefined),
    logFormat: resolveLogFormat(opts, env),
    debug: opts.debug === true || Boolean(env.LEGACY_DEBUG),
    credentials: username && password ? { username, password } : undefined,
    metricsFile: resolveMetricsFile(opts, env, config, envName),
    syncBusyTimeoutMs: env.LEGACY_SYNC_BUSY_TIMEOUT_MS
      ? parseInteger(env.LEGACY_SYNC_BUSY_TIMEOUT_MS, 'LEGACY_SYNC_BUSY_TIMEOUT_MS', 'env', 0)
      : (envConfig?.syncBusyTimeoutMs ?? defaults.syncBusyTimeoutMs ?? DEFAULTS.syncBusyTimeoutMs),
    syncDb: resolveSyncDb(env, envName, envConfig),
    authentifyBody: resolveAuthentifyBody(env, envConfig, defaults),
    breaker: resolveBreaker(opts, env, envConfig, defaults),
  };
}

/** The server URL for commands that talk to a server; explains what to do when there is none. */
export function requireBaseUrl(settings: Settings, config: ConfigFile): string {
  if (settings.baseUrl) return settings.baseUrl;
  const names = Object.keys(config.environments);
  const known = names.length ? `configured: ${names.join(', ')}` : 'none is configured yet';
  const hint = didYouMean(settings.envName, names);
  throw new ConfigError(`unknown environment '${settings.envName}' (${hint ? `${hint} ` : ''}${known})`, {
    hint: `add it with 'legacy env add ${settings.envName} <url>', or pass --base-url`,
  });
}
