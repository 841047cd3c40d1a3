/**
 * The library API: what the CLI does, for other Node code.
 *
 *   import { openClient, planExport, exportRows, createWriter } from 'legacy-4d-cli';
 *   const client = await openClient({ env: 'live' });
 *   const plan = await planExport(client, { table: 'Artikel', where: ['Aktiv=true'] });
 *   for await (const rows of exportRows(client, plan, { logger: silentLogger })) ...
 *   await client.close();
 *
 * Updates: new Pusher(client, await client.dataClass('Artikel'), { logger, audit: new AuditLog(dir), env }).
 * Sync: const store = await openSyncStore(syncTarget(process.env.SYNC_DB, process.cwd(), 'sync.sqlite'), 'run'); // or postgres://…
 *       await new Syncer(client, store, { logger }).syncTable({ name: 'Artikel' }, newRunId()); await store.close();
 */
import { loadConfig } from './config/store.js';
import { resolveDirs, resolveSettings, type GlobalOptions } from './config/settings.js';
import { createRestClient, type RestClient } from './rest/index.js';
import { silentLogger, type Logger } from './log/index.js';

export * from './errors/index.js';
export { loadConfig, updateConfig, type ConfigFile, type EnvironmentConfig } from './config/store.js';
export { resolveSettings, type GlobalOptions, type Settings } from './config/settings.js';
export { createLogger, silentLogger, redact, type Logger, type LogLevel } from './log/index.js';
export { RestClient, createRestClient, EntitySetGoneError, type Attribute, type DataClass, type Entity, type Envelope, type PageQuery } from './rest/index.js';
export { restUrl, queryString, paramsJson, type RestPath, type RestQuery } from './protocol/url.js';
export { FOURD_CODES, classifyResponse, errCodeOf, type FourDErrorClass } from './protocol/errors.js';
export { DialectCache, probeServer, type FilterCheck, type ProbeResult, type ServerDialect } from './rest/dialect.js';
export { HarRecorder } from './transport/har.js';
export { SessionManager, type SessionEvents } from './session/manager.js';
export { SessionStore, type SessionBackend, type SessionEntry, type LicenceBudget } from './session/store.js';
export { openSessionStore } from './session/open.js';
export { RedisSessionStore } from './session/redis.js';
export { exportRows, countRows, type ExportSummary } from './table/paging/read.js';
export { planExport, type ExportOptions, type ExportPlan } from './table/plan/plan.js';
export { createWriter, type Format, type RowWriter } from './table/output/formats.js';
export { xlsxWriter, type CellKind, type XlsxOptions } from './table/output/xlsx.js';
export {
  RunMetrics,
  writeMetricsFile,
  render as renderMetrics,
  parse as parseMetrics,
  merge as mergeMetrics,
  type Sample,
  type RunReporter,
} from './metrics/index.js';
export { fourDDateToIso, isoToFourDDate, msToTime, timeToMs } from './table/convert.js';
export { Pusher, pushExitCode, type PushRequestRow, type RowReport, type PushResult } from './push/index.js';
export { AuditLog, type AuditRecord } from './push/audit.js';
export { coerce, type ValueType } from './push/coerce.js';
export { Syncer, SyncStore, newRunId, openSyncStore, syncTarget, type SyncOptions, type SyncTarget, type TableResult } from './sync/index.js';
export { runFeed, type FeedOptions, type FeedSummary } from './watch/feed.js';
export { StdoutSink, WebhookSink, RedisStreamSink, type Sink } from './watch/sinks.js';
export { eventOf, type FeedEvent } from './watch/events.js';
export { startEmulator, type EmulatorOptions, type RunningEmulator } from './emulator/index.js';
export { main } from './app/main.js';

export interface OpenClientOptions extends GlobalOptions {
  /** Environment variables to read LEGACY_* settings from (default: none, only the options given). */
  environment?: Record<string, string | undefined>;
  logger?: Logger;
  signal?: AbortSignal;
}

/** A REST client for an environment, resolved exactly as the CLI resolves it (flags = these options). */
export async function openClient(options: OpenClientOptions = {}): Promise<RestClient> {
  const environment = options.environment ?? {};
  const config = await loadConfig(resolveDirs(options, environment).configDir);
  const settings = resolveSettings(options, environment, config);
  return createRestClient({ settings, config, logger: options.logger ?? silentLogger, signal: options.signal });
}
