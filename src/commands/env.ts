/** `legacy env list|add|remove|default`: named servers in the config file. */
import type { SettingName } from '../config/definitions.js';
import { type ConfigFile, updateConfig } from '../config/store.js';
import { maskUrl, normaliseBaseUrl, validateEnvName } from '../config/values.js';
import { UsageError } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import type { CommandContext } from '../cli/context.js';
import { write, writeJson } from '../cli/io.js';
import { command, JSON_OPTION } from '../cli/spec.js';
import { describePagesInFlight } from '../table/paging/concurrency.js';

export async function runList(ctx: CommandContext, _args: string[], opts: { json?: boolean }): Promise<number> {
  const { config, settings } = ctx;
  const rows = Object.entries(config.environments).map(([name, env]) => ({
    name,
    baseUrl: env.baseUrl,
    default: name === config.defaultEnv,
    selected: name === settings.envName,
  }));
  if (opts.json) {
    await writeJson(ctx.io, { defaultEnv: config.defaultEnv ?? null, environments: rows });
    return 0;
  }
  if (rows.length === 0) {
    ctx.logger.warn("no environments configured; add one with 'legacy env add <name> <url> --default'");
    return 0;
  }
  const width = Math.max(...rows.map((r) => r.name.length));
  const lines = rows.map((r) => `${r.default ? '*' : ' '} ${r.name.padEnd(width)}  ${r.baseUrl}`);
  await write(ctx.io.stdout, `${lines.join('\n')}\n`);
  return 0;
}

function checkName(name: string): void {
  const problem = validateEnvName(name);
  if (problem) throw new UsageError(problem);
}

export async function runAdd(ctx: CommandContext, args: string[], opts: { default?: boolean; force?: boolean }): Promise<number> {
  const [name, url] = args as [string, string];
  checkName(name);
  let baseUrl: string;
  try {
    baseUrl = normaliseBaseUrl(url);
  } catch (error) {
    throw new UsageError((error as Error).message, { hint: 'use a URL like http://127.0.0.1:8080' });
  }
  let previous: string | undefined;
  let madeDefault = false;
  await updateConfig(ctx.settings.configDir, (config) => {
    const existing = Object.hasOwn(config.environments, name) ? config.environments[name] : undefined;
    previous = existing?.baseUrl;
    // Another URL under a name scripts and cron jobs already use is a change they did not ask for.
    if (existing && existing.baseUrl !== baseUrl && !opts.force) {
      throw new UsageError(`environment ${name} already exists (${existing.baseUrl}); not replaced`, {
        hint: `add --force to point it at ${baseUrl}, keeping its other settings; or choose another name`,
      });
    }
    config.environments[name] = { ...existing, baseUrl };
    if (opts.default || !config.defaultEnv) {
      madeDefault = config.defaultEnv !== name;
      config.defaultEnv = name;
    }
  });
  const what =
    previous === undefined
      ? `added environment ${name} → ${baseUrl}`
      : previous === baseUrl
        ? `environment ${name} is already ${baseUrl}`
        : `replaced environment ${name}: ${previous} → ${baseUrl} (its other settings kept)`;
  done(ctx, `${what}${madeDefault ? '; it is now the default' : ''}`);
  return 0;
}

/** A change to the config confirmed in one line on stderr (stdout is for data), unless --quiet. */
function done(ctx: CommandContext, line: string): void {
  if (ctx.settings.logLevel !== 'error') ctx.io.stderr.write(`${line}\n`);
}

/** Fail with a suggestion when `name` is not a configured environment. */
function requireEnvironment(config: ConfigFile, name: string, hint?: string): void {
  if (Object.hasOwn(config.environments, name)) return;
  const close = didYouMean(name, Object.keys(config.environments));
  throw new UsageError(`no environment named '${name}'${close ? ` (${close})` : ''}`, hint ? { hint } : {});
}

export async function runRemove(ctx: CommandContext, args: string[]): Promise<number> {
  const [name] = args as [string];
  await updateConfig(ctx.settings.configDir, (config) => {
    requireEnvironment(config, name);
    delete config.environments[name];
    if (config.defaultEnv === name) delete config.defaultEnv;
  });
  done(ctx, `removed environment ${name}`);
  return 0;
}

export async function runDefault(ctx: CommandContext, args: string[]): Promise<number> {
  const [name] = args as [string];
  await updateConfig(ctx.settings.configDir, (config) => {
    requireEnvironment(config, name, `add it first with 'legacy env add ${name} <url>'`);
    config.defaultEnv = name;
  });
  done(ctx, `${name} is now the default environment`);
  return 0;
}

/** The settings behind `env current`'s breaker object. */
const BREAKER_ROWS: Record<string, SettingName> = {
  enabled: 'breaker',
  failures: 'breakerFailures',
  windowMs: 'breakerWindowMs',
  coolDownMs: 'breakerCoolDownMs',
  maxCoolDownMs: 'breakerMaxCoolDownMs',
};

export async function runCurrent(ctx: CommandContext, _args: string[], opts: { json?: boolean }): Promise<number> {
  const s = ctx.settings;
  const view = {
    env: s.envName,
    envSource: s.envSource,
    baseUrl: s.baseUrl ?? null,
    baseUrlSource: s.baseUrlSource ?? null,
    session: s.sessionName,
    configDir: s.configDir,
    dataDir: s.dataDir,
    timeout: s.timeout,
    retries: s.retries,
    pageSize: s.pageSize,
    // null: not pinned (get-table and sync adapt their pages in flight).
    concurrency: s.concurrency ?? null,
    logLevel: s.logLevel,
    sessionStore: maskUrl(s.sessionStore),
    sessionStoreSource: s.sessionStoreSource,
    sessionStoreStrict: s.sessionStoreStrict,
    maxSessions: s.maxSessions ?? null,
    metricsFile: s.metricsFile ?? null,
    breaker: s.breaker,
    credentials: s.credentials ? { username: s.credentials.username, password: '***' } : null,
  };
  // What set each value shown (`--timeout`, `LEGACY_TIMEOUT`, `environments.live.timeout`, `defaults.timeout`, `default`).
  // The fields are named as the settings' rows (config/definitions.ts).
  const origins: Record<string, string> = {};
  for (const k of Object.keys(view)) {
    const origin = s.origins[k as SettingName];
    if (origin) origins[k] = origin;
  }
  // The breaker is five settings: what set those that are not their default.
  const breakerParts = Object.entries(BREAKER_ROWS).flatMap(([part, row]) => {
    const origin = s.origins[row];
    return origin && origin !== 'default' ? [`${part}: ${origin}`] : [];
  });
  origins.breaker = breakerParts.length ? breakerParts.join(', ') : 'default';
  if (opts.json) {
    await writeJson(ctx.io, { ...view, origins });
    return 0;
  }
  const shown = { ...view, concurrency: describePagesInFlight(s.concurrency) };
  const lines = Object.entries(shown).map(([k, v]) => {
    const text = `${k.padEnd(18)} ${v === null ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`;
    // The pages in flight say themselves what pins them.
    return origins[k] && origins[k] !== 'default' && k !== 'concurrency' ? `${text}  (${origins[k]})` : text;
  });
  await write(ctx.io.stdout, `${lines.join('\n')}\n`);
  return 0;
}

export const spec = command({
  name: 'env',
  description: 'manage environments (named servers) in the config file',
  subcommands: [
    command({ name: 'list', description: 'list environments', options: [JSON_OPTION], run: runList }),
    command({
      name: 'add <name> <url>',
      description: 'add an environment (--force to point an existing one at another URL)',
      options: [
        { flags: '--default', description: 'make it the default environment' },
        { flags: '--force', description: 'replace the URL of an existing environment (its other settings are kept)' },
      ],
      run: runAdd,
    }),
    command({ name: 'current', description: 'show the effective settings of this run and where each came from', options: [JSON_OPTION], run: runCurrent }),
    command({ name: 'remove <name>', alias: 'rm', complete: ['environments'], description: 'remove an environment', run: runRemove }),
    command({ name: 'default <name>', complete: ['environments'], description: 'set the default environment', run: runDefault }),
  ],
});
