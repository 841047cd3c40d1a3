/**
 * The configuration file: `<config dir>/config.json` (0600, dir 0700).
 *
 * Reads never modify the file. A file that is not valid JSON or fails validation is a
 * ConfigError (exit 78) naming the path and the problem, and is never overwritten.
 * Writes take the config lock, re-read, apply the change and replace the file atomically,
 * so two processes editing the config never lose each other's change.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { ConfigError, cannotWriteError, noSpaceReason } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import { ensurePrivateDir, type FileErrorFactory, withLock, writeFileAtomic } from '../fs/index.js';

export interface SyncTableConfig {
  name: string;
  key?: string;
  cursor?: string[];
}

/** Settings that may be given per environment and, as fallbacks, under `defaults`. */
export interface EnvironmentSettings {
  timeout?: number;
  retries?: number;
  pageSize?: number;
  concurrency?: number;
  /** Idle minutes after which the server forgets a session (4D default 60). */
  sessionIdleMinutes?: number;
  /** How long to keep retrying while the server's licences are all in use (HTTP 402). */
  licenceWaitMs?: number;
  licenceRetries?: number;
  /** Skip TLS certificate verification for this environment. */
  insecure?: boolean;
  /** Where sessions are kept: 'file' (default, sessions.json) or redis://[user:password@]host:port/db. */
  sessionStore?: string;
  /** With a Redis store: fail (exit 69) when Redis is down instead of falling back to the file. */
  sessionStoreStrict?: boolean;
  /** Licence budget: at most this many server sessions for the server, across every host (Redis store). */
  maxSessions?: number;
  /** Prometheus textfile the run's metrics are merged into (an absolute path). */
  metricsFile?: string;
  /** How long a sync command waits for a sync database another run is writing (ms) before exit 75. */
  syncBusyTimeoutMs?: number;
  /**
   * Force login (4D v20 R6+): the parameters sent to the application's `authentify()`, a JSON value
   * with `{user}` and `{password}` placeholders (default `[{"name":"{user}","password":"{password}"}]`).
   */
  authentifyBody?: unknown;
  /** The circuit breaker shared by every run of the environment (session/breaker.ts): false turns it off. */
  breaker?: boolean;
  /** Unavailable runs within breakerWindowMs that open the breaker. */
  breakerFailures?: number;
  breakerWindowMs?: number;
  /** How long an open breaker refuses runs before one run probes the server. */
  breakerCoolDownMs?: number;
  /** The cool-down doubles after each failed probe, up to this. */
  breakerMaxCoolDownMs?: number;
}

export interface EnvironmentConfig extends EnvironmentSettings {
  baseUrl: string;
  /** Credentials for servers that require $directory/login. Prefer environment variables. */
  username?: string;
  password?: string;
  /** Tables to sync, and where to (an absolute SQLite path or a postgres:// URL; default <data dir>/<env>.sqlite). */
  sync?: { tables?: Array<string | SyncTableConfig>; db?: string };
}

export interface ConfigFile {
  defaultEnv?: string;
  defaults?: EnvironmentSettings;
  environments: Record<string, EnvironmentConfig>;
}

export const CONFIG_FILE_NAME = 'config.json';

export function configPath(configDir: string): string {
  return join(configDir, CONFIG_FILE_NAME);
}

export function emptyConfig(): ConfigFile {
  return { environments: {} };
}

const ENV_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function validateEnvName(name: string): string | undefined {
  return ENV_NAME.test(name) ? undefined : `environment name '${name}' must be letters, digits, '-' or '_' (at most 64)`;
}

/** A URL for messages: any password in it replaced by ***. */
/**
 * A URL fit to print: the password masked, also a `?password=` and one in a URL too broken to
 * parse (a password may hold '@' or '/').
 */
export function maskUrl(raw: string): string {
  return raw
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*:).*@/i, '$1***@')
    .replace(/([?&]password=)[^&#]*/gi, '$1***')
    .replace(/(\/\/[^/:@\s]*):[^@/\s]*@/g, '$1:***@');
}

/** Parse and check a base URL: http(s), host, optional port, no query. Returns it without a trailing slash. */
export function normaliseBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`'${maskUrl(raw)}' is not a valid URL`, { hint: 'use a URL like http://127.0.0.1:8080' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`'${maskUrl(raw)}' must use http or https`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`'${maskUrl(raw)}' must not contain credentials, a query or a fragment`, {
      hint: 'give credentials with LEGACY_USERNAME/LEGACY_PASSWORD or --password-stdin, never in the URL',
    });
  }
  let path = url.pathname.replace(/\/+$/, '');
  // The client adds /rest itself; accept a URL that already ends with it.
  if (/\/rest$/i.test(path)) path = path.slice(0, -5);
  return `${url.protocol}//${url.host}${path}`;
}

const SETTING_CHECKS: Record<keyof EnvironmentSettings, (v: unknown) => boolean> = {
  timeout: (v) => Number.isInteger(v) && (v as number) > 0,
  retries: (v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 100,
  pageSize: (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 100_000,
  concurrency: (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 32,
  sessionIdleMinutes: (v) => typeof v === 'number' && v > 0,
  licenceWaitMs: (v) => Number.isInteger(v) && (v as number) >= 0,
  licenceRetries: (v) => Number.isInteger(v) && (v as number) >= 0,
  insecure: (v) => typeof v === 'boolean',
  sessionStore: (v) => typeof v === 'string' && sessionStoreProblem(v) === undefined,
  sessionStoreStrict: (v) => typeof v === 'boolean',
  maxSessions: (v) => Number.isInteger(v) && (v as number) >= 1,
  metricsFile: (v) => typeof v === 'string' && isAbsolute(v),
  syncBusyTimeoutMs: (v) => Number.isInteger(v) && (v as number) >= 0,
  authentifyBody: (v) => authentifyBodyProblem(v) === undefined,
  breaker: (v) => typeof v === 'boolean',
  breakerFailures: (v) => Number.isInteger(v) && (v as number) >= 1,
  breakerWindowMs: (v) => Number.isInteger(v) && (v as number) >= 1,
  breakerCoolDownMs: (v) => Number.isInteger(v) && (v as number) >= 1,
  breakerMaxCoolDownMs: (v) => Number.isInteger(v) && (v as number) >= 1,
};

/** What is wrong with an `authentify()` body template, if anything: it must be JSON that places the password. */
export function authentifyBodyProblem(value: unknown): string | undefined {
  if (value === null || (typeof value !== 'object' && typeof value !== 'string')) return 'must be a JSON array (or object) of parameters';
  if (!JSON.stringify(value).includes('{password}')) return 'must contain the placeholder {password} (and usually {user})';
  return undefined;
}

/** What is wrong with a session store setting, if anything: 'file' or a redis:// / rediss:// URL. */
export function sessionStoreProblem(raw: string): string | undefined {
  if (raw === 'file') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `'${maskUrl(raw)}' is neither 'file' nor a URL`;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `'${maskUrl(raw)}' must be 'file' or a redis:// or rediss:// URL`;
  if (!url.hostname) return `'${maskUrl(raw)}' has no host`;
  if (url.pathname.length > 1 && !/^\/\d+$/.test(url.pathname)) return `'${maskUrl(raw)}': the path must be a database number (redis://host:port/0)`;
  return undefined;
}

/**
 * Keys that mean nothing here are refused, never ignored: a misspelt setting (`pagesize` for
 * `pageSize`) would otherwise leave the run on the default without a word.
 */
function checkKeys(where: string, value: Record<string, unknown>, known: readonly string[], problems: string[]): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    // A key that differs only in case has one answer (keys are case-sensitive).
    const sameLetters = known.filter((k) => k.toLowerCase() === key.toLowerCase());
    const hint = didYouMean(key, sameLetters.length ? sameLetters : known);
    problems.push(`unknown key ${where ? `${where}.` : ''}${key}${hint ? ` (${hint})` : ''}`);
  }
}

const SETTING_KEYS = Object.keys(SETTING_CHECKS);
const ENVIRONMENT_KEYS = [...SETTING_KEYS, 'baseUrl', 'username', 'password', 'sync'];

function checkSettings(where: string, value: Record<string, unknown>, problems: string[]): void {
  for (const [key, check] of Object.entries(SETTING_CHECKS)) {
    if (value[key] !== undefined && !check(value[key])) problems.push(`${where}.${key} has an invalid value ${JSON.stringify(value[key])}`);
  }
}

/** Validate a parsed config; returns the list of problems (empty = valid). */
export function validateConfig(data: unknown): string[] {
  const problems: string[] = [];
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return ['the top level must be a JSON object'];
  const obj = data as Record<string, unknown>;
  checkKeys('', obj, ['defaultEnv', 'defaults', 'environments'], problems);
  if (obj.defaultEnv !== undefined && typeof obj.defaultEnv !== 'string') problems.push('defaultEnv must be a string');
  if (obj.defaults !== undefined) {
    if (typeof obj.defaults !== 'object' || obj.defaults === null || Array.isArray(obj.defaults)) problems.push('defaults must be an object');
    else {
      checkKeys('defaults', obj.defaults as Record<string, unknown>, SETTING_KEYS, problems);
      checkSettings('defaults', obj.defaults as Record<string, unknown>, problems);
    }
  }
  if (obj.environments !== undefined) {
    if (typeof obj.environments !== 'object' || obj.environments === null || Array.isArray(obj.environments)) {
      problems.push('environments must be an object of name → {baseUrl, ...}');
    } else {
      for (const [name, env] of Object.entries(obj.environments as Record<string, unknown>)) {
        const where = `environments.${name}`;
        const nameProblem = validateEnvName(name);
        if (nameProblem) problems.push(nameProblem);
        if (env === null || typeof env !== 'object' || Array.isArray(env)) {
          problems.push(`${where} must be an object`);
          continue;
        }
        const e = env as Record<string, unknown>;
        checkKeys(where, e, ENVIRONMENT_KEYS, problems);
        if (typeof e.baseUrl !== 'string') problems.push(`${where}.baseUrl is missing or not a string`);
        else {
          try {
            normaliseBaseUrl(e.baseUrl);
          } catch (error) {
            problems.push(`${where}.baseUrl: ${(error as Error).message}`);
          }
        }
        for (const k of ['username', 'password'] as const) {
          if (e[k] !== undefined && typeof e[k] !== 'string') problems.push(`${where}.${k} must be a string`);
        }
        checkSettings(where, e, problems);
        if (e.sync !== undefined) {
          const tables = (e.sync as { tables?: unknown })?.tables;
          const db = (e.sync as { db?: unknown })?.db;
          if (db !== undefined && (typeof db !== 'string' || !(/^postgres(ql)?:\/\//i.test(db) || isAbsolute(db)))) {
            problems.push(`${where}.sync.db must be an absolute path or a postgres:// URL`);
          }
          if (typeof e.sync !== 'object' || e.sync === null || (tables !== undefined && !Array.isArray(tables))) {
            problems.push(`${where}.sync must be {"tables": [...], "db"?: ...}`);
          } else {
            checkKeys(`${where}.sync`, e.sync as Record<string, unknown>, ['tables', 'db'], problems);
            (tables ?? []).forEach((t: unknown, i: number) => {
              const ok =
                typeof t === 'string' ||
                (t !== null &&
                  typeof t === 'object' &&
                  typeof (t as SyncTableConfig).name === 'string' &&
                  ((t as SyncTableConfig).key === undefined || typeof (t as SyncTableConfig).key === 'string') &&
                  ((t as SyncTableConfig).cursor === undefined ||
                    (Array.isArray((t as SyncTableConfig).cursor) && (t as SyncTableConfig).cursor!.every((c) => typeof c === 'string'))));
              if (!ok) problems.push(`${where}.sync.tables[${i}] must be a table name or {"name", "key"?, "cursor"?: [date, time]}`);
              else if (typeof t === 'object') checkKeys(`${where}.sync.tables[${i}]`, t as Record<string, unknown>, ['name', 'key', 'cursor'], problems);
            });
          }
        }
      }
    }
  }
  if (typeof obj.defaultEnv === 'string' && obj.environments && typeof obj.environments === 'object' && !(obj.defaultEnv in (obj.environments as object))) {
    problems.push(`defaultEnv '${obj.defaultEnv}' is not one of the environments`);
  }
  return problems;
}

/** Read the config; a missing file is an empty config. Invalid → ConfigError (78), file untouched. */
export async function loadConfig(configDir: string): Promise<ConfigFile> {
  const path = configPath(configDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return emptyConfig();
    throw new ConfigError(`cannot read config file ${path}: ${code ?? String(error)}`, {
      hint: 'fix its permissions (it should be readable by you only, mode 0600)',
    });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(error as Error).message}`, {
      hint: 'fix or remove the file; legacy will not overwrite it',
    });
  }
  const problems = validateConfig(data);
  if (problems.length) {
    throw new ConfigError(`config file ${path} is invalid: ${problems.join('; ')}`, {
      hint: 'fix the file by hand; legacy will not overwrite it',
    });
  }
  const config = data as ConfigFile;
  config.environments ??= {};
  return config;
}

/**
 * The files of the config directory (config, sessions): one that cannot be written is a
 * configuration matter (78, choose another --config-dir), unless the disk is full (73).
 */
export const configFileError: FileErrorFactory = (what, cause, verb) =>
  noSpaceReason(cause)
    ? cannotWriteError(cause, what, verb)
    : new ConfigError(`cannot ${verb} ${what}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, {
        hint: 'fix the permissions of the directory, or choose another one with --config-dir',
        cause,
      });

/**
 * Change the config safely: lock, re-read (so a concurrent edit is not lost), apply `mutate`,
 * validate, write atomically. Returns the new config.
 */
export async function updateConfig(configDir: string, mutate: (config: ConfigFile) => void): Promise<ConfigFile> {
  ensurePrivateDir(configDir, 'config directory', configFileError);
  const path = configPath(configDir);
  return withLock(
    path,
    async () => {
      const config = await loadConfig(configDir);
      mutate(config);
      const problems = validateConfig(config);
      if (problems.length) throw new ConfigError(`refusing to write an invalid config: ${problems.join('; ')}`);
      await writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`, 'config file', { error: configFileError });
      return config;
    },
    { what: `config file ${path}`, error: configFileError },
  );
}
