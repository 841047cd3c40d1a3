// Shared helpers for the benchmarks: run the emulator as its own process, spawn the CLI, measure
// wall time and peak RSS (VmHWM from /proc, polled until the process exits). Loopback only.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const legacyBin = join(root, 'bin', 'legacy.js');
export const emulatorBin = join(root, 'bin', 'legacy-emulator.js');

export function tempDir(prefix = 'legacy-bench-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Start `legacy-emulator` on a free loopback port; resolves when it prints its URL. */
export function startEmulatorProcess(args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [emulatorBin, '--host', '127.0.0.1', '--port', '0', '--quiet', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buffer = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      buffer += d;
      const m = /listening on (http:\/\/\S+)/.exec(buffer);
      if (m)
        resolve({
          url: m[1],
          child,
          stop: () =>
            new Promise((r) => {
              child.once('exit', r);
              child.kill('SIGTERM');
            }),
        });
    });
    child.once('exit', (code) => reject(new Error(`emulator exited ${code}`)));
  });
}

/** Peak resident memory of a running process in bytes (VmHWM from /proc; 0 when gone). */
export function peakRss(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** User + system CPU of a running process in ms (from /proc; 0 when gone). */
export function cpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /s, '')
      .split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in clock ticks of 10 ms
  } catch {
    return 0;
  }
}

/** Run a command; returns wall ms, exit code, peak RSS in bytes and CPU ms (as last seen, every 20 ms). */
export function measure(command, args, { env = process.env, stdout = 'ignore' } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { env, stdio: ['ignore', stdout, 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    let peak = 0;
    let cpu = 0;
    const timer = setInterval(() => {
      peak = Math.max(peak, peakRss(child.pid));
      cpu = Math.max(cpu, cpuMs(child.pid));
    }, 20);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearInterval(timer);
      resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, code, peakRss: peak, cpuMs: cpu, stderr });
    });
  });
}

export async function control(url, path, body) {
  const res = await fetch(
    `${url}/__emulator/${path}`,
    body === undefined ? undefined : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
  );
  return res.json();
}

export const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
export const s = (ms) => `${(ms / 1000).toFixed(2)} s`;

/** The environment of a bench's legacy runs: its own config and data dirs under `work`, the emulator at `url`. */
export function benchEnv(work, url) {
  return {
    ...process.env,
    LEGACY_CONFIG_DIR: join(work, 'cfg'),
    LEGACY_DATA_DIR: join(work, 'data'),
    LEGACY_BASE_URL: url,
    LEGACY_ENV: 'bench',
    NO_COLOR: '1',
  };
}
