/** Start the real emulator (built, in-process) on a random loopback port, and talk to its control API. */
import { startEmulator, type EmulatorOptions, type RunningEmulator } from '../../dist/emulator/index.js';
import { tempDir } from './cli.js';

/**
 * The two orders in which 4D servers may decode and split a URL (4d-rest-protocol.md §1). Every
 * test that sends a filter, a count, a bulk read or a sync window runs under both (describe.each).
 */
export const URL_DECODINGS = ['whole', 'split'] as const;

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
  const emu = await startEmulator({ host: '127.0.0.1', port: 0, quiet: true, ...options });
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
    },
    control,
    stats: () => control('stats'),
    stop: () => emu.stop(),
  };
}
