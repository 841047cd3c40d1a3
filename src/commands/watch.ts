/** `legacy watch`: the ERP as an event source (library: ../watch/feed.ts). */
import { open, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { CommandContext } from '../cli/context.js';
import { write, writeJson } from '../cli/io.js';
import { confirm, requireConfirmation } from '../cli/prompt.js';
import { columns } from '../cli/render.js';
import { command, duration, JSON_OPTION, wholeNumber } from '../cli/spec.js';
import { CancelledError, ConfigError, ExitCode, UsageError } from '../errors/index.js';

interface WatchOptions {
  consumer?: string;
  from?: 'now' | 'beginning';
  interval?: number;
  maxInterval?: number;
  reconcileInterval?: number;
  once?: boolean;
  webhook?: string;
  webhookAttempts?: number;
  webhookTimeout?: number;
  onFailure?: 'stop' | 'dead-letter';
  deadLetter?: string;
  redisStream?: string;
  streamKey?: string;
  maxlen?: number;
  pageSize?: number;
  state?: string;
  json?: boolean;
  yes?: boolean;
}

const CONSUMER = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const CONSUMER_OPTION = { flags: '--consumer <name>', description: 'the consumer whose cursor this is (default "default"); each keeps its own' };
const STATE_OPTION = {
  flags: '--state <path|url>',
  description: "the consumer's state: an SQLite file (default <data dir>/watch/<env>/<consumer>.sqlite) or postgres://… (one database or schema per consumer)",
};

function consumerOf(opts: WatchOptions): string {
  const name = opts.consumer ?? 'default';
  if (!CONSUMER.test(name)) throw new UsageError(`consumer name '${name}' must be letters, digits, '.', '-' or '_'`);
  return name;
}

/** `<data dir>/watch/<environment>/`: one SQLite state database per consumer. */
function stateDir(ctx: CommandContext): string {
  return join(ctx.settings.dataDir, 'watch', ctx.settings.envName);
}

async function runWatch(ctx: CommandContext, args: string[], opts: WatchOptions): Promise<number> {
  if (args.length === 0) throw new UsageError('name the tables to watch', { hint: 'legacy watch Artikel Kunden' });
  if (opts.webhook && opts.redisStream)
    throw new UsageError('--webhook and --redis-stream cannot be combined; run one watch per sink (each with its own --consumer)');
  const consumer = consumerOf(opts);
  const secret = ctx.settings.webhookSecret;
  if (opts.webhook && !secret?.trim())
    throw new ConfigError('--webhook needs the signing secret in LEGACY_WEBHOOK_SECRET (whsec_…)', { hint: 'never put it on the command line' });
  if (opts.onFailure === 'dead-letter' && !opts.webhook) throw new UsageError('--on-failure applies to --webhook');
  const { normaliseTableConfig, openSyncStore, syncTarget } = await import('../sync/open.js');
  const { runFeed } = await import('../watch/feed.js');
  const sinks = await import('../watch/sinks.js');
  const configured = new Map((ctx.settings.envConfig?.sync?.tables ?? []).map(normaliseTableConfig).map((t) => [t.name, t]));
  const tables = args.map((name) => configured.get(name) ?? { name });
  ctx.metrics.table(args.join(','));
  const target = syncTarget(opts.state, ctx.io.cwd, join(stateDir(ctx), `${consumer}.sqlite`), '--state');
  const client = await ctx.client();
  if (target.kind === 'sqlite') {
    // The state holds customer rows: 0600 in a 0700 directory (SQLite gives its -wal and -shm the same mode).
    (await import('../fs/index.js')).ensurePrivateDir(stateDir(ctx), 'watch state directory');
    await (await open(target.path, 'a', 0o600)).close();
  }
  // One follower per consumer: the state database's run lock (a second one is exit 75).
  const store = await openSyncStore(target, 'run', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
  let sink: import('../watch/sinks.js').Sink;
  try {
    if (opts.webhook) {
      let url: URL;
      try {
        url = new URL(opts.webhook);
      } catch {
        throw new UsageError(`--webhook ${opts.webhook} is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--webhook must be an http:// or https:// URL');
      sink = new sinks.WebhookSink({
        url: url.href,
        secret: secret!,
        attempts: opts.webhookAttempts ?? 8,
        timeoutMs: opts.webhookTimeout ?? 10_000,
        onFailure: opts.onFailure ?? 'stop',
        deadLetterPath: opts.deadLetter ?? join(stateDir(ctx), `${consumer}.dead-letter.ndjson`),
        logger: ctx.logger,
        signal: ctx.signal,
        backoffMs: ctx.settings.webhookBackoffMs,
      });
    } else if (opts.redisStream) {
      sink = await sinks.RedisStreamSink.connect({
        url: opts.redisStream,
        key: opts.streamKey ?? `legacy:${ctx.settings.envName}:events`,
        maxLen: opts.maxlen ?? 1_000_000,
      });
    } else {
      sink = new sinks.StdoutSink(ctx.io.stdout);
    }
  } catch (error) {
    await store.close();
    throw error;
  }
  ctx.logger.info(`watching ${args.join(', ')} for consumer '${consumer}' into ${sink.name} (state ${target.display})`);
  // --metrics-file: the consumer's series every 15 s while it runs, and at the end.
  const { FeedMetrics } = await import('../metrics/watch.js');
  const feedMetrics = new FeedMetrics({ env: ctx.settings.envName, consumer });
  let metricsWritten = 0;
  const writeMetrics = async (force: boolean) => {
    const file = ctx.settings.metricsFile;
    if (!file || (!force && Date.now() - metricsWritten < 15_000)) return;
    metricsWritten = Date.now();
    const { writeMetricsFile } = await import('../metrics/file.js');
    await writeMetricsFile(resolve(ctx.io.cwd, file), feedMetrics.samples()).catch((error: Error) =>
      ctx.logger.warn(`cannot write metrics file ${file}: ${error.message.split('\n')[0]}`),
    );
  };
  // On a terminal: a status line on stderr, unless the events themselves go to that terminal.
  const showProgress = ctx.interactive && !(sink instanceof sinks.StdoutSink && ctx.io.stdout.isTTY);
  const progress = showProgress ? await (await import('../cli/progress.js')).startProgress(ctx.io.stderr, `watching ${args.join(', ')}`) : undefined;
  const total = { created: 0, updated: 0, deleted: 0 };
  const status = (extra: string) =>
    progress?.say(`${args.join(', ')} → ${sink.name}: ${total.created} created, ${total.updated} updated, ${total.deleted} deleted event(s)${extra}`);
  try {
    const summary = await runFeed(client, store, sink, {
      env: ctx.settings.envName,
      tables,
      from: opts.from ?? 'now',
      intervalMs: opts.interval ?? 1000,
      maxIntervalMs: Math.max(opts.maxInterval ?? 5_000, opts.interval ?? 1000),
      reconcileIntervalMs: opts.reconcileInterval ?? 600_000,
      once: opts.once === true,
      pageSize: opts.pageSize ?? ctx.settings.pageSize,
      concurrency: ctx.settings.concurrency,
      logger: ctx.logger,
      signal: ctx.signal,
      onDelivered: (c) => {
        total.created += c.created;
        total.updated += c.updated;
        total.deleted += c.deleted;
        status('');
        feedMetrics.delivered(c);
        ctx.metrics.rows({ read: c.created + c.updated + c.deleted, written: c.created + c.updated + c.deleted });
      },
      onPoll: (ok) => {
        feedMetrics.polled(ok);
        return writeMetrics(false);
      },
      onRound: (round, changed, wait) => {
        status(` · polled ${new Date().toLocaleTimeString()}, next in ${(wait / 1000).toFixed(1)} s`);
        ctx.logger.debug(`round ${round}: ${changed} event(s); next poll in ${wait} ms`);
      },
    });
    const e = summary.events;
    ctx.logger.info(`${e.created} created, ${e.updated} updated, ${e.deleted} deleted event(s) in ${summary.rounds} round(s)`);
  } finally {
    progress?.stop();
    await writeMetrics(true);
    await sink.close();
    await store.close();
  }
  // Ctrl-C / SIGTERM: the batch in flight was finished or rolled back; nothing is lost.
  return ExitCode.ok;
}

async function consumers(ctx: CommandContext): Promise<string[]> {
  try {
    return (await readdir(stateDir(ctx))).filter((f) => f.endsWith('.sqlite')).map((f) => f.slice(0, -'.sqlite'.length));
  } catch {
    return [];
  }
}

async function runStatus(ctx: CommandContext, _args: string[], opts: WatchOptions): Promise<number> {
  const { openSyncStore, syncTarget } = await import('../sync/open.js');
  const names = opts.consumer || opts.state ? [consumerOf(opts)] : await consumers(ctx);
  const out: Array<{
    consumer: string;
    table: string;
    tracking: string;
    cursor: string | null;
    lastPoll: string | null;
    lagSeconds: number | null;
    records: number;
    lastError: string | null;
  }> = [];
  for (const consumer of names.sort()) {
    const store = await openSyncStore(syncTarget(opts.state, ctx.io.cwd, join(stateDir(ctx), `${consumer}.sqlite`), '--state'), 'read');
    if (!store) continue;
    try {
      for (const s of await store.status()) {
        const lastPoll = s.lastSuccess;
        out.push({
          consumer,
          table: s.table,
          tracking: s.tracking,
          cursor: s.cursor,
          lastPoll,
          lagSeconds: lastPoll ? Math.max(0, Math.round((Date.now() - Date.parse(lastPoll)) / 1000)) : null,
          records: s.rows,
          lastError: s.lastError,
        });
      }
    } finally {
      await store.close();
    }
  }
  if (opts.json) {
    await writeJson(ctx.io, { environment: ctx.settings.envName, consumers: out });
    return 0;
  }
  if (out.length === 0) {
    await write(ctx.io.stdout, `no watch consumers in environment ${ctx.settings.envName}\n`);
    return 0;
  }
  const rows = out.map((c) => [
    c.consumer,
    c.table,
    c.tracking,
    c.cursor ?? '-',
    c.lastPoll ?? '-',
    c.lagSeconds === null ? '-' : `${c.lagSeconds} s`,
    String(c.records),
    c.lastError ?? '',
  ]);
  await write(ctx.io.stdout, columns(rows, ['CONSUMER', 'TABLE', 'TRACKING', 'CURSOR', 'LAST POLL', 'LAG', 'RECORDS', 'LAST ERROR']));
  return 0;
}

async function runReset(ctx: CommandContext, _args: string[], opts: WatchOptions): Promise<number> {
  if (!opts.consumer) throw new UsageError('name the consumer to reset with --consumer', { hint: "list them with 'legacy watch status'" });
  const consumer = consumerOf(opts);
  const path = join(stateDir(ctx), `${consumer}.sqlite`);
  if (!(await consumers(ctx)).includes(consumer)) throw new UsageError(`no watch consumer '${consumer}' in environment ${ctx.settings.envName}`);
  // The shared confirmation rule (cli/prompt.ts).
  requireConfirmation(ctx.io, opts.yes, `watch reset forgets consumer '${consumer}''s cursor`);
  if (!opts.yes && !(await confirm(ctx.io, `Forget the cursor of consumer '${consumer}'? Its next start begins at --from again`, ctx.signal))) {
    throw new CancelledError('cancelled: nothing was reset');
  }
  // The run lock: never reset under a running follower.
  const { openSyncStore } = await import('../sync/open.js');
  const store = await openSyncStore({ kind: 'sqlite', path, display: path }, 'run', { busyTimeoutMs: ctx.settings.syncBusyTimeoutMs });
  await store.close();
  for (const suffix of ['', '-wal', '-shm', '.lock']) await rm(`${path}${suffix}`, { force: true });
  ctx.logger.warn(`consumer '${consumer}' reset: its next start begins at --from (default now)`);
  return 0;
}

export const spec = command<WatchOptions>({
  name: 'watch [tables...]',
  description: 'follow changes as CloudEvents (created, updated, deleted): to stdout, a webhook or a Redis stream',
  complete: ['tables'],
  options: [
    CONSUMER_OPTION,
    {
      flags: '--from <where>',
      description: 'where a new consumer starts: now (default) or beginning (every record as created)',
      choices: ['now', 'beginning'],
    },
    { flags: '--interval <duration>', description: 'time between polls (default 1s)', parse: duration },
    { flags: '--max-interval <duration>', description: 'idle polls back off up to this (default 5s)', parse: duration },
    { flags: '--reconcile-interval <duration>', description: 'key-and-stamp scan where the server does not track changes (default 10m)', parse: duration },
    { flags: '--once', description: 'deliver every change up to now (with a reconcile where needed), then exit' },
    { flags: '--webhook <url>', description: 'POST batches signed as Standard Webhooks (secret in LEGACY_WEBHOOK_SECRET)' },
    { flags: '--webhook-attempts <n>', description: 'attempts per batch (default 8)', parse: wholeNumber('--webhook-attempts', 1, 100) },
    { flags: '--webhook-timeout <duration>', description: 'per attempt (default 10s)', parse: duration },
    {
      flags: '--on-failure <what>',
      description: 'after the last attempt: stop (default; exit 69, resent on the next start) or dead-letter (write to a file, go on)',
      choices: ['stop', 'dead-letter'],
    },
    { flags: '--dead-letter <file>', description: 'dead-letter file (default <data dir>/watch/<env>/<consumer>.dead-letter.ndjson)' },
    { flags: '--redis-stream <url>', description: 'XADD each event to a Redis stream (redis://host:6379/0)' },
    { flags: '--stream-key <key>', description: 'the stream (default legacy:<env>:events)' },
    { flags: '--maxlen <n>', description: 'approximate MAXLEN of the stream (default 1000000; 0: unbounded)', parse: wholeNumber('--maxlen', 0) },
    { flags: '--page-size <n>', description: 'rows per request (default 1000)', parse: wholeNumber('--page-size', 1, 100_000) },
    {
      flags: '--state <path|url>',
      description:
        "the consumer's state: an SQLite file (default <data dir>/watch/<env>/<consumer>.sqlite) or postgres://… (one database or schema per consumer)",
    },
  ],
  examples: [
    'legacy watch Artikel Kunden                                   # NDJSON CloudEvents on stdout',
    'LEGACY_WEBHOOK_SECRET=whsec_… legacy watch Artikel --consumer shop --webhook https://shop.example/hooks/erp',
    'legacy watch Artikel --consumer stock --redis-stream redis://127.0.0.1:6379/0',
    'legacy watch Artikel --once --consumer nightly >> changes.ndjson',
    'legacy watch status',
  ],
  run: runWatch,
  subcommands: [
    command<WatchOptions>({
      name: 'status',
      description: 'consumers, their tables, cursors, last poll and lag',
      options: [CONSUMER_OPTION, STATE_OPTION, JSON_OPTION],
      run: runStatus,
    }),
    command<WatchOptions>({
      name: 'reset',
      description: "forget a consumer's cursor (its next start begins at --from)",
      options: [CONSUMER_OPTION, { flags: '-y, --yes', description: 'do not ask for confirmation (required when not on a terminal)' }],
      run: runReset,
    }),
  ],
});
