/** `legacy env list|add|remove|default`: named servers in the config file. */
import { maskUrl, normaliseBaseUrl, updateConfig, validateEnvName, type ConfigFile } from '../config/store.js';
import { UsageError } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { command, JSON_OPTION } from '../cli/spec.js';

export async function runList(ctx: CommandContext, _args: string[], opts: { json?: boolean }): Promise<number> {
  const { config, settings } = ctx;
  const rows = Object.entries(config.environments).map(([name, env]) => ({
    name,
    baseUrl: env.baseUrl,
    default: name === config.defaultEnv,
    selected: name === settings.envName,
  }));
  if (opts.json) {
    await write(ctx.io.stdout, `${JSON.stringify({ defaultEnv: config.defaultEnv ?? null, environments: rows }, null, 2)}\n`);
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

export async function runAdd(ctx: CommandContext, args: string[], opts: { default?: boolean }): Promise<number> {
  const [name, url] = args as [string, string];
  checkName(name);
  let baseUrl: string;
  try {
    baseUrl = normaliseBaseUrl(url);
  } catch (error) {
    throw new UsageError((error as Error).message, { hint: 'use a URL like http://127.0.0.1:8080' });
  }
  let replaced = false;
  await updateConfig(ctx.settings.configDir, (config) => {
    replaced = Object.hasOwn(config.environments, name);
    const previous = replaced ? config.environments[name] : undefined;
    config.environments[name] = { ...previous, baseUrl };
    if (opts.default || !config.defaultEnv) config.defaultEnv = name;
  });
  ctx.logger.info(`${replaced ? 'updated' : 'added'} environment ${name} → ${baseUrl}`);
  return 0;
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
  ctx.logger.info(`removed environment ${name}`);
  return 0;
}

export async function runDefault(ctx: CommandContext, args: string[]): Promise<number> {
  const [name] = args as [string];
  await updateConfig(ctx.settings.configDir, (config) => {
    requireEnvironment(config, name, `add it first with 'legacy env add ${name} <url>'`);
    config.defaultEnv = name;
  });
  return 0;
}

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
    concurrency: s.concurrency,
    logLevel: s.logLevel,
    sessionStore: maskUrl(s.sessionStore),
    sessionStoreSource: s.sessionStoreSource,
    sessionStoreStrict: s.sessionStoreStrict,
    maxSessions: s.maxSessions ?? null,
    metricsFile: s.metricsFile ?? null,
    credentials: s.credentials ? { username: s.credentials.username, password: '***' } : null,
  };
  if (opts.json) {
    await write(ctx.io.stdout, `${JSON.stringify(view, null, 2)}\n`);
    return 0;
  }
  const lines = Object.entries(view).map(([k, v]) => `${k.padEnd(18)} ${v === null ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
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
      description: 'add or replace an environment',
      options: [{ flags: '--default', description: 'make it the default environment' }],
      run: runAdd,
    }),
    command({ name: 'current', description: 'show the effective settings of this run and where each came from', options: [JSON_OPTION], run: runCurrent }),
    command({ name: 'remove <name>', alias: 'rm', complete: ['environments'], description: 'remove an environment', run: runRemove }),
    command({ name: 'default <name>', complete: ['environments'], description: 'set the default environment', run: runDefault }),
  ],
});
