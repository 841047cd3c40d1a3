/**
 * Defaults and validation of emulator options, shared by `startEmulator`, the control API and the CLI.
 */
import {
  DEFAULT_FAULT_KINDS,
  FAULT_KINDS,
  GENERATIONS,
  type EmulatorOptions,
  type Generation,
  type FaultKind,
  type FaultOptions,
  type RuntimeOptionsPatch,
} from './types.js';

export class OptionError extends Error {
  override name = 'OptionError';
}

export interface ResolvedFaults {
  rate: number;
  kinds: FaultKind[];
  seed: number;
  slowMs: number;
  expireEvery: number;
}

/** Options that can change at runtime. */
export interface RuntimeOptions {
  maxSessions: number;
  sessionTimeoutMs: number;
  auth: { user: string; password: string } | null;
  latencyMs: number;
  faults: ResolvedFaults;
  scalable: boolean;
  duplicateCookie: 'reject' | 'first-wins';
  strictDateCompare: 'reject' | 'allow';
  quotedTimestamps: boolean;
  urlDecoding: 'whole' | 'split';
  ignoreFilters: boolean;
  savedFilterWithoutParams: boolean;
  brokenPaging: 'none' | 'ignore-top' | 'ignore-skip' | 'short';
  lifeTimeUnit: 'minutes' | 'seconds';
  generation: Generation;
  refusalStatus: 401 | 403;
  authentifyUserField: 'name' | 'identifier';
  /** Deduplicated table names (checked against the data by EmulatorCore). */
  readOnlyTables: string[];
  infoAdminOnly: boolean;
  loginRefusal: 'result-false' | '401';
  headerDecoding: 'utf8' | 'latin1';
  verbose: boolean;
  quiet: boolean;
}

export interface ResolvedOptions {
  host: string;
  port: number;
  data: string;
  rows: Record<string, number>;
  seed: number;
  appName: string | null; // null = default (or the fixture's appName)
  /** Tables with data change tracking: 'all', a non-empty list (deduplicated), or null (off). Start-time only. */
  changeTracking: 'all' | string[] | null;
  runtime: RuntimeOptions;
}

export const DEFAULT_APP_NAME = 'WSZ-DB';
export const DEFAULT_PORT = 8090;
export const DEFAULT_SESSION_TIMEOUT_MS = 60 * 60 * 1000;

function nonNegInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new OptionError(`${name} must be a non-negative integer`);
  return v;
}

function nonNegNumber(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new OptionError(`${name} must be a non-negative number`);
  return v;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new OptionError(`${name} must be one of ${allowed.join(', ')}`);
  }
  return v as T;
}

function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new OptionError(`${name} must be a boolean`);
  return v;
}

function resolveAuth(v: unknown): { user: string; password: string } | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object') throw new OptionError('auth must be {user, password} or null');
  const { user, password } = v as { user?: unknown; password?: unknown };
  if (typeof user !== 'string' || user === '' || typeof password !== 'string') {
    throw new OptionError('auth must be {user, password} with a non-empty user');
  }
  return { user, password };
}

function resolveFaults(f: FaultOptions | undefined, base?: ResolvedFaults): ResolvedFaults {
  const out: ResolvedFaults = base ? { ...base, kinds: [...base.kinds] } : { rate: 0, kinds: [...DEFAULT_FAULT_KINDS], seed: 1, slowMs: 5000, expireEvery: 0 };
  if (f === undefined) return out;
  if (f === null || typeof f !== 'object') throw new OptionError('faults must be an object');
  if (f.rate !== undefined) {
    out.rate = nonNegNumber('faults.rate', f.rate);
    if (out.rate > 1) throw new OptionError('faults.rate must be between 0 and 1');
  }
  if (f.kinds !== undefined) {
    if (!Array.isArray(f.kinds) || f.kinds.length === 0) throw new OptionError('faults.kinds must be a non-empty array');
    out.kinds = f.kinds.map((k) => oneOf('fault kind', k, FAULT_KINDS));
  }
  if (f.seed !== undefined) out.seed = nonNegInt('faults.seed', f.seed);
  if (f.slowMs !== undefined) out.slowMs = nonNegInt('faults.slowMs', f.slowMs);
  if (f.expireEvery !== undefined) out.expireEvery = nonNegInt('faults.expireEvery', f.expireEvery);
  return out;
}

/** Applies a runtime patch on top of `base` (validated; returns a new object). */
export function applyRuntimePatch(base: RuntimeOptions, patch: RuntimeOptionsPatch): RuntimeOptions {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw new OptionError('options must be an object');
  const allowed = new Set([
    'maxSessions',
    'sessionTimeoutMs',
    'auth',
    'latencyMs',
    'faults',
    'scalable',
    'duplicateCookie',
    'strictDateCompare',
    'quotedTimestamps',
    'urlDecoding',
    'ignoreFilters',
    'savedFilterWithoutParams',
    'brokenPaging',
    'lifeTimeUnit',
    'generation',
    'refusalStatus',
    'authentifyUserField',
    'readOnlyTables',
    'infoAdminOnly',
    'loginRefusal',
    'headerDecoding',
    'verbose',
    'quiet',
  ]);
  for (const k of Object.keys(patch)) {
    if (!allowed.has(k)) throw new OptionError(`option ${k} cannot be changed at runtime`);
  }
  const out: RuntimeOptions = { ...base };
  if (patch.maxSessions !== undefined) out.maxSessions = nonNegInt('maxSessions', patch.maxSessions);
  if (patch.sessionTimeoutMs !== undefined) {
    out.sessionTimeoutMs = nonNegInt('sessionTimeoutMs', patch.sessionTimeoutMs);
    if (out.sessionTimeoutMs === 0) throw new OptionError('sessionTimeoutMs must be positive');
  }
  if (patch.auth !== undefined) out.auth = resolveAuth(patch.auth);
  if (patch.latencyMs !== undefined) out.latencyMs = nonNegInt('latencyMs', patch.latencyMs);
  if (patch.faults !== undefined) out.faults = resolveFaults(patch.faults, base.faults);
  if (patch.scalable !== undefined) out.scalable = bool('scalable', patch.scalable);
  if (patch.duplicateCookie !== undefined) {
    out.duplicateCookie = oneOf('duplicateCookie', patch.duplicateCookie, ['reject', 'first-wins'] as const);
  }
  if (patch.strictDateCompare !== undefined) {
    out.strictDateCompare = oneOf('strictDateCompare', patch.strictDateCompare, ['reject', 'allow'] as const);
  }
  if (patch.quotedTimestamps !== undefined) out.quotedTimestamps = bool('quotedTimestamps', patch.quotedTimestamps);
  if (patch.urlDecoding !== undefined) out.urlDecoding = oneOf('urlDecoding', patch.urlDecoding, ['whole', 'split'] as const);
  if (patch.ignoreFilters !== undefined) out.ignoreFilters = bool('ignoreFilters', patch.ignoreFilters);
  if (patch.savedFilterWithoutParams !== undefined) {
    out.savedFilterWithoutParams = bool('savedFilterWithoutParams', patch.savedFilterWithoutParams);
  }
  if (patch.brokenPaging !== undefined) out.brokenPaging = oneOf('brokenPaging', patch.brokenPaging, ['none', 'ignore-top', 'ignore-skip', 'short'] as const);
  if (patch.lifeTimeUnit !== undefined) out.lifeTimeUnit = oneOf('lifeTimeUnit', patch.lifeTimeUnit, ['minutes', 'seconds'] as const);
  if (patch.generation !== undefined) out.generation = oneOf('generation', patch.generation, GENERATIONS);
  if (patch.refusalStatus !== undefined) {
    if (patch.refusalStatus !== 401 && patch.refusalStatus !== 403) throw new OptionError('refusalStatus must be 401 or 403');
    out.refusalStatus = patch.refusalStatus;
  }
  if (patch.authentifyUserField !== undefined) {
    out.authentifyUserField = oneOf('authentifyUserField', patch.authentifyUserField, ['name', 'identifier'] as const);
  }
  if (patch.readOnlyTables !== undefined) out.readOnlyTables = tableList('readOnlyTables', patch.readOnlyTables);
  if (patch.infoAdminOnly !== undefined) out.infoAdminOnly = bool('infoAdminOnly', patch.infoAdminOnly);
  if (patch.loginRefusal !== undefined) out.loginRefusal = oneOf('loginRefusal', patch.loginRefusal, ['result-false', '401'] as const);
  if (patch.headerDecoding !== undefined) out.headerDecoding = oneOf('headerDecoding', patch.headerDecoding, ['utf8', 'latin1'] as const);
  if (patch.verbose !== undefined) out.verbose = Boolean(patch.verbose);
  if (patch.quiet !== undefined) out.quiet = Boolean(patch.quiet);
  return out;
}

/** A list of table names (trimmed, deduplicated; an empty list is allowed). Names are checked against the data later. */
function tableList(name: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.some((n) => typeof n !== 'string' || n.trim() === '')) throw new OptionError(`${name} must be an array of table names`);
  return [...new Set((v as string[]).map((n) => n.trim()))];
}

/** `changeTracking`: true → 'all'; false/absent/[] → null (off); a list of table names (checked against the data later). */
function resolveChangeTracking(v: unknown): 'all' | string[] | null {
  if (v === undefined || v === false) return null;
  if (v === true) return 'all';
  if (!Array.isArray(v) || v.some((n) => typeof n !== 'string' || n.trim() === '')) {
    throw new OptionError('changeTracking must be a boolean or an array of table names');
  }
  const names = [...new Set((v as string[]).map((n) => n.trim()))];
  return names.length === 0 ? null : names;
}

export function resolveOptions(o: EmulatorOptions = {}): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new OptionError('options must be an object');
  const host = o.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host === '') throw new OptionError('host must be a non-empty string');
  const port = o.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new OptionError('port must be an integer 0-65535');
  const data = o.data ?? 'demo';
  if (typeof data !== 'string' || data === '') throw new OptionError('data must be "demo" or a path to a JSON fixture');
  const rows: Record<string, number> = {};
  if (o.rows !== undefined) {
    if (o.rows === null || typeof o.rows !== 'object') throw new OptionError('rows must be an object of row counts');
    for (const [t, n] of Object.entries(o.rows)) rows[t] = nonNegInt(`rows.${t}`, n);
  }
  const seed = o.seed === undefined ? 1 : nonNegInt('seed', o.seed);
  let appName: string | null = null;
  if (o.appName !== undefined) {
    if (typeof o.appName !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(o.appName)) {
      throw new OptionError('appName must be a non-empty cookie-safe name (letters, digits, _ . -)');
    }
    appName = o.appName;
  }
  const changeTracking = resolveChangeTracking(o.changeTracking);
  const defaults: RuntimeOptions = {
    maxSessions: 3,
    sessionTimeoutMs: DEFAULT_SESSION_TIMEOUT_MS,
    auth: null,
    latencyMs: 0,
    faults: resolveFaults(undefined),
    scalable: true,
    duplicateCookie: 'reject',
    strictDateCompare: 'allow',
    quotedTimestamps: false,
    urlDecoding: 'whole',
    ignoreFilters: false,
    savedFilterWithoutParams: false,
    brokenPaging: 'none',
    lifeTimeUnit: 'seconds',
    generation: 'v20r',
    refusalStatus: 401,
    authentifyUserField: 'name',
    readOnlyTables: [],
    infoAdminOnly: false,
    loginRefusal: 'result-false',
    headerDecoding: 'utf8',
    verbose: false,
    quiet: false,
  };
  const runtime = applyRuntimePatch(defaults, {
    maxSessions: o.maxSessions,
    sessionTimeoutMs: o.sessionTimeoutMs,
    auth: o.auth,
    latencyMs: o.latencyMs,
    faults: o.faults,
    scalable: o.scalable,
    duplicateCookie: o.duplicateCookie,
    strictDateCompare: o.strictDateCompare,
    quotedTimestamps: o.quotedTimestamps,
    urlDecoding: o.urlDecoding,
    ignoreFilters: o.ignoreFilters,
    savedFilterWithoutParams: o.savedFilterWithoutParams,
    brokenPaging: o.brokenPaging,
    lifeTimeUnit: o.lifeTimeUnit,
    generation: o.generation,
    refusalStatus: o.refusalStatus,
    authentifyUserField: o.authentifyUserField,
    readOnlyTables: o.readOnlyTables,
    infoAdminOnly: o.infoAdminOnly,
    loginRefusal: o.loginRefusal,
    headerDecoding: o.headerDecoding,
    verbose: o.verbose,
    quiet: o.quiet,
  });
  return { host, port, data, rows, seed, appName, changeTracking, runtime };
}
