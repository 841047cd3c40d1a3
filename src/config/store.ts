/**
 * The configuration file: `<config dir>/config.json` (0600, dir 0700).
 *
 * Reads never modify the file. A file that is not valid JSON or fails validation is a
 * ConfigError (exit 78) naming the path and the problem, and is never overwritten.
 * Writes take the config lock, re-read, apply the change and replace the file atomically,
 * so two processes editing the config never lose each other's change.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, cannotWriteError, noSpaceReason } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import { ensurePrivateDir, type FileErrorFactory, withLock, writeFileAtomic } from '../fs/index.js';
import { type EnvironmentSettings, problemToShow, SETTINGS, SHARED_CONFIG_KEYS, type SettingDefinition, type SettingName, saying } from './definitions.js';
import { validateEnvName } from './values.js';

export interface SyncTableConfig {
  name: string;
  key?: string;
  cursor?: string[];
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

/** The rows config.json may hold per environment only (beside `sync`, checked below). */
const ENVIRONMENT_ONLY_KEYS = (Object.keys(SETTINGS) as SettingName[]).filter(
  (k) => (SETTINGS[k] as SettingDefinition).config === 'environment' && !(SETTINGS[k] as SettingDefinition).configKey,
);
const ENVIRONMENT_KEYS = [...SHARED_CONFIG_KEYS, ...ENVIRONMENT_ONLY_KEYS, 'sync'];

/** Each setting `value` holds, checked by its row's type (config/definitions.ts). */
function checkSettings(where: string, value: Record<string, unknown>, keys: readonly SettingName[], problems: string[]): void {
  for (const key of keys) {
    if (value[key] === undefined) continue;
    const row = SETTINGS[key] as SettingDefinition;
    const problem = row.type.problem(value[key]);
    if (problem) problems.push(saying(`${where}.${key}`, problemToShow(row, problem)));
  }
}

/** Validate a parsed config; returns the list of problems (empty = valid). */
export function validateConfig(data: unknown): string[] {
  const problems: string[] = [];
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return ['the top level must be a JSON object'];
  const obj = data as Record<string, unknown>;
  checkKeys('', obj, ['defaultEnv', 'defaults', 'environments'], problems);
  if (obj.defaultEnv !== undefined) {
    const problem = SETTINGS.env.type.problem(obj.defaultEnv);
    if (problem) problems.push(saying('defaultEnv', problem));
  }
  if (obj.defaults !== undefined) {
    if (typeof obj.defaults !== 'object' || obj.defaults === null || Array.isArray(obj.defaults)) problems.push('defaults must be an object');
    else {
      checkKeys('defaults', obj.defaults as Record<string, unknown>, SHARED_CONFIG_KEYS, problems);
      checkSettings('defaults', obj.defaults as Record<string, unknown>, SHARED_CONFIG_KEYS, problems);
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
        if (e.baseUrl === undefined) problems.push(`${where}.baseUrl is missing`);
        checkSettings(where, e, [...SHARED_CONFIG_KEYS, ...ENVIRONMENT_ONLY_KEYS], problems);
        if (e.sync !== undefined) {
          const tables = (e.sync as { tables?: unknown })?.tables;
          const db = (e.sync as { db?: unknown })?.db;
          const dbProblem = db === undefined ? undefined : SETTINGS.syncDb.type.problem(db);
          if (dbProblem) problems.push(saying(`${where}.sync.db`, dbProblem));
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
