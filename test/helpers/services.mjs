// Real redis-server and PostgreSQL for tests and benchmarks, each on a free 127.0.0.1 port with its
// data in a fresh temp dir. Plain ESM + JSDoc so vitest (.ts) and bench/*.mjs can both import it.
// As root the servers run as `postgres` (or `nobody`) through setpriv, which execs in place (the pid
// we hold is the server's) and sets a parent-death SIGKILL so a killed test run leaves no server
// behind; its temp dir is swept by the next start (each dir records its owner's pid).
import { execFile, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const HOST = '127.0.0.1';
const INSTALL = 'apt-get install -y redis-server postgresql';
const TOOLS_INSTALL = 'apt-get install -y prometheus python3-openpyxl';

/** True when a missing redis-server/PostgreSQL must fail the run instead of skipping (CI). */
export function servicesRequired() {
  return process.env.LEGACY_REQUIRE_SERVICES === '1';
}

/**
 * @returns {Promise<{ url: string, port: number, pid: number, stop(): Promise<void>, kill(): void } | undefined>}
 */
export async function startRedis() {
  const bin = onPath('redis-server');
  if (!bin) return missing('redis-server', 'Redis');
  const dir = tempDir('legacy-redis-');
  const server = await launch(
    'redis-server',
    dir,
    (port) => [bin, ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir]],
    ping,
  );
  return { url: `redis://${HOST}:${server.port}`, ...server };
}

/**
 * @returns {Promise<{ url: string, port: number, pid: number, newDatabase(name?: string): Promise<string>, stop(): Promise<void>, kill(): void } | undefined>}
 */
export async function startPostgres() {
  const bin = postgresBinDir();
  if (!bin) return missing('PostgreSQL (initdb/postgres)', 'PostgreSQL');
  const dir = tempDir('legacy-pg-');
  const data = join(dir, 'data');
  try {
    await run(asServiceUser(join(bin, 'initdb'), ['-D', data, '-U', 'legacy', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']), dir);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const logged = () => readLog(dir).includes('ready to accept connections');
  const server = await launch(
    'postgres',
    dir,
    (port) => [
      join(bin, 'postgres'),
      [
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        dir,
        '-c',
        `listen_addresses=${HOST}`,
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
      ],
    ],
    logged,
    'SIGINT',
  );
  let count = 0;
  /** @param {string} [name] */
  const newDatabase = async (name = `t${process.pid}_${++count}`) => {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`newDatabase: bad database name ${JSON.stringify(name)}`);
    await run([join(bin, 'createdb'), ['-h', HOST, '-p', String(server.port), '-U', 'legacy', name]], dir);
    return `postgres://legacy@${HOST}:${server.port}/${name}`;
  };
  try {
    await newDatabase('legacy');
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { url: `postgres://legacy@${HOST}:${server.port}/legacy`, ...server, newDatabase };
}

// ---------------------------------------------------------------------------------------------

/** Started servers → their temp dirs, killed and removed if the process exits without stop(). */
const live = new Map();
let exitHook = false;
const warned = new Set();

/**
 * Python with openpyxl (an independent xlsx reader): Debian's /usr/bin/python3 first (a pyenv
 * `python3` on PATH may lack it), else python3 on PATH.
 * @returns {string | undefined}
 */
export function openpyxlPython() {
  for (const python of ['/usr/bin/python3', onPath('python3')].filter(Boolean)) {
    try {
      execFileSync(python, ['-c', 'import openpyxl'], { stdio: 'ignore' });
      return python;
    } catch {}
  }
  return missing('python3-openpyxl', 'openpyxl (reading .xlsx files back)', TOOLS_INSTALL);
}

/**
 * promtool (Prometheus's checker of text exposition files).
 * @returns {string | undefined}
 */
export function promtool() {
  return onPath('promtool') ?? missing('promtool (Debian package prometheus)', 'promtool (checking metrics files)', TOOLS_INSTALL);
}

function missing(what, service, install = INSTALL) {
  const message = `${what} is not installed: the tests and benchmarks that need ${service} are SKIPPED; install with: ${install}`;
  if (servicesRequired()) throw new Error(`${message} (LEGACY_REQUIRE_SERVICES=1, so this is an error)`);
  if (!warned.has(what)) {
    warned.add(what);
    const bang = '!'.repeat(100);
    process.stderr.write(
      `\n${bang}\n!!!!\n!!!!  ${what} is not installed:\n!!!!  the tests and benchmarks that need ${service} are SKIPPED.\n!!!!  Install with: ${install}\n!!!!\n${bang}\n\n`,
    );
  }
  return undefined;
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const file = join(dir || '.', name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  return undefined;
}

/** The bin dir holding initdb, postgres and createdb: initdb's real dir on PATH, else the highest /usr/lib/postgresql/N/bin. */
function postgresBinDir() {
  const initdb = onPath('initdb');
  const candidates = initdb ? [dirname(realpathSync(initdb))] : [];
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => join(base, v, 'bin')));
  }
  return candidates.find((dir) => ['initdb', 'postgres', 'createdb'].every((b) => existsSync(join(dir, b))));
}

/** Who runs the servers: the current user, or as root `postgres` if it exists, else `nobody`. */
let serviceUser;
function userForServices() {
  if (serviceUser === undefined) {
    serviceUser = null;
    if (process.getuid?.() === 0) {
      for (const name of ['postgres', 'nobody']) {
        const entry = passwdEntry(name);
        if (entry) {
          const [, , uid, gid] = entry.split(':');
          serviceUser = { name, uid: Number(uid), gid: Number(gid) };
          break;
        }
      }
      if (!serviceUser) throw new Error('running as root but neither user postgres nor nobody exists to run the test services');
    }
  }
  return serviceUser;
}

function passwdEntry(name) {
  try {
    return execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim();
  } catch {
    return readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((line) => line.startsWith(`${name}:`));
  }
}

/** [cmd, args] wrapped to drop root and to die with its parent (setpriv execs in place; runuser forks). */
function asServiceUser(cmd, args) {
  const user = userForServices();
  const setpriv = onPath('setpriv');
  if (setpriv) {
    const ids = user ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups'] : [];
    return [setpriv, [...ids, '--pdeathsig', 'KILL', '--', cmd, ...args]];
  }
  return user ? ['runuser', ['-u', user.name, '--', cmd, ...args]] : [cmd, args];
}

/** A fresh temp dir owned by the service user and tagged with our pid; first removes the dirs of dead test runs. */
function tempDir(prefix) {
  const user = userForServices();
  for (const name of readdirSync(tmpdir()).filter((n) => /^legacy-(redis|pg)-/.test(n))) {
    const old = join(tmpdir(), name);
    try {
      process.kill(Number(readFileSync(join(old, 'owner.pid'), 'utf8')), 0);
      continue; // its owner is alive (or the file is unreadable: not ours to judge)
    } catch (error) {
      if (error.code !== 'ESRCH') continue;
    }
    try {
      rmSync(old, { recursive: true, force: true });
    } catch {}
  }
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  if (user) chownSync(dir, user.uid, user.gid);
  return dir;
}

/** Run a short command to completion; throws with its output on failure. */
async function run([cmd, args], cwd) {
  try {
    await promisify(execFile)(cmd, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  } catch (error) {
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${tail(`${error.stdout ?? ''}${error.stderr ?? ''}` || String(error))}`);
  }
}

function readLog(dir) {
  try {
    return readFileSync(join(dir, 'server.log'), 'utf8');
  } catch {
    return '';
  }
}

function tail(text, lines = 30) {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/** Resolves true when redis answers PING on the port. */
function ping(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    let reply = '';
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (d) => {
      reply += d;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/**
 * Start a server on a free port (a few tries if the port gets taken meanwhile), logging to
 * dir/server.log, and wait until ready(port) is true. stop() sends stopSignal, waits, removes dir.
 */
async function launch(name, dir, command, ready, stopSignal = 'SIGTERM') {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const [child, tmp] of live) {
        child.kill('SIGKILL');
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  }
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const log = openSync(join(dir, 'server.log'), 'w');
    const child = spawn(...asServiceUser(...command(port)), { cwd: dir, stdio: ['ignore', log, log] });
    child.unref(); // a forgotten stop() must not keep the process alive; the exit hook kills the server
    closeSync(log);
    let exited = false;
    const exit = new Promise((resolve) => {
      child.once('exit', resolve);
      child.once('error', resolve);
    }).then(() => {
      exited = true;
    });
    live.set(child, dir);
    const deadline = Date.now() + 30_000;
    while (!exited && Date.now() < deadline && !(await ready(port))) await sleep(20);
    if (!exited && Date.now() < deadline) {
      const stop = async () => {
        if (!exited) {
          child.kill(stopSignal);
          const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          await exit;
          clearTimeout(timer);
        }
        live.delete(child);
        rmSync(dir, { recursive: true, force: true });
      };
      return { port, pid: /** @type {number} */ (child.pid), stop, kill: () => void child.kill('SIGKILL') };
    }
    child.kill('SIGKILL');
    await exit;
    live.delete(child);
    const output = readLog(dir);
    if (/address already in use/i.test(output) && attempt < 5) continue;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `${name} did not start on ${HOST}:${port} (${exited ? `exited ${child.exitCode ?? child.signalCode}` : 'timed out after 30 s'}); its log ends with:\n${tail(output)}`,
    );
  }
}
