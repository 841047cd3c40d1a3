/**
 * `legacy-emulator`: command line of the 4D REST emulator (node:util parseArgs only, no dependencies).
 *
 * Exit codes (sysexits): 0 ok / stopped by SIGINT or SIGTERM, 64 bad options, 65 invalid fixture,
 * 66 fixture file not found, 69 cannot listen (port in use, permission).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FixtureError } from './datastore.js';
import { OptionError } from './options.js';
import { startEmulator } from './server.js';
import { DEFAULT_FAULT_KINDS, FAULT_KINDS, type EmulatorOptions, type FaultKind, type RunningEmulator } from './types.js';

export const USAGE = `Usage: legacy-emulator [options]

A 4D REST server emulator (sessions and licences, $catalog, paging, $filter, entity sets,
$method=update, fault injection). Control API under /__emulator/ (stats, reset, options, ...).

Options:
  --host <addr>                 address to listen on (default 127.0.0.1)
  --port <n>                    port (default 8090; 0 = a free port)
  --data demo|<file.json>       seeded demo tables (default) or a JSON fixture
  --rows <T=n,...>              demo row counts, e.g. Artikel=200000,Kunden=5000
  --seed <n>                    demo data seed (default 1)
  --max-sessions <n>            licences (default 3); more sessions get HTTP 402
  --session-timeout <dur>       idle session timeout, sliding (default 60m)
  --auth <user:password>        require username-4D/password-4D (default: open access); under
                                --generation v21 the credentials authentify() checks
  --app-name <name>             scalable session cookie 4DSID_<name> (default WSZ-DB)
  --generation v18|v20|v20r|v21 the 4D generation to play (default v20r):
                                v18  WASID4D only; Table(key) only, no Table[key]
                                v20  4DSID_<app> only
                                v20r WASID4D and 4DSID_<app>, same id (read WASID4D first)
                                v21  4DSID_<app> only, force login: guest sessions (no
                                     licence) may only read $catalog and call
                                     POST /rest/$catalog/authentify; $info lists privileges
                                a server reads only the session cookies it sets
  --no-scalable                 v20r: set only WASID4D, not 4DSID_<app>
  --refusal-status 401|403      HTTP status of privilege errors (default 401, the docs)
  --authentify-user-field name|identifier
                                credentials property authentify() reads the user from
                                (default name, the docs' example)
  --read-only-tables <T,...>    reads work; update/create/delete answer a privilege error
                                (1558/1559/1560)
  --info-admin-only             $info refused to every session (1611)
  --login-refusal result-false|401
                                a refused $directory/login: 200 {"result":false} (default,
                                the docs) or 401 with 1822 (seen on the legacy server)
  --header-decoding utf8|latin1 bytes of username-4D/password-4D (default utf8, the 4D
                                source)
  --latency <dur>               delay added to every /rest response (default 0)
  --faults <rate[:kinds]>       random faults on data requests, e.g. 0.1:500,503,reset,slow
                                kinds: ${FAULT_KINDS.join(', ')}
                                (default kinds: ${DEFAULT_FAULT_KINDS.join(', ')})
                                4d500/4d503: 500/503 with a 4D __ERROR body (errCode 1000)
  --fault-seed <n>              fault RNG seed (default 1)
  --slow <dur>                  delay of the 'slow' fault (default 5s)
  --expire-every <n>            expire the requesting session every n data requests
  --duplicate-cookie reject|first-wins     two WASID4D cookies: 401 (default) or use the first
  --strict-date-compare reject|allow       < and > on dates: 500 or evaluate (default)
  --url-decoding whole|split    whole (default, the 4D source): decode the whole URL, then split
                                it quote-aware, last parameter wins; split: split the raw query,
                                then decode each part (+ = space), first wins
  --ignore-filters              silently drop $filter/$params (and $savedfilter): every row, 200
  --saved-filter-without-params recreate a lost entity set from $savedfilter without $params
                                (an unfilled placeholder matches every row)
  --broken-paging ignore-top|ignore-skip|short
                                pages not as asked: every row from $skip on, every page from
                                row 0, or one row less than $top (to test a client's checks)
  --lifetime-unit seconds|minutes          unit of $info sessionInfo lifeTime (default seconds,
                                the docs; minutes: real v16/v17 output)
  --quoted-timestamps           v17 quirk: __TIMESTAMP as "\\"2017-...Z\\""
  --change-tracking all|<T,...> 4D data change tracking for every table or those tables (default
                                off): a __GlobalStamp attribute taken from one global counter on
                                every add/modify, deletions logged in __DeletedRecords, the
                                envelope's __GlobalStamp = the counter
  -v, --verbose                 log requests to stderr
  --quiet                       no warnings on stderr
  -h, --help                    show this help
  -V, --version                 show the version

Durations take ms, s, m or h (bare numbers are milliseconds).
Prints "listening on http://<host>:<port>" on stdout when ready.
Exit codes: 0 stopped, 64 bad options, 65 bad fixture, 66 fixture not found, 69 cannot listen.`;

class UsageError extends Error {}

/** `250ms`, `5s`, `60m`, `1h`, or a bare number of milliseconds. */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${what}: "${text}" is not a duration (e.g. 500ms, 5s, 60m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 'ms']!;
  return Math.round(Number(m[1]) * unit);
}

function parseCount(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${what}: "${text}" is not a non-negative integer`);
  return Number(text);
}

function parseRows(text: string): Record<string, number> {
  const rows: Record<string, number> = {};
  for (const part of text.split(',').filter((p) => p.trim() !== '')) {
    const m = /^\s*([^=\s]+)\s*=\s*(\d+)\s*$/.exec(part);
    if (!m) throw new UsageError(`--rows: "${part}" is not Table=count`);
    rows[m[1]!] = Number(m[2]);
  }
  return rows;
}

function parseFaults(text: string): { rate: number; kinds?: FaultKind[] } {
  const [rateText, kindsText] = text.split(':', 2) as [string, string | undefined];
  const rate = Number(rateText);
  if (rateText.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
    throw new UsageError(`--faults: rate "${rateText}" must be a number between 0 and 1`);
  }
  if (kindsText === undefined) return { rate };
  const kinds = kindsText
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k !== '');
  for (const k of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(k)) throw new UsageError(`--faults: unknown kind "${k}" (${FAULT_KINDS.join(', ')})`);
  }
  if (kinds.length === 0) throw new UsageError('--faults: no fault kinds after ":"');
  return { rate, kinds: kinds as FaultKind[] };
}

/** A comma-separated, non-empty list of tables. */
function parseTableList(text: string, flag: string): string[] {
  const names = text
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  if (names.length === 0) throw new UsageError(`${flag}: expected a list of tables, e.g. Artikel,Kunden`);
  return names;
}

/** `all` or a comma-separated list of tables. */
function parseChangeTracking(text: string): true | string[] {
  if (text.trim() === 'all') return true;
  const names = text
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  if (names.length === 0) throw new UsageError('--change-tracking: expected "all" or a list of tables, e.g. Artikel,Kunden');
  return names;
}

export type CliCommand = { kind: 'help' } | { kind: 'version' } | { kind: 'run'; options: EmulatorOptions };

/** The emulator's options, as node:util parseArgs takes them. */
const OPTIONS = {
  host: { type: 'string' },
  port: { type: 'string' },
  data: { type: 'string' },
  rows: { type: 'string' },
  seed: { type: 'string' },
  'max-sessions': { type: 'string' },
  'session-timeout': { type: 'string' },
  auth: { type: 'string' },
  'app-name': { type: 'string' },
  'no-scalable': { type: 'boolean' },
  generation: { type: 'string' },
  'refusal-status': { type: 'string' },
  'authentify-user-field': { type: 'string' },
  'read-only-tables': { type: 'string' },
  'info-admin-only': { type: 'boolean' },
  'login-refusal': { type: 'string' },
  'header-decoding': { type: 'string' },
  latency: { type: 'string' },
  faults: { type: 'string' },
  'fault-seed': { type: 'string' },
  slow: { type: 'string' },
  'expire-every': { type: 'string' },
  'duplicate-cookie': { type: 'string' },
  'strict-date-compare': { type: 'string' },
  'url-decoding': { type: 'string' },
  'ignore-filters': { type: 'boolean' },
  'saved-filter-without-params': { type: 'boolean' },
  'lifetime-unit': { type: 'string' },
  'broken-paging': { type: 'string' },
  'quoted-timestamps': { type: 'boolean' },
  'change-tracking': { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

const parseOptions = (argv: string[]) => parseArgs({ args: argv, strict: true, allowPositionals: false, options: OPTIONS }).values;

/** Parses the command line (without `node` and the script). Throws UsageError on bad input. */
export function parseCliArgs(argv: string[]): CliCommand {
  let values: ReturnType<typeof parseOptions>;
  try {
    values = parseOptions(argv);
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const o: EmulatorOptions = {};
  if (values.host !== undefined) o.host = values.host;
  if (values.port !== undefined) {
    o.port = parseCount(values.port, '--port');
    if (o.port > 65535) throw new UsageError(`--port: ${o.port} is not a port number`);
  }
  if (values.data !== undefined) o.data = values.data;
  if (values.rows !== undefined) o.rows = parseRows(values.rows);
  if (values.seed !== undefined) o.seed = parseCount(values.seed, '--seed');
  if (values['max-sessions'] !== undefined) o.maxSessions = parseCount(values['max-sessions'], '--max-sessions');
  if (values['session-timeout'] !== undefined) o.sessionTimeoutMs = parseDuration(values['session-timeout'], '--session-timeout');
  if (values.auth !== undefined) {
    const i = values.auth.indexOf(':');
    if (i <= 0) throw new UsageError('--auth: expected user:password');
    o.auth = { user: values.auth.slice(0, i), password: values.auth.slice(i + 1) };
  }
  if (values['app-name'] !== undefined) o.appName = values['app-name'];
  if (values['no-scalable']) o.scalable = false;
  if (values.generation !== undefined) o.generation = values.generation as EmulatorOptions['generation'];
  if (values['refusal-status'] !== undefined) {
    const status = values['refusal-status'];
    if (status !== '401' && status !== '403') throw new UsageError(`--refusal-status: "${status}" must be 401 or 403`);
    o.refusalStatus = Number(status) as 401 | 403;
  }
  if (values['authentify-user-field'] !== undefined) o.authentifyUserField = values['authentify-user-field'] as EmulatorOptions['authentifyUserField'];
  if (values['read-only-tables'] !== undefined) o.readOnlyTables = parseTableList(values['read-only-tables'], '--read-only-tables');
  if (values['info-admin-only']) o.infoAdminOnly = true;
  if (values['login-refusal'] !== undefined) o.loginRefusal = values['login-refusal'] as EmulatorOptions['loginRefusal'];
  if (values['header-decoding'] !== undefined) o.headerDecoding = values['header-decoding'] as EmulatorOptions['headerDecoding'];
  if (values.latency !== undefined) o.latencyMs = parseDuration(values.latency, '--latency');
  const faults: NonNullable<EmulatorOptions['faults']> = {};
  if (values.faults !== undefined) Object.assign(faults, parseFaults(values.faults));
  if (values['fault-seed'] !== undefined) faults.seed = parseCount(values['fault-seed'], '--fault-seed');
  if (values.slow !== undefined) faults.slowMs = parseDuration(values.slow, '--slow');
  if (values['expire-every'] !== undefined) faults.expireEvery = parseCount(values['expire-every'], '--expire-every');
  if (Object.keys(faults).length > 0) o.faults = faults;
  if (values['duplicate-cookie'] !== undefined) o.duplicateCookie = values['duplicate-cookie'] as EmulatorOptions['duplicateCookie'];
  if (values['strict-date-compare'] !== undefined) o.strictDateCompare = values['strict-date-compare'] as EmulatorOptions['strictDateCompare'];
  if (values['url-decoding'] !== undefined) o.urlDecoding = values['url-decoding'] as EmulatorOptions['urlDecoding'];
  if (values['ignore-filters']) o.ignoreFilters = true;
  if (values['saved-filter-without-params']) o.savedFilterWithoutParams = true;
  if (values['broken-paging'] !== undefined) o.brokenPaging = values['broken-paging'] as EmulatorOptions['brokenPaging'];
  if (values['lifetime-unit'] !== undefined) o.lifeTimeUnit = values['lifetime-unit'] as EmulatorOptions['lifeTimeUnit'];
  if (values['quoted-timestamps']) o.quotedTimestamps = true;
  if (values['change-tracking'] !== undefined) o.changeTracking = parseChangeTracking(values['change-tracking']);
  if (values.verbose) o.verbose = true;
  if (values.quiet) o.quiet = true;
  return { kind: 'run', options: o };
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Maps a start-up failure to one stderr line and an exit code. */
function failure(e: unknown, port: number | undefined): { message: string; code: number } {
  const err = e as NodeJS.ErrnoException;
  if (e instanceof UsageError || e instanceof OptionError) return { message: err.message, code: 64 };
  if (e instanceof FixtureError) return { message: err.message, code: 65 };
  if (err.code === 'ENOENT' || err.code === 'EISDIR' || (err.code === 'EACCES' && err.syscall === 'open')) {
    return { message: `cannot read fixture: ${err.message}`, code: 66 };
  }
  if (err.code === 'EADDRINUSE') return { message: `port ${port ?? 8090} is already in use`, code: 69 };
  if (err.syscall === 'listen' || err.code === 'EADDRNOTAVAIL' || err.code === 'EACCES') return { message: `cannot listen: ${err.message}`, code: 69 };
  return { message: err.stack ?? String(e), code: 70 };
}

export async function main(argv: string[]): Promise<void> {
  let cmd: CliCommand;
  try {
    cmd = parseCliArgs(argv);
  } catch (e) {
    const f = failure(e, undefined);
    process.stderr.write(`legacy-emulator: ${f.message}\n`);
    process.exitCode = f.code;
    return;
  }
  if (cmd.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (cmd.kind === 'version') {
    process.stdout.write(`${version()}\n`);
    return;
  }
  // Signal handlers go in before start-up and stay: a signal at any moment means a clean stop with exit 0,
  // and repeated signals while stopping are ignored (signal handlers do not keep the process alive).
  let emu: RunningEmulator | undefined;
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    process.exitCode = 0;
    void emu?.stop();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    emu = await startEmulator(cmd.options);
  } catch (e) {
    const f = failure(e, cmd.options.port);
    process.stderr.write(`legacy-emulator: ${f.message}\n`);
    process.exitCode = f.code;
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    return;
  }
  if (stopping) {
    await emu.stop();
    return;
  }
  process.stdout.write(`listening on ${emu.url}\n`);
}
