/** `legacy session status|refresh|clear`: inspect and manage the persisted server session. */
import type { CommandContext } from '../cli/context.js';
import { write, writeJson } from '../cli/io.js';
import { confirm, requireConfirmation } from '../cli/prompt.js';
import { columns, relative } from '../cli/render.js';
import { CancelledError, UsageError } from '../errors/index.js';
import { type BreakerView, describeBreaker, resetBreakers, viewOf } from '../session/breaker.js';
import { withSessionStore } from '../session/open.js';
import { logoutSessions } from '../session/logout.js';
import type { SessionBackend, SessionEntry } from '../session/store.js';
import type { ServerView } from '../rest/index.js';
import { statusOf, type SessionStatus } from '../session/status.js';
import { command, JSON_OPTION } from '../cli/spec.js';

function selected(ctx: CommandContext) {
  return { env: ctx.settings.envName, name: ctx.settings.sessionName, baseUrl: ctx.settings.baseUrl ?? '' };
}

export async function runStatus(ctx: CommandContext, _args: string[], opts: { all?: boolean; json?: boolean; server?: boolean }): Promise<number> {
  const { settings } = ctx;
  const { storeKind, storeLocation, entries, breakerRecords } = await withSessionStore(settings, ctx.logger, async (store) => ({
    storeKind: store.kind,
    storeLocation: store.location,
    entries: await store.list(),
    breakerRecords: await store.breakers.list().catch((error: Error) => {
      ctx.logger.warn(`cannot read the circuit breaker state: ${error.message}`);
      return [];
    }),
  }));
  const slot = selected(ctx);
  // The selected environment's breaker (closed when nothing is recorded), or with --all every recorded one.
  const breakers: BreakerView[] = opts.all
    ? breakerRecords.map((r) => viewOf(r, r, r.env === slot.env ? settings.breaker : { ...settings.breaker, enabled: true }))
    : slot.baseUrl
      ? [
          viewOf(
            breakerRecords.find((r) => r.env === slot.env && r.baseUrl === slot.baseUrl),
            slot,
            settings.breaker,
          ),
        ]
      : [];
  const chosen = opts.all ? entries : entries.filter((e) => e.env === slot.env && e.name === slot.name);
  const statuses: SessionStatus[] = chosen.map((e) => statusOf(e, e, settings.sessionIdleMinutes));
  if (!opts.all && !chosen.some((e) => e.baseUrl === slot.baseUrl) && slot.baseUrl) {
    statuses.push(statusOf(undefined, slot, settings.sessionIdleMinutes));
  }
  const server = opts.server ? await (await ctx.client()).sessionsOnServer(ctx.settings.sessionIdleMinutes) : undefined;

  if (opts.json) {
    await writeJson(ctx.io, { store: { kind: storeKind, location: storeLocation }, sessions: statuses, breakers, server });
    return 0;
  }
  if (statuses.length === 0) {
    await write(ctx.io.stdout, `no stored session for ${opts.all ? 'any environment' : `${slot.env}/${slot.name}`} in ${storeLocation}\n`);
  } else {
    await write(ctx.io.stdout, statusTable(statuses));
  }
  if (breakers.length) {
    await write(ctx.io.stdout, breakers.map((b) => `circuit breaker ${b.env} (${b.baseUrl}): ${describeBreaker(b)}\n`).join(''));
  }
  // The file store is the default; a shared store is worth naming, since other hosts see the same.
  if (statuses.length > 0 && storeKind === 'redis') await write(ctx.io.stdout, `(shared session store: ${storeLocation})\n`);
  if (server) await write(ctx.io.stdout, serverText(server));
  return 0;
}

/** The server's sessions ($info), asked only with the stored session (asking without would open one). */

function statusTable(statuses: SessionStatus[]): string {
  const rows = statuses.map((s) => [
    `${s.env}/${s.name}`,
    s.baseUrl,
    s.state,
    s.masked ? `${s.cookieNames.join('+')} ${s.masked}` : '-',
    s.createdAt ? relative(s.createdAt).replace(' ago', '') : '-',
    relative(s.lastUsedAt),
    s.expiresIfUnusedAt ? (s.expiredByClock ? `expired ${relative(s.expiresIfUnusedAt)}` : relative(s.expiresIfUnusedAt)) : '-',
  ]);
  return columns(rows, ['SESSION', 'URL', 'STATE', 'COOKIE', 'AGE', 'LAST USED', 'EXPIRES IF UNUSED']);
}

function serverText(server: ServerView): string {
  const lines = [`\nserver ${server.url}: ${server.note ?? `${server.live} live session(s); ours is ${server.ours ? '' : 'NOT '}among them`}`];
  if (server.sessions.length) {
    const rows = server.sessions.map((s) => [
      s.masked,
      s.userName || '-',
      s.lifeTimeSeconds !== undefined ? `${Math.round(s.lifeTimeSeconds / 60)} min` : '-',
      s.expiration ? relative(s.expiration) : '-',
      s.ours ? 'ours' : '',
    ]);
    lines.push(columns(rows, ['SESSION', 'USER', 'IDLE TIMEOUT', 'EXPIRES', '']).trimEnd());
  }
  return `${lines.join('\n')}\n`;
}

export async function runRefresh(ctx: CommandContext, _args: string[], opts: { json?: boolean }): Promise<number> {
  const client = await ctx.client();
  const report = await client.confirmSession('session refresh');
  const happened = report.outcome;
  const outcome = happened === 'created' ? 'created' : happened === 'replaced' ? 'replaced' : 'confirmed';
  const message =
    outcome === 'created'
      ? `no usable session was stored for ${ctx.settings.envName}/${ctx.settings.sessionName}; created one`
      : outcome === 'replaced'
        ? 'the server had replaced the stored session (it had expired); stored the new one'
        : `the stored session is alive on the server${happened === 'from-other-process' ? ' (another process had just created it)' : ''}`;
  const { status } = report;
  if (opts.json) await writeJson(ctx.io, { outcome, message, session: status });
  else await write(ctx.io.stdout, `${message}: ${status.cookieNames.join('+')} ${status.masked ?? ''}\n`);
  return 0;
}

export async function runClear(
  ctx: CommandContext,
  _args: string[],
  opts: { all?: boolean; yes?: boolean; logout?: boolean; resetBreaker?: boolean },
): Promise<number> {
  return withSessionStore(ctx.settings, ctx.logger, (store) => clear(ctx, store, opts));
}

/** When a forgotten session's licence comes back by itself: the server's idle timeout after its last use. */
function leftOnServer(entry: SessionEntry, idleMinutes: number): string {
  const minutes = entry.idleMinutes ?? idleMinutes;
  const until = Date.parse(entry.lastUsedAt) + minutes * 60_000;
  if (until <= Date.now()) return 'the server has most likely ended it already (idle too long)';
  return `the server keeps it, and its licence, until it has been idle for ${minutes} min (${relative(new Date(until).toISOString())})`;
}

async function clear(
  ctx: CommandContext,
  store: SessionBackend,
  opts: { all?: boolean; yes?: boolean; logout?: boolean; resetBreaker?: boolean },
): Promise<number> {
  const slot = selected(ctx);
  if (opts.resetBreaker) {
    if (opts.logout) throw new UsageError('--reset-breaker closes the circuit breaker only; run --logout on its own');
    const reset = await resetBreakers(store.breakers, (b) => opts.all === true || b.env === slot.env);
    await write(
      ctx.io.stdout,
      reset.length === 0
        ? 'no circuit breaker to clear\n'
        : reset.map((b) => `closed the circuit breaker of ${b.env} (${b.baseUrl}): the next run goes to the server\n`).join(''),
    );
    return 0;
  }
  const matches = (e: { env: string; name: string }) => opts.all || (e.env === slot.env && e.name === slot.name);
  const existing = (await store.list()).filter(matches);
  if (existing.length === 0) {
    await write(ctx.io.stdout, 'nothing to clear\n');
    return 0;
  }
  if (opts.all) {
    // Every environment's and session name's stored session at once: the shared confirmation rule.
    requireConfirmation(ctx.io, opts.yes, `session clear --all ${opts.logout ? 'logs out' : 'forgets'} every stored session (${existing.length})`);
    const question = opts.logout
      ? `log out and forget ${existing.length} stored session(s)? (runs using them will need new ones)`
      : `forget ${existing.length} stored session(s)? (the server keeps them until they expire)`;
    if (!opts.yes && !(await confirm(ctx.io, question, ctx.signal))) throw new CancelledError('cancelled: nothing was cleared');
  }
  if (opts.logout) {
    const { settings } = ctx;
    const results = await logoutSessions(store, existing, { timeoutMs: settings.timeout, insecure: settings.insecure, logger: ctx.logger, signal: ctx.signal });
    await write(
      ctx.io.stdout,
      results
        .map(({ entry, confirmed, detail }) =>
          confirmed
            ? `logged out ${entry.env}/${entry.name} (${entry.baseUrl}): the server ended the session and freed its licence\n`
            : `forgot ${entry.env}/${entry.name} (${entry.baseUrl}); the server did not confirm the logout (${detail}): ${leftOnServer(entry, settings.sessionIdleMinutes)}\n`,
        )
        .join(''),
    );
    return 0;
  }
  const removed = await store.remove(matches);
  await write(
    ctx.io.stdout,
    removed
      .map(
        (e) => `forgot ${e.env}/${e.name} (${e.baseUrl}); ${leftOnServer(e, ctx.settings.sessionIdleMinutes)}; 'legacy session clear --logout' ends it now\n`,
      )
      .join(''),
  );
  return 0;
}

export const spec = command({
  name: 'session',
  description: 'inspect and manage the persisted server session',
  subcommands: [
    command({
      name: 'status',
      description: 'show stored sessions (no server request unless --server)',
      options: [
        { flags: '--all', description: 'every environment and session name, not just the selected one' },
        JSON_OPTION,
        { flags: '--server', description: 'also ask the server ($info) for its live sessions' },
      ],
      run: runStatus,
    }),
    command({ name: 'refresh', description: 'confirm the stored session with one cheap request; create one if none', options: [JSON_OPTION], run: runRefresh }),
    command({
      name: 'clear',
      description: 'forget stored session cookie(s); the server keeps the session until its idle timeout unless --logout',
      options: [
        { flags: '--all', description: 'every environment and session name' },
        { flags: '--logout', description: 'also end the session on the server ($directory/logout), freeing its licence now' },
        { flags: '--reset-breaker', description: "close the environment's circuit breaker instead (the sessions stay)" },
        { flags: '-y, --yes', description: 'do not ask for confirmation' },
      ],
      examples: ['legacy session clear', 'legacy session clear --logout', 'legacy session clear --all --logout --yes', 'legacy session clear --reset-breaker'],
      run: runClear,
    }),
  ],
});
