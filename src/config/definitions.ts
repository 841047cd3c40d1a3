/**
 * Every setting in one table: its global flag, environment variable, config key, type, default and
 * description. From it come the precedence (flag > environment variable > the environment's config
 * entry > the config's `defaults` > default; config/settings.ts), the validation of config.json
 * (config/store.ts) and of flags and variables, the global options and their `--help` text
 * (app/program.ts), and the docs test that holds man/legacy.1 and the README to it.
 *
 * A setting whose resolution is more than the precedence (the log level, which -v, -q and --debug
 * also set; the credentials, whose variable names carry the environment's) still has its row here,
 * and settings.ts resolves it with the row's type.
 */
import { isAbsolute } from 'node:path';
import { authentifyBodyProblem, normaliseBaseUrl, sessionStoreProblem, validateEnvName } from './values.js';

/** Where a setting's value came from. */
export type Source = 'flag' | 'env' | 'config' | 'default';

/** How a setting's value is read from text (a flag, a variable) and checked in config.json. */
export interface SettingType<T> {
  /** What a value must be, for messages: "a whole number from 1". */
  readonly expect: string;
  /** A flag's or a variable's text as a value, or what is wrong with it. */
  fromText(raw: string): { value: T } | { problem: string };
  /** What is wrong with a value in config.json, if anything. */
  problem(value: unknown): string | undefined;
  /** A valid config value as the run uses it (a base URL normalised); default: as it is. */
  fromConfig?(value: T): T;
}

const got = (raw: unknown) => (typeof raw === 'string' ? `'${raw}'` : JSON.stringify(raw));

function simple<T>(expect: string, fromText: (raw: string) => T | undefined, check: (value: unknown) => boolean): SettingType<T> {
  return {
    expect,
    fromText(raw) {
      const value = fromText(raw);
      return value === undefined ? { problem: `must be ${expect}, got ${got(raw)}` } : { value };
    },
    problem: (value) => (check(value) ? undefined : `must be ${expect}, got ${got(value)}`),
  };
}

/** A whole number in [min, max]. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): SettingType<number> {
  const inRange = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= min && (n as number) <= max;
  return simple(
    `a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}`,
    (raw) => (/^\s*\d+\s*$/.test(raw) && inRange(Number(raw)) ? Number(raw) : undefined),
    inRange,
  );
}

const positiveNumber = simple<number>(
  'a number above 0',
  (raw) => (raw.trim() !== '' && Number(raw) > 0 && Number.isFinite(Number(raw)) ? Number(raw) : undefined),
  (v) => typeof v === 'number' && v > 0 && Number.isFinite(v),
);

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

/** On or off: 1/0, true/false, yes/no, on/off in a variable; true/false in the config. */
export const boolean = simple<boolean>(
  '1 or 0',
  (raw) => (TRUE_WORDS.includes(raw.trim().toLowerCase()) ? true : FALSE_WORDS.includes(raw.trim().toLowerCase()) ? false : undefined),
  (v) => typeof v === 'boolean',
);

/** One of a few words (case-insensitive; `aliases` maps other spellings). */
function oneOf<const T extends string>(values: readonly T[], aliases: Record<string, NoInfer<T>> = {}): SettingType<T> {
  return simple<T>(
    `one of ${values.join(', ')}`,
    (raw) => {
      const word = raw.trim().toLowerCase();
      return aliases[word] ?? values.find((v) => v === word);
    },
    (v) => values.includes(v as T),
  );
}

/** Any text (a path from a flag or variable is relative to the working directory). */
const text = simple<string>(
  'text',
  (raw) => raw,
  (v) => typeof v === 'string',
);

/** A file path; in the config it must be absolute (the config is read from anywhere). */
const path: SettingType<string> = {
  ...text,
  expect: 'a path',
  problem: (v) => (typeof v === 'string' && isAbsolute(v) ? undefined : `must be an absolute path, got ${got(v)}`),
};

/** A text value checked by `problemOf` (which returns what is wrong with it). */
function checked(expect: string, problemOf: (raw: string) => string | undefined): SettingType<string> {
  return {
    expect,
    fromText: (raw) => {
      const problem = problemOf(raw);
      return problem ? { problem } : { value: raw };
    },
    problem: (v) => (typeof v === 'string' ? problemOf(v) : `must be ${expect}, got ${got(v)}`),
  };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const baseUrl: SettingType<string> = {
  expect: 'an http(s) URL',
  fromText: (raw) => {
    try {
      return { value: normaliseBaseUrl(raw) };
    } catch (error) {
      return { problem: (error as Error).message };
    }
  },
  problem: (v) => {
    if (typeof v !== 'string') return 'is missing or not a string';
    try {
      normaliseBaseUrl(v);
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  },
  fromConfig: normaliseBaseUrl,
};

/** JSON text in a variable, a JSON value in the config; `problemOf` checks the value. */
function json(expect: string, problemOf: (value: unknown) => string | undefined): SettingType<unknown> {
  return {
    expect,
    fromText: (raw) => {
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch {
        return { problem: `is not valid JSON (e.g. [{"name":"{user}","password":"{password}"}])` };
      }
      const problem = problemOf(value);
      return problem ? { problem } : { value };
    },
    problem: problemOf,
  };
}

/** A flag that takes no value (`--quiet`), or is counted (`-vv`). */
const flagOnly = simple<boolean>(
  'a switch',
  () => undefined,
  (v) => typeof v === 'boolean',
);

/**
 * Where a setting may be written in config.json: `both` per environment and under `defaults`;
 * `environment` only per environment; `top` at the top level (`defaultEnv`).
 */
export type ConfigScope = 'both' | 'environment' | 'top';

export interface SettingDefinition<T = unknown> {
  /** The global option (commander flags); its attribute name is the row's key. */
  readonly flag?: string;
  /** A flag that counts (-v, -vv). */
  readonly counted?: boolean;
  readonly env?: string;
  /** Other variables the setting reads, for the docs (`LEGACY_<ENV>_USERNAME`). */
  readonly alsoEnv?: readonly string[];
  readonly config?: ConfigScope;
  /** The key in config.json when it is not the row's key (`defaultEnv`, `sync.db`). */
  readonly configKey?: string;
  readonly type: SettingType<T>;
  /** The value when nothing sets it; a function for one that depends on the platform. */
  readonly default?: T | (() => T);
  /** The default as the help shows it, when it is not the value itself. */
  readonly defaultText?: string;
  /** One line for `--help` and the docs. */
  readonly description: string;
  /** Never shown, never logged (a secret). */
  readonly secret?: boolean;
  /** What the shell completes for the flag's value (cli/spec.ts Completion). */
  readonly complete?: 'environments' | readonly string[];
}

/** A row, keeping its config scope in its type (EnvironmentSettings is derived from it). */
function def<T, C extends ConfigScope | undefined = undefined>(
  d: Omit<SettingDefinition<T>, 'default'> & { readonly config?: C; readonly default?: NoInfer<T> | (() => NoInfer<T>) },
): Omit<SettingDefinition<T>, 'config'> & { readonly config?: C } {
  return d;
}

/**
 * The table. Its order is the order of `legacy --help`'s global options; rows without a flag
 * follow. A row's key is the flag's attribute name (`--base-url` → baseUrl), checked by a test.
 */
export const SETTINGS = {
  env: def({
    flag: '-e, --env <name>',
    env: 'LEGACY_ENV',
    config: 'top',
    configKey: 'defaultEnv',
    type: checked('an environment name', (raw) => (validateEnvName(raw) ? `'${raw}' is not an environment name` : undefined)),
    default: 'live',
    defaultText: 'the config\'s defaultEnv, else "live"',
    description: 'environment to use',
    complete: 'environments',
  }),
  baseUrl: def({
    flag: '--base-url <url>',
    env: 'LEGACY_BASE_URL',
    config: 'environment',
    type: baseUrl,
    description: "server URL, overriding the environment's",
  }),
  configDir: def({
    flag: '--config-dir <dir>',
    env: 'LEGACY_CONFIG_DIR',
    type: text,
    defaultText: "the platform's, e.g. ~/.config/legacy",
    description: 'configuration and session directory',
  }),
  dataDir: def({
    flag: '--data-dir <dir>',
    env: 'LEGACY_DATA_DIR',
    type: text,
    defaultText: "the platform's, e.g. ~/.local/share/legacy",
    description: 'data directory: sync databases, audit log',
  }),
  session: def({
    flag: '--session <name>',
    env: 'LEGACY_SESSION',
    type: checked('a session name', (raw) => (NAME.test(raw) ? undefined : `session name '${raw}' must be letters, digits, '.', '-' or '_'`)),
    default: 'default',
    description: 'named session slot for isolated workflows',
  }),
  timeout: def({ flag: '--timeout <ms>', env: 'LEGACY_TIMEOUT', config: 'both', type: integer(1), default: 60_000, description: 'per-request timeout in ms' }),
  retries: def({
    flag: '--retries <n>',
    env: 'LEGACY_RETRIES',
    config: 'both',
    type: integer(0, 100),
    default: 3,
    description: 'retries for transient failures',
  }),
  verbose: def({ flag: '-v, --verbose', counted: true, type: flagOnly, description: 'more output on stderr (-vv for debug)' }),
  quiet: def({ flag: '-q, --quiet', type: flagOnly, description: 'only errors on stderr' }),
  logLevel: def({
    flag: '--log-level <level>',
    env: 'LEGACY_LOG_LEVEL',
    type: oneOf(['error', 'warn', 'info', 'debug'] as const, { warning: 'warn' }),
    default: 'warn',
    defaultText: 'warn; -v info, -vv debug, -q error',
    description: 'error, warn, info or debug',
    complete: ['error', 'warn', 'info', 'debug'],
  }),
  logFile: def({ flag: '--log-file <path>', env: 'LEGACY_LOG_FILE', type: text, description: 'also write logs to this file' }),
  logFormat: def({
    flag: '--log-format <format>',
    env: 'LEGACY_LOG_FORMAT',
    type: oneOf(['text', 'json'] as const),
    default: 'text',
    description: 'text or json',
    complete: ['text', 'json'],
  }),
  color: def({ flag: '--no-color', type: flagOnly, description: 'no colour (also NO_COLOR)' }),
  insecure: def({
    flag: '--insecure',
    config: 'both',
    type: boolean,
    default: false,
    description: 'do not verify TLS certificates (prefer the environment setting "insecure")',
  }),
  passwordStdin: def({ flag: '--password-stdin', type: flagOnly, description: 'read the password for servers that require login from standard input' }),
  debug: def({ flag: '--debug', env: 'LEGACY_DEBUG', type: boolean, default: false, description: 'show stack traces on errors' }),
  har: def({
    flag: '--har <file>',
    type: text,
    description: "record the run's HTTP exchanges as an HTTP Archive (HAR 1.2; cookies and passwords masked; 0600)",
  }),
  breaker: def({
    flag: '--no-breaker',
    env: 'LEGACY_BREAKER',
    config: 'both',
    type: boolean,
    default: true,
    description: "ignore the environment's circuit breaker: send even when it is open, and record nothing",
  }),
  metricsFile: def({
    flag: '--metrics-file <path>',
    env: 'LEGACY_METRICS_FILE',
    config: 'both',
    type: path,
    description: 'at the end of the run, merge its metrics into this Prometheus textfile',
  }),
  // ---- no flag ----------------------------------------------------------------------------------
  pageSize: def({ config: 'both', type: integer(1, 100_000), default: 1000, description: 'rows per page (get-table --page-size)' }),
  concurrency: def({
    config: 'both',
    type: integer(1, 32),
    defaultText: 'adaptive',
    description: "pins get-table's and sync's pages in flight (without it both adapt to the server)",
  }),
  sessionIdleMinutes: def({ config: 'both', type: positiveNumber, default: 60, description: 'idle minutes after which the server forgets a session (4D: 60)' }),
  licenceWaitMs: def({
    env: 'LEGACY_LICENCE_WAIT_MS',
    config: 'both',
    type: integer(0),
    default: 60_000,
    description: 'the most the waits while all licences are in use (402) may add up to, in ms',
  }),
  licenceRetries: def({
    env: 'LEGACY_LICENCE_RETRIES',
    config: 'both',
    type: integer(0),
    default: 5,
    description: 'retries after a 402 (all licences in use)',
  }),
  sessionStore: def({
    env: 'LEGACY_SESSION_STORE',
    config: 'both',
    type: checked("'file' or a redis:// URL", sessionStoreProblem),
    default: 'file',
    description: "where sessions are kept: 'file' (sessions.json) or redis://[user:password@]host:port/db",
  }),
  sessionStoreStrict: def({
    env: 'LEGACY_SESSION_STORE_STRICT',
    config: 'both',
    type: boolean,
    default: false,
    description: 'with a Redis store: exit 69 when Redis is down instead of falling back to the file',
  }),
  maxSessions: def({
    env: 'LEGACY_MAX_SESSIONS',
    config: 'both',
    type: integer(1),
    description: 'licence budget: at most this many server sessions for the server, across every host (Redis store)',
  }),
  licenceLeaseMs: def({
    env: 'LEGACY_LICENCE_LEASE_MS',
    config: 'both',
    // A run renews it every third; shorter, a pause of the run (GC, a large page) would let another
    // run take the place of a live session and log it out.
    type: integer(5000),
    default: 30_000,
    description: 'with a licence budget: how long the place of a run that died stays taken, in ms (a live run renews it)',
  }),
  syncBusyTimeoutMs: def({
    env: 'LEGACY_SYNC_BUSY_TIMEOUT_MS',
    config: 'both',
    type: integer(0),
    default: 5000,
    description: 'how long the sync commands wait for a database another run is writing, in ms, before exit 75',
  }),
  syncDb: def({
    env: 'LEGACY_SYNC_DB',
    config: 'environment',
    configKey: 'sync.db',
    type: {
      ...text,
      expect: 'an absolute path or a postgres:// URL',
      problem: (v) =>
        typeof v === 'string' && (/^postgres(ql)?:\/\//i.test(v) || isAbsolute(v)) ? undefined : 'must be an absolute path or a postgres:// URL',
    },
    defaultText: '<data dir>/<env>.sqlite',
    description: 'where sync writes when the command gives no --db: an SQLite path or a postgres:// URL',
  }),
  authentifyBody: def({
    env: 'LEGACY_AUTHENTIFY_BODY',
    config: 'both',
    type: json('a JSON array of parameters', authentifyBodyProblem),
    defaultText: '[{"name":"{user}","password":"{password}"}]',
    description: "force login: the parameters sent to the application's authentify(), with {user} and {password}",
  }),
  breakerFailures: def({
    env: 'LEGACY_BREAKER_FAILURES',
    config: 'both',
    type: integer(1),
    default: 5,
    description: 'unavailable runs within the window that open the breaker',
  }),
  breakerWindowMs: def({ env: 'LEGACY_BREAKER_WINDOW_MS', config: 'both', type: integer(1), default: 600_000, description: "the breaker's window, in ms" }),
  breakerCoolDownMs: def({
    env: 'LEGACY_BREAKER_COOL_DOWN_MS',
    config: 'both',
    type: integer(1),
    default: 60_000,
    description: 'how long an open breaker refuses runs before one run probes the server, in ms',
  }),
  breakerMaxCoolDownMs: def({
    env: 'LEGACY_BREAKER_MAX_COOL_DOWN_MS',
    config: 'both',
    type: integer(1),
    default: 600_000,
    description: 'the cool-down doubles after each failed probe, up to this (ms)',
  }),
  username: def({
    env: 'LEGACY_USERNAME',
    alsoEnv: ['LEGACY_<ENV>_USERNAME'],
    config: 'environment',
    type: text,
    description: 'user name for servers that require a login',
  }),
  password: def({
    env: 'LEGACY_PASSWORD',
    alsoEnv: ['LEGACY_<ENV>_PASSWORD'],
    config: 'environment',
    type: text,
    secret: true,
    description: 'password for servers that require a login (also --password-stdin)',
  }),
  transcode: def({
    env: 'LEGACY_TRANSCODE',
    type: boolean,
    default: true,
    description: 'get-table encodes from the page bytes; 0: from JSON.parse of each page (the same output)',
  }),
  webhookSecret: def({
    env: 'LEGACY_WEBHOOK_SECRET',
    type: text,
    secret: true,
    description: 'the Standard Webhooks signing secret (whsec_...) of watch --webhook',
  }),
  webhookBackoffMs: def({
    env: 'LEGACY_WEBHOOK_BACKOFF_MS',
    type: integer(1),
    default: 500,
    description: 'the first wait between webhook attempts in ms (doubled each attempt, up to 30 s)',
  }),
};

export type SettingName = keyof typeof SETTINGS;

/** A setting's value type. */
export type SettingValue<K extends SettingName> = (typeof SETTINGS)[K]['type'] extends SettingType<infer T> ? T : never;

type KeysWhere<Scope extends ConfigScope> = {
  [K in SettingName]: Scope extends (typeof SETTINGS)[K]['config'] ? K : never;
}[SettingName];

/** The settings that may be given per environment and, as fallbacks, under `defaults`. */
export type EnvironmentSettings = { [K in KeysWhere<'both'>]?: SettingValue<K> };

/** The keys config.json accepts under `defaults` (and per environment). */
export const SHARED_CONFIG_KEYS = (Object.keys(SETTINGS) as SettingName[]).filter((k) => (SETTINGS[k] as SettingDefinition).config === 'both');

/** The settings with a global flag, in the table's order. */
export const FLAG_SETTINGS = (Object.keys(SETTINGS) as SettingName[]).filter((k) => (SETTINGS[k] as SettingDefinition).flag !== undefined);

/** A problem said of its subject: "LEGACY_TIMEOUT must be …", "--base-url: 'x' is not a valid URL". */
export function saying(subject: string, problem: string): string {
  return /^(must|is|has) /.test(problem) ? `${subject} ${problem}` : `${subject}: ${problem}`;
}

/** A problem as it may be shown: a secret row's never quotes the value (it says what the value must be). */
export function problemToShow(d: SettingDefinition, problem: string): string {
  return d.secret ? `must be ${d.type.expect}` : problem;
}

/** The default of a row as text for `--help`, if it has one. */
export function defaultText(d: SettingDefinition): string | undefined {
  if (d.defaultText) return d.defaultText;
  if (d.default === undefined || typeof d.default === 'function') return undefined;
  return typeof d.default === 'string' ? `"${d.default}"` : String(d.default);
}

/** The global option's help line: its description, the variable that also sets it, its default. */
export function helpLine(d: SettingDefinition): string {
  const negated = /(^|\s)--no-/.test(d.flag ?? '');
  const notes: string[] = [];
  if (d.env) notes.push(negated ? `${d.env}=0` : d.env);
  const shown = d.flag?.includes('<') ? defaultText(d) : undefined;
  if (shown) notes.push(`default ${shown}`);
  return notes.length ? `${d.description} (${notes.join('; ')})` : d.description;
}
