/**
 * Helpers for the emulator tests: an in-process emulator on a free loopback port and a raw HTTP client.
 * The client sends the request target verbatim (node:http `path`), so tests control quoting and
 * percent-encoding exactly, and it keeps one `Cookie` header like a careful 4D client.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startEmulator, type EmulatorOptions, type RunningEmulator } from '../../src/emulator/index.js';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** Parsed JSON body (undefined when the body is not JSON). */
  json: any;
  setCookies: string[];
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: unknown;
  /** Cookie header to send; default: the client's session cookie. null = none. */
  cookie?: string | null;
}

export function startTestEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  return startEmulator({ host: '127.0.0.1', port: 0, quiet: true, ...options });
}

/** Value of cookie `name` in the Set-Cookie headers of a reply. */
export function setCookieValue(reply: Reply, name: string): string | undefined {
  for (const c of reply.setCookies) {
    const [pair] = c.split(';');
    const eq = pair!.indexOf('=');
    if (pair!.slice(0, eq) === name) return pair!.slice(eq + 1);
  }
  return undefined;
}

export class Client {
  /** The session cookie this client sends (`WASID4D=<id>`, or `4DSID_<app>=<id>` from a server that sets no WASID4D), adopted from Set-Cookie replies. */
  cookie: string | undefined;
  private readonly port: number;

  constructor(readonly emu: RunningEmulator) {
    this.port = emu.port;
  }

  request(path: string, opts: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string | string[]> = { ...(opts.headers ?? {}) };
    const cookie = opts.cookie === undefined ? this.cookie : opts.cookie;
    if (cookie) headers.cookie = cookie;
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      // only spaces, controls and non-ASCII are percent-encoded (node:http refuses them raw); quotes, & and =
      // stay as typed so the server's quote-aware tokenizer is exercised
      const target = path.replace(/[^\x21-\x7e]+/gu, (m) => encodeURIComponent(m));
      const req = http.request({ host: '127.0.0.1', port: this.port, path: target, method: opts.method ?? (payload ? 'POST' : 'GET'), headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const setCookies = res.headers['set-cookie'] ?? [];
          const reply: Reply = { status: res.statusCode ?? 0, headers: res.headers, text, json, setCookies };
          // adopt the session cookie: WASID4D when the server sets it, else 4DSID_<app> (v20/v21 servers)
          const was = setCookieValue(reply, 'WASID4D');
          const sid = setCookies.map((c) => c.split(';')[0]!).find((pair) => pair.startsWith('4DSID_'));
          if (opts.cookie === undefined && (was || sid)) this.cookie = was ? `WASID4D=${was}` : sid;
          resolve(reply);
        });
      });
      req.on('error', reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  get(path: string, opts: RequestOptions = {}): Promise<Reply> {
    return this.request(path, opts);
  }

  post(path: string, body: unknown, opts: RequestOptions = {}): Promise<Reply> {
    return this.request(path, { ...opts, method: 'POST', body });
  }

  /** GET that must answer 200; returns the JSON body. */
  async ok(path: string, opts: RequestOptions = {}): Promise<any> {
    const r = await this.get(path, opts);
    if (r.status !== 200) throw new Error(`GET ${path} → ${r.status} ${r.text.slice(0, 300)}`);
    return r.json;
  }

  /** The session id currently held. */
  get sessionId(): string | undefined {
    return this.cookie?.split('=')[1];
  }
}

/** Percent-encodes a query value completely (as the legacy server's Python client did). */
export const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * A query value that reads the same under both URL decodings (`whole` and `split`): raw quotes around
 * percent-encoded runs. Runs without `"` go inside `"…"`, runs of `"` inside `'…'`; quoted runs join up, so
 * `Name = "x"` → `"Name%20%3D%20"'%22'"x"'%22'`. Both tokenizers drop the raw quotes and keep the content.
 */
export function quoted(s: string): string {
  if (s === '') return '""';
  return s
    .split(/("+)/)
    .filter((part) => part !== '')
    .map((part) => (part.startsWith('"') ? `'${enc(part)}'` : `"${enc(part)}"`))
    .join('');
}

/**
 * `$params` as the protocol reference's client rule sends it: a JSON array whose URL- and quote-special characters
 * are JSON escapes (`' " & = + # %` → `\u0027 \u0022 \u0026 \u003d \u002b \u0023 \u0025`; the structural
 * `"` of JSON strings stay), single-quoted, percent-encoded.
 */
export function jsonParams(values: unknown[]): string {
  const text = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(text).join(',')}]`;
    if (typeof v !== 'string') return JSON.stringify(v);
    const body = [...v].map((ch) => ('\'"&=+#%'.includes(ch) ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : JSON.stringify(ch).slice(1, -1)));
    return `"${body.join('')}"`;
  };
  return `'${enc(text(values))}'`;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Error codes of an `__ERROR` stack. */
export const errCodes = (r: Reply): number[] => ((r.json?.__ERROR ?? []) as Array<{ errCode: number }>).map((e) => e.errCode);

/**
 * One emulator per test file: started once, reset before every test, stopped at the end. `use`
 * receives the emulator and a fresh client before each test (after `reset`), then `prepare` runs.
 */
export function useEmulator(
  options: EmulatorOptions,
  use: (emu: RunningEmulator, client: Client) => void,
  prepare?: (emu: RunningEmulator, client: Client) => Promise<unknown> | undefined,
): void {
  let emu: RunningEmulator;
  beforeAll(async () => {
    emu = await startTestEmulator(options);
  });
  afterAll(() => emu.stop());
  beforeEach(async () => {
    emu.control.reset();
    const client = new Client(emu);
    use(emu, client);
    await prepare?.(emu, client);
  });
}
