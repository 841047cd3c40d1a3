/**
 * Effective settings for one run: each row of the table (config/definitions.ts) resolved with the
 * precedence flag > environment variable > the environment's config entry > `defaults` > default.
 */
import { ConfigError, UsageError } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import type { LogLevel } from '../log/index.js';
import { problemToShow, SETTINGS, type SettingDefinition, type SettingName, type SettingValue, type Source, saying } from './definitions.js';
import { defaultConfigDir, defaultDataDir } from './paths.js';
import type { ConfigFile, EnvironmentConfig } from './store.js';

/** Global options as parsed from the command line (undefined = not given); one per row of SETTINGS with a flag. */
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

export type { Source };

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
   * undefined: get-table and sync adapt them to the server (table/paging/concurrency.ts).
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
  /** How long a dead run's place in the licence budget stays taken (ms; renewed while the run lives). */
  licenceLeaseMs: number;
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
  /** get-table encodes straight from the page bytes (LEGACY_TRANSCODE=0: JSON.parse each page; the same output). */
  transcode: boolean;
  /** watch --webhook's signing secret (LEGACY_WEBHOOK_SECRET only; never shown). */
  webhookSecret?: string;
  /** The first wait between webhook attempts, in ms. */
  webhookBackoffMs: number;
  /** What set each setting: `--timeout`, `LEGACY_TIMEOUT`, `environments.live.timeout`, `defaults.timeout`, `default`. */
  origins: Partial<Record<SettingName, string>>;
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

type Env = Record<string, string | undefined>;

/** What a setting is resolved from: the flags, the process environment, the config and the environment chosen. */
interface Inputs {
  opts: GlobalOptions;
  env: Env;
  config?: ConfigFile;
  envName?: string;
}

/** A setting's value, where it came from, and what set it (`--timeout`, `LEGACY_TIMEOUT`, `defaults.timeout`). */
export interface Resolved<T> {
  value: T;
  source: Source;
  origin: string;
}

const longFlag = (flags: string) => /--[\w-]+/.exec(flags)?.[0] ?? flags;

function fromText<T>(d: SettingDefinition<T>, raw: string, source: 'flag' | 'env', origin: string): Resolved<T> {
  const parsed = d.type.fromText(raw);
  if ('value' in parsed) return { value: parsed.value, source, origin };
  const message = saying(origin, problemToShow(d, parsed.problem));
  throw source === 'flag' ? new UsageError(message) : new ConfigError(message);
}

/** The value at a dotted key (`sync.db`) of a config object. */
function at(object: object | undefined, key: string): unknown {
  let value: unknown = object;
  for (const part of key.split('.')) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  return value;
}

const given = (value: unknown) => value !== undefined && value !== null && value !== '';

/**
 * One setting by its row in SETTINGS: the flag, then the variable, then the environment's config
 * entry, then the config's `defaults`, then the row's default; undefined when none has it. Text
 * from a flag or a variable is parsed by the row's type: a bad flag is a usage error (64), a bad
 * variable a configuration error (78). Config values were checked when the file was read.
 */
export function resolveSetting<K extends SettingName>(name: K, inputs: Inputs): Resolved<SettingValue<K>> | undefined {
  const d = SETTINGS[name] as SettingDefinition<SettingValue<K>>;
  if (d.flag) {
    const flag = (inputs.opts as Record<string, unknown>)[name];
    // A --no- switch is given when false (commander sets it true otherwise); a counter when above 0
    // (commander starts it at 0); a value, even an empty one, is parsed (`--timeout ''` is exit 64).
    const negated = /(^|\s)--no-/.test(d.flag);
    if (typeof flag === 'string') return fromText(d, flag, 'flag', longFlag(d.flag));
    const set = negated ? flag === false : d.counted ? typeof flag === 'number' && flag > 0 : flag !== undefined && flag !== false;
    if (set) return { value: flag as SettingValue<K>, source: 'flag', origin: longFlag(d.flag) };
  }
  if (d.env && given(inputs.env[d.env])) return fromText(d, inputs.env[d.env]!, 'env', d.env);
  const { config, envName } = inputs;
  if (config && d.config) {
    const key = d.configKey ?? name;
    if (d.config === 'top') {
      const value = at(config, key);
      if (given(value)) return { value: value as SettingValue<K>, source: 'config', origin: key };
    } else {
      const envConfig = envName !== undefined && Object.hasOwn(config.environments, envName) ? config.environments[envName] : undefined;
      const value = at(envConfig, key) as SettingValue<K> | undefined;
      if (given(value)) return { value: d.type.fromConfig ? d.type.fromConfig(value!) : value!, source: 'config', origin: `environments.${envName}.${key}` };
      const fallback = d.config === 'both' ? (at(config.defaults, key) as SettingValue<K> | undefined) : undefined;
      if (given(fallback)) return { value: d.type.fromConfig ? d.type.fromConfig(fallback!) : fallback!, source: 'config', origin: `defaults.${key}` };
    }
  }
  if (d.default !== undefined) {
    return { value: typeof d.default === 'function' ? (d.default as () => SettingValue<K>)() : d.default, source: 'default', origin: 'default' };
  }
  return undefined;
}

/** A setting that has a default (so always a value). */
function settingValue<K extends SettingName>(name: K, inputs: Inputs): SettingValue<K> {
  return resolveSetting(name, inputs)!.value;
}

/** Directories come from flags or environment only (they say where the config file is). */
export function resolveDirs(opts: GlobalOptions, env: Env): { configDir: string; dataDir: string } {
  return {
    configDir: resolveSetting('configDir', { opts, env })?.value ?? defaultConfigDir(),
    dataDir: resolveSetting('dataDir', { opts, env })?.value ?? defaultDataDir(),
  };
}

/** --log-level, else -q, -v/-vv, --debug, else LEGACY_LOG_LEVEL, else warn; and what set it. */
function logLevelOf(opts: GlobalOptions, env: Env): Resolved<LogLevel> {
  const flag = (value: LogLevel, origin: string): Resolved<LogLevel> => ({ value, source: 'flag', origin });
  if (opts.logLevel !== undefined) return resolveSetting('logLevel', { opts, env })!;
  if (opts.quiet) return flag('error', '--quiet');
  if (opts.verbose && opts.verbose >= 2) return flag('debug', '-vv');
  if (opts.verbose === 1) return flag('info', '--verbose');
  if (opts.debug) return flag('debug', '--debug');
  return resolveSetting('logLevel', { opts, env })!;
}

export function resolveLogLevel(opts: GlobalOptions, env: Env): LogLevel {
  return logLevelOf(opts, env).value;
}

export function resolveLogFormat(opts: GlobalOptions, env: Env): 'text' | 'json' {
  return settingValue('logFormat', { opts, env });
}

/** Whether a failure is shown with its stack: --debug or LEGACY_DEBUG (a bad value counts as off here). */
export function debugWanted(opts: GlobalOptions, env: Env): boolean {
  try {
    return settingValue('debug', { opts, env });
  } catch {
    return false;
  }
}

/** Per-environment variable names: LEGACY_<ENV>_USERNAME with the name upper-cased and '-' → '_'. */
export function envVarFor(envName: string, suffix: string): string {
  return `LEGACY_${envName.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${suffix}`;
}

/** The environment's name and where it came from: --env, LEGACY_ENV, the config's defaultEnv, "live". */
export function resolveEnvName(opts: GlobalOptions, env: Env, config: Pick<ConfigFile, 'defaultEnv'> | undefined): [string, Source] {
  const r = resolveSetting('env', { opts, env, config: config && { environments: {}, ...config } });
  return [r!.value, r!.source];
}

/** The metrics file: --metrics-file, LEGACY_METRICS_FILE, the environment's metricsFile, the defaults'. */
export function resolveMetricsFile(opts: GlobalOptions, env: Env, config: ConfigFile | undefined, envName: string): string | undefined {
  return resolveSetting('metricsFile', { opts, env, config, envName })?.value;
}

export function resolveSettings(opts: GlobalOptions, env: Env, config: ConfigFile, passwordFromStdin?: string): Settings {
  const { configDir, dataDir } = resolveDirs(opts, env);
  const chosen = resolveSetting('env', { opts, env, config })!;
  const { value: envName, source: envSource } = chosen;
  const envConfig = Object.hasOwn(config.environments, envName) ? config.environments[envName] : undefined;
  const inputs: Inputs = { opts, env, config, envName };
  const logLevel = logLevelOf(opts, env);
  // What set each setting, for `env current`.
  const origins: Partial<Record<SettingName, string>> = {
    env: chosen.origin,
    configDir: resolveSetting('configDir', inputs)?.origin ?? 'default',
    dataDir: resolveSetting('dataDir', inputs)?.origin ?? 'default',
    logLevel: logLevel.origin,
  };
  const get = <K extends SettingName>(name: K): Resolved<SettingValue<K>> | undefined => {
    const r = resolveSetting(name, inputs);
    if (r) origins[name] = r.origin;
    return r;
  };
  const value = <K extends SettingName>(name: K): SettingValue<K> => get(name)!.value;
  const base = get('baseUrl');
  const store = get('sessionStore')!;
  const syncDb = get('syncDb');
  const coolDownMs = value('breakerCoolDownMs');

  // Credentials never come from argv: environment variables, --password-stdin, or the config file.
  const username = env[envVarFor(envName, 'USERNAME')] || get('username')?.value;
  const password = passwordFromStdin ?? (env[envVarFor(envName, 'PASSWORD')] || get('password')?.value);

  return {
    envName,
    envSource,
    envConfig,
    baseUrl: base?.value,
    baseUrlSource: base?.source,
    configDir,
    dataDir,
    timeout: value('timeout'),
    retries: value('retries'),
    pageSize: value('pageSize'),
    concurrency: get('concurrency')?.value,
    sessionName: value('session'),
    sessionIdleMinutes: value('sessionIdleMinutes'),
    licenceWaitMs: value('licenceWaitMs'),
    licenceRetries: value('licenceRetries'),
    insecure: value('insecure'),
    sessionStore: store.value,
    sessionStoreSource: store.source,
    sessionStoreStrict: value('sessionStoreStrict'),
    maxSessions: get('maxSessions')?.value,
    licenceLeaseMs: value('licenceLeaseMs'),
    logLevel: logLevel.value,
    logFile: get('logFile')?.value,
    logFormat: resolveLogFormat(opts, env),
    debug: value('debug'),
    credentials: username && password ? { username, password } : undefined,
    metricsFile: get('metricsFile')?.value,
    syncBusyTimeoutMs: value('syncBusyTimeoutMs'),
    syncDb: { db: syncDb?.value, what: syncDb?.origin ?? `environments.${envName}.sync.db` },
    authentifyBody: get('authentifyBody')?.value,
    breaker: {
      enabled: value('breaker'),
      failures: value('breakerFailures'),
      windowMs: value('breakerWindowMs'),
      coolDownMs,
      maxCoolDownMs: Math.max(coolDownMs, value('breakerMaxCoolDownMs')),
    },
    transcode: value('transcode'),
    webhookSecret: get('webhookSecret')?.value,
    webhookBackoffMs: value('webhookBackoffMs'),
    origins,
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
