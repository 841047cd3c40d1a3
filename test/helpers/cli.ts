/**
 * Test helpers: spawn the built CLI (bin/legacy.js → dist/) with a temporary config dir, and
 * start the emulator on a random loopback port. Nothing we own is mocked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'legacy.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  cwd?: string;
  timeoutMs?: number;
}

const tempDirs: string[] = [];

export function tempDir(prefix = 'legacy-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export function cleanupTempDirs(): void {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** A clean environment: no LEGACY_* from the developer's shell, no colour. */
export function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('LEGACY_') && k !== 'FORCE_COLOR' && k !== 'NO_COLOR') env[k] = v;
  }
  env.NO_COLOR = '1';
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export function spawnCli(args: string[], options: CliOptions = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: baseEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export function collect(child: ChildProcess, options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CLI timed out after ${options.timeoutMs ?? 60_000} ms\nstdout: ${stdout.slice(0, 2000)}\nstderr: ${stderr.slice(0, 2000)}`));
    }, options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    else child.stdin!.end();
  });
}

/** Run `legacy <args>` to completion. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return collect(spawnCli(args, options), options);
}

/** Run a shell pipeline (bash) with the same clean environment. */
export function runShell(script: string, options: CliOptions = {}): Promise<CliResult> {
  const child = spawn('bash', ['-c', script], { cwd: options.cwd ?? ROOT, env: baseEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  return collect(child, options);
}

/** Start `legacy <args>`, send SIGINT (Ctrl-C) after `afterMs`, and collect the outcome. */
export async function interruptCli(args: string[], options: CliOptions & { afterMs?: number } = {}): Promise<CliResult> {
  const child = spawnCli(args, options);
  const done = collect(child, options);
  await new Promise((resolve) => setTimeout(resolve, options.afterMs ?? 1500));
  child.kill('SIGINT');
  return done;
}
