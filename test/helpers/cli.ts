/**
 * Test helpers: run the CLI in-process (`runCli`: main(argv, io) from src/, the default) or as a
 * real process (`runProcess`, `spawnCli`: bin/legacy.js → dist/) for what needs one: signals,
 * pipes, exit codes of the process, file modes under a umask, crashes, cross-process locks.
 * Nothing we own is mocked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { BIN, ROOT } from './paths.js';
import { BIN, ROOT } from './paths.js';
import { runMain } from './run.js';

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

/** Run `legacy <args>` as a process, to completion. */
export function runProcess(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return collect(spawnCli(args, options), options);
}

/**
 * Run `legacy <args>` in this process (same code as the bin, minus the process wiring), with the
 * environment a spawned run would get (no LEGACY_* from the developer's shell, NO_COLOR).
 */
export async function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const run = runMain(args, { env: baseEnv(options.env), input: options.input, cwd: options.cwd });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`CLI timed out after ${options.timeoutMs ?? 60_000} ms: legacy ${args.join(' ')}`)), options.timeoutMs ?? 60_000);
  });
  try {
    const r = await Promise.race([run, timeout]);
    return { code: r.code, signal: null, stdout: r.stdout, stderr: r.stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Run a shell pipeline (bash) with the same clean environment. */
export function runShell(script: string, options: CliOptions = {}): Promise<CliResult> {
  const child = spawn('bash', ['-c', script], { cwd: options.cwd ?? ROOT, env: baseEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  return collect(child, options);
}

/** Start `legacy <args>`, send SIGINT (Ctrl-C) after `afterMs`, and collect the outcome. */
export async function interruptCli(
  args: string[],
  options: CliOptions & {
    afterMs?: number;
    /** Polled before the signal: the run is under way (on a loaded machine a fixed wait may end before it installed its handlers). */
    until?: () => Promise<boolean>;
  } = {},
): Promise<CliResult> {
  const child = spawnCli(args, options);
  const done = collect(child, options);
  await new Promise((resolve) => setTimeout(resolve, options.afterMs ?? 1500));
  const deadline = Date.now() + 30_000;
  while (options.until && !(await options.until()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  child.kill('SIGINT');
  return done;
}
