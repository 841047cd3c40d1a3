/** Start the real emulator (built, in-process) on a random loopback port, and talk to its control API. */
import { it } from 'vitest';
import { startEmulator, type EmulatorOptions, type RunningEmulator } from '../../src/emulator/index.js';
import { tempDir } from './cli.js';

/**
 * The two orders in which 4D servers may decode and split a URL (4d-rest-protocol.md §1). Every
 * test that sends a filter, a count, a bulk read or a sync window runs under both (describe.each).
 */
export const URL_DECODINGS = ['whole', 'split'] as const;

/**
 * The 4D generation the emulator plays in this test run, chosen by the test runner's matrix
 * (test/vitest.config.ts): EMU_GENERATION = v18 | v20 | v20r (default) | v21, and for v21
 * EMU_REFUSAL_STATUS = 401 | 403 (how force login refuses a request without a session).
 * Every server a test starts plays it unless the test chooses a generation itself.
 */
export const GENERATION = (process.env.EMU_GENERATION ?? 'v20r') as 'v18' | 'v20' | 'v20r' | 'v21';
export const REFUSAL_STATUS = Number(process.env.EMU_REFUSAL_STATUS ?? 401) as 401 | 403;
/** Force login needs a user: under v21 servers get these credentials unless a test sets `auth` itself. */
export const MATRIX_AUTH = { user: 'cron', password: 'matrix-secret' };
export const FORCE_LOGIN = GENERATION === 'v21';
/** This run is one of the generation matrix's projects, not the default one (v20r). */
export const IN_MATRIX = process.env.EMU_GENERATION !== undefined;
/**
 * A behaviour test that the 4D generation cannot change (data formats, input checks, local files,
 * conflicts decided by the stamp): it runs in the default project only. The matrix projects run
 * again the tests whose outcome the generation can change: sessions, cookies, logins, refusals,
 * requests counted, runs stopped or faulted in a session.
 */
export const itOnce = it.skipIf(IN_MATRIX);

/** The session cookie names a server of this generation sets (sorted), with the default app name. */
export const COOKIE_NAMES = { v18: ['WASID4D'], v20: ['4DSID_WSZ-DB'], v20r: ['4DSID_WSZ-DB', 'WASID4D'], v21: ['4DSID_WSZ-DB'] }[GENERATION];

export interface TestServer {
  emu: RunningEmulator;
  url: string;
  /** Environment for spawned CLIs: a fresh config dir and this server as the base URL. */
  env: Record<string, string>;
  configDir: string;
  dataDir: string;
  control<T = unknown>(path: string, body?: unknown, method?: string): Promise<T>;
  stats(): Promise<Record<string, any>>;
  stop(): Promise<void>;
}

export async function startServer(options: EmulatorOptions = {}): Promise<TestServer> {
  // A worker reused across projects (no isolation) would keep another project's generation.
  if ((process.env.EMU_GENERATION ?? 'v20r') !== GENERATION || Number(process.env.EMU_REFUSAL_STATUS ?? 401) !== REFUSAL_STATUS) {
    throw new Error(
      `this worker loaded the helpers under ${GENERATION}/${REFUSAL_STATUS}, but runs ${process.env.EMU_GENERATION ?? 'v20r'}/${process.env.EMU_REFUSAL_STATUS ?? 401}`,
    );
  }
  const generation = options.generation ?? GENERATION;
  const matrixAuth = generation === 'v21' && options.auth === undefined;
  const emu = await startEmulator({
    host: '127.0.0.1',
    port: 0,
    quiet: true,
    generation,
    ...(generation === 'v21' ? { refusalStatus: REFUSAL_STATUS } : {}),
    ...(matrixAuth ? { auth: MATRIX_AUTH } : {}),
    ...options,
  });
  const configDir = tempDir('legacy-cfg-');
  const dataDir = tempDir('legacy-data-');
  const control = async <T>(path: string, body?: unknown, method?: string): Promise<T> => {
    const res = await fetch(`${emu.url}/__emulator/${path}`, {
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`control ${path} → ${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  return {
    emu,
    url: emu.url,
    configDir,
    dataDir,
    env: {
      LEGACY_CONFIG_DIR: configDir,
      LEGACY_DATA_DIR: dataDir,
      LEGACY_BASE_URL: emu.url,
      LEGACY_ENV: 'test',
      ...(matrixAuth ? { LEGACY_USERNAME: MATRIX_AUTH.user, LEGACY_PASSWORD: MATRIX_AUTH.password } : {}),
    },
    control,
    stats: () => control('stats'),
    stop: () => emu.stop(),
  };
}
