/** `legacy doctor`: one line per check, for ops and bug reports. Exits non-zero when something is wrong. */
import type { CommandContext } from '../cli/context.js';
import { write, writeJson } from '../cli/io.js';
import { configPath } from '../config/store.js';
import { ExitCode, exitCodeFor, formatErrorLine } from '../errors/index.js';
import { redactString } from '../log/index.js';
import type { ProbeResult } from '../rest/dialect.js';
import { describeBreaker } from '../session/breaker.js';
import { generationOf } from '../session/cookies.js';
import { command, JSON_OPTION } from '../cli/spec.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  exitCode?: number;
}

const yesNo = (v: boolean | null) => (v === null ? 'unknown' : v ? 'yes' : 'no');

/** One line per field of the probe (the man page, DOCTOR PROBE, explains each). */
export function probeLines(p: ProbeResult): Array<[string, string]> {
  const versions = Object.entries(p.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    ['probed', `${p.probedAt} on table ${p.table ?? '(none with rows)'}${p.identity ? `, server ${p.identity.slice(0, 8)}…` : ''}`],
    [
      'url decoding',
      p.urlDecoding === 'whole' ? 'whole URL first, then split (4D source)' : p.urlDecoding === 'split' ? 'split first, then each part' : 'unknown',
    ],
    ['cookies', p.cookies.length ? p.cookies.join(', ') : 'none'],
    ['generation', p.generation ?? generationOf(p.cookies)],
    ['login required', yesNo(p.loginRequired)],
    ['login mode', p.loginMode ? LOGIN_MODE[p.loginMode] : 'unknown'],
    ['$params', p.paramsHonoured === null ? 'unknown' : p.paramsHonoured ? 'honoured' : 'NOT honoured: filters are unusable'],
    ['entity sets', yesNo(p.entitySets)],
    [
      '$savedfilter',
      p.savedFilterRecreation === 'with-params'
        ? 'recreates a lost set with $params'
        : p.savedFilterRecreation === 'without-params'
          ? 'recreates a lost set WITHOUT $params (exports verify and restart)'
          : p.savedFilterRecreation,
    ],
    ['strict dates', p.strictDateCompare === null ? 'unknown' : p.strictDateCompare ? '< and > on dates accepted' : '< and > on dates rejected'],
    ['session life', p.lifeTime ? `${p.lifeTime.seconds} s (lifeTime ${p.lifeTime.value} in ${p.lifeTime.unit})` : 'unknown'],
    ['versions', versions || 'none reported'],
  ];
}

type Client = Awaited<ReturnType<CommandContext['client']>>;

/** The configuration, the environment and where sessions are kept. */
async function localChecks(ctx: CommandContext, checks: Check[]): Promise<Client | undefined> {
  const { settings } = ctx;
  checks.push({ name: 'config', ok: true, detail: `${configPath(settings.configDir)} (${Object.keys(ctx.config.environments).length} environment(s))` });
  try {
    const client = await ctx.client();
    checks.push({ name: 'environment', ok: true, detail: `${settings.envName} → ${client.baseUrl} (session name ${settings.sessionName})` });
    const store = client.store;
    const fellBack = settings.sessionStore !== 'file' && store.kind === 'file';
    checks.push({
      name: 'session store',
      ok: !fellBack,
      detail: fellBack
        ? `Redis is unreachable; runs fall back to ${store.location} (see the warning above)`
        : `${store.kind} ${store.location}${store.maxSessions ? ` (licence budget ${store.maxSessions})` : ''}`,
      exitCode: fellBack ? ExitCode.unavailable : undefined,
    });
    return client;
  } catch (error) {
    checks.push({ name: 'environment', ok: false, detail: redactString(formatErrorLine(error)), exitCode: exitCodeFor(error) });
    return undefined;
  }
}

const SESSION_OUTCOME = {
  created: 'created a new one',
  replaced: 'stored one had expired; replaced',
  'from-other-process': 'another process had just created it',
  reused: 'stored one reused',
  none: 'none',
} as const;

const LOGIN_MODE = {
  open: 'none needed (any request opens a session)',
  directory: 'REST login ($directory/login)',
  authentify: "force login (the application's authentify())",
} as const;

/**
 * Reachability and the REST prefix ($catalog, which every generation serves, even to a guest),
 * then the session and the server's licences ($info, which needs a licensed session: under force
 * login this is where the run logs in). A refused $info is a permission matter (admin only when
 * passwords are on), never "unavailable": the session is then proved by reading one row.
 */
async function serverChecks(client: Client, checks: Check[]): Promise<void> {
  try {
    const catalog = await client.send({ method: 'GET', url: client.url({ kind: 'catalog' }), idempotent: true });
    checks.push({ name: 'reachable', ok: true, detail: `HTTP ${catalog.status} in ${catalog.ms} ms` });
    const tables = (catalog.json as { dataClasses?: Array<{ name?: string }> } | undefined)?.dataClasses;
    const restOk = catalog.status === 200 && Array.isArray(tables);
    checks.push({
      name: 'rest prefix',
      ok: restOk,
      detail: restOk ? `${client.baseUrl}/rest/$catalog answers like 4D (${tables.length} table(s))` : `unexpected answer (HTTP ${catalog.status})`,
      exitCode: restOk ? undefined : ExitCode.unavailable,
    });
    if (!restOk) return;
    const report = await client.confirmSession('server info');
    const waits = report.licenceWaits;
    const licences: Check = report.serverSessions
      ? {
          name: 'licences',
          ok: true,
          detail: `${report.serverSessions.length} live session(s) on the server${waits ? `; had to wait ${waits}x for a free licence` : ''}`,
        }
      : {
          name: 'licences',
          ok: true,
          detail: `not allowed to read $info (HTTP ${report.infoRefused}; admin only when passwords are on): licence headroom unknown`,
        };
    const { status } = report;
    checks.push({ name: 'session', ok: true, detail: `${SESSION_OUTCOME[report.outcome]} (${status.cookieNames.join('+')} ${status.masked ?? ''})` });
    checks.push({
      name: 'server',
      ok: true,
      detail: `${generationOf(status.cookieNames)}; login: ${report.login ? LOGIN_MODE[report.login] : 'unknown'}`,
    });
    checks.push(licences);
  } catch (error) {
    checks.push({ name: 'server', ok: false, detail: redactString(formatErrorLine(error)), exitCode: exitCodeFor(error) });
  }
}

/** The environment's circuit breaker as this run left it (after its own requests: a probe that got an answer closed it). */
function breakerCheck(client: Client, checks: Check[]): void {
  const view = client.breaker.view();
  const open = view.enabled && view.state !== 'closed';
  checks.push({ name: 'breaker', ok: !open, detail: describeBreaker(view), exitCode: open ? ExitCode.unavailable : undefined });
}

/** The server's dialect: probed now (--probe, stored), or as last probed. */
async function dialectCheck(client: Client, probeNow: boolean, checks: Check[]): Promise<ProbeResult | undefined> {
  try {
    const probe = probeNow ? await client.probe() : await client.storedProbe();
    const filtersOk = probe?.paramsHonoured !== false;
    const what = probe
      ? `${probe.urlDecoding} URL decoding, $params ${probe.paramsHonoured === false ? 'NOT honoured' : probe.paramsHonoured ? 'honoured' : 'unknown'}, $savedfilter ${probe.savedFilterRecreation}`
      : '';
    checks.push({
      name: 'dialect',
      ok: filtersOk,
      detail: probe ? `${probeNow ? 'probed' : `probed ${probe.probedAt}`}: ${what}` : "not probed yet ('legacy doctor --probe')",
      exitCode: filtersOk ? undefined : ExitCode.badData,
    });
    return probe;
  } catch (error) {
    checks.push({ name: 'dialect', ok: false, detail: redactString(formatErrorLine(error)), exitCode: exitCodeFor(error) });
    return undefined;
  }
}

export async function run(ctx: CommandContext, _args: string[], opts: { json?: boolean; probe?: boolean }): Promise<number> {
  const checks: Check[] = [];
  const client = await localChecks(ctx, checks);
  if (client) {
    await serverChecks(client, checks);
    breakerCheck(client, checks);
  }
  const probe = client && checks.every((c) => c.ok) ? await dialectCheck(client, opts.probe === true, checks) : undefined;
  if (opts.json) {
    await writeJson(ctx.io, { ok: checks.every((c) => c.ok), checks, ...(probe ? { probe } : {}) });
  } else {
    await write(ctx.io.stdout, checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(13)} ${c.detail}\n`).join(''));
    if (probe && opts.probe)
      await write(
        ctx.io.stdout,
        probeLines(probe)
          .map(([k, v]) => `      ${k.padEnd(14)} ${v}\n`)
          .join(''),
      );
  }
  const failed = checks.find((c) => !c.ok);
  return failed ? (failed.exitCode ?? ExitCode.unexpected) : ExitCode.ok;
}

export const spec = command({
  name: 'doctor',
  description: 'check config, server reachability, REST prefix, session and licence headroom',
  options: [
    JSON_OPTION,
    { flags: '--probe', description: 'ask the server what it is (URL decoding, cookies, $params, entity sets, dates, session life) and store it' },
  ],
  examples: ['legacy doctor', 'legacy doctor --probe --json > dialect.json'],
  run,
});
