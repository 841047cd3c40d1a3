/**
 * Shared pieces of the reliability and security suite (issue 8). Everything runs against the real
 * emulator or tiny real HTTP servers on 127.0.0.1; nothing is mocked.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';
import { expect } from 'vitest';
import type { CliResult } from '../helpers/cli.js';

/** `npm run test:stress` sets LEGACY_STRESS=1: the long, heavy variants run only then. */
export const STRESS = Boolean(process.env.LEGACY_STRESS);

/** The default-path size, or the stress size. */
export function size<T>(normal: T, stress: T): T {
  return STRESS ? stress : normal;
}

export const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A small seeded PRNG (mulberry32): the same seed gives the same kill times, command mix and values. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Non-empty stderr lines. */
export function stderrLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((line) => line.trim() !== '');
}

export const STACK_TRACE = /\n\s+at\s/;

/** A clean failure: the expected exit code, exactly one bounded line on stderr, no stack trace. */
export function expectCleanFailure(r: CliResult, code: number, pattern?: RegExp): void {
  const shown = `stderr: ${r.stderr.slice(0, 600)}`;
  expect(r.signal, shown).toBeNull();
  expect(r.code, shown).toBe(code);
  expect(stderrLines(r), shown).toHaveLength(1);
  expect(r.stderr, shown).not.toMatch(STACK_TRACE);
  expect(r.stderr.length, 'one clear line, not a dump').toBeLessThan(2000);
  if (pattern) expect(r.stderr).toMatch(pattern);
}

/** Files in a directory (sorted), [] when it does not exist. */
export function listDir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/**
 * Files `-o FILE` leaves beside FILE while it runs or after it stopped: the temporary file
 * `.FILE.<pid>.<hex>.tmp`, and for a resumable export `.FILE.partial` with its record
 * `.FILE.resume.json` (and the lock `.FILE.resume.lock`, and the record's own temporary file, of a killed run).
 */
export function tempFilesFor(dir: string, name: string): string[] {
  const resumable = [`.${name}.partial`, `.${name}.resume.json`, `.${name}.resume.lock`];
  return listDir(dir).filter(
    (f) =>
      (f.startsWith(`.${name}.`) && f.endsWith('.tmp')) ||
      resumable.includes(f) ||
      new RegExp(`^\\.${name.replace(/\./g, '\\.')}\\.resume\\.json\\.\\d+$`).test(f),
  );
}

/** What a resumable `-o FILE` export that failed or was interrupted keeps beside FILE: nothing, or its partial file and record. */
export function resumableLeftovers(dir: string, name: string): boolean {
  const files = listDir(dir);
  return files.length === 0 || (files.length === 2 && files.includes(`.${name}.partial`) && files.includes(`.${name}.resume.json`));
}

/** Lines of a JSON-lines file that do not parse (plus a note if the last line is unterminated). */
export function badJsonLines(path: string): string[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const bad: string[] = [];
  if (text.length > 0 && !text.endsWith('\n')) bad.push(`unterminated last line: ${text.slice(text.lastIndexOf('\n') + 1, 200)}`);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      JSON.parse(line);
    } catch {
      bad.push(line.slice(0, 200));
    }
  }
  return bad;
}

/** Does the file parse as JSON? (absent → undefined) */
export function jsonProblem(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, 'utf8');
  try {
    JSON.parse(text);
    return undefined;
  } catch (error) {
    return `${basename(path)} is not valid JSON (${(error as Error).message}): ${JSON.stringify(text.slice(0, 200))}`;
  }
}

export const mode = (path: string) => statSync(path).mode & 0o777;

/**
 * Poll JSON files while something runs and record every moment one of them is not valid JSON,
 * or disappears after it existed (an atomic replace never makes a file vanish).
 */
export function watchJsonFiles(paths: string[], intervalMs = 15): { stop(): Promise<{ reads: number; problems: string[] }> } {
  let stopped = false;
  let reads = 0;
  const problems: string[] = [];
  const seen = new Set<string>();
  const loop = (async () => {
    while (!stopped) {
      for (const path of paths) {
        let text: string;
        try {
          text = await readFile(path, 'utf8');
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' && !seen.has(path)) continue;
          problems.push(`${basename(path)}: ${code ?? String(error)}`);
          continue;
        }
        seen.add(path);
        reads += 1;
        try {
          JSON.parse(text);
        } catch {
          problems.push(`${basename(path)} not valid JSON: ${JSON.stringify(text.slice(0, 120))}`);
        }
      }
      await sleep(intervalMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { reads, problems };
    },
  };
}

export interface RawServer {
  url: string;
  port: number;
  server: Server;
  requests: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }>;
  close(): Promise<void>;
}

/** A tiny real HTTP server on 127.0.0.1 (random port) that records what it is sent. */
export async function startRawServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<RawServer> {
  const requests: RawServer['requests'] = [];
  const listener: RequestListener = (req, res) => {
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    handler(req, res);
  };
  const server = createServer(listener);
  return listen(server, 'http', requests);
}

export async function listen(server: Server, scheme: 'http' | 'https', requests: RawServer['requests'] = []): Promise<RawServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    server,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A loopback port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Wait until `probe` returns a truthy value (polling), or fail after `timeoutMs`. */
export async function waitFor<T>(probe: () => T | Promise<T>, timeoutMs: number, what: string, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
