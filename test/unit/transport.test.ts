/**
 * The transport's own HTTP exchange (node:http, since issue 15) against got, the library it
 * replaced on the hot path: the same answers read the same way. A real local server serves every
 * shape a 4D server or a proxy in front of it can send (announced length, chunked, gzip, zlib and
 * raw deflate (which got could not read), brotli, empty bodies, error bodies, several Set-Cookie headers, a body cut short,
 * an answer that never comes), and each is read by got (with the options the transport used to
 * give it) and by Transport.send with no retries. Loopback only.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import got from 'got';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/index.js';
import { registerSecret } from '../../src/log/redact.js';
import { HAR_BODY_LIMIT, harEntry } from '../../src/transport/har.js';
import { Transport, TransportError, type Exchange } from '../../src/transport/index.js';

const PAGE = JSON.stringify({
  __COUNT: 3,
  __ENTITIES: [
    { __KEY: '1', Name: 'Müller & Söhne "GmbH"', Notiz: 'Zeile 1\nZeile 2', Preis: 12.5 },
    { __KEY: '2', Name: '𝄞 ü 中文', Notiz: null, Preis: -0.001 },
    { __KEY: '3', Name: 'x'.repeat(200_000), Notiz: '', Preis: 1e21 },
  ],
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const sendWith =
  (encoding: string | undefined, encode: (b: Buffer) => Buffer, chunked = false): Handler =>
  (_req, res) => {
    const body = encode(Buffer.from(PAGE));
    const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
    if (encoding) headers['content-encoding'] = encoding;
    if (!chunked) headers['content-length'] = String(body.length);
    res.writeHead(200, headers);
    if (chunked) {
      for (let i = 0; i < body.length; i += 7_000) res.write(body.subarray(i, i + 7_000));
      res.end();
    } else res.end(body);
  };

const CASES: Record<string, Handler> = {
  'announced length': sendWith(undefined, (b) => b),
  chunked: sendWith(undefined, (b) => b, true),
  gzip: sendWith('gzip', (b) => zlib.gzipSync(b)),
  'gzip, chunked': sendWith('gzip', (b) => zlib.gzipSync(b), true),
  'deflate (zlib)': sendWith('deflate', (b) => zlib.deflateSync(b)),
  brotli: sendWith('br', (b) => zlib.brotliCompressSync(b)),
  'empty 200': (_req, res) => res.writeHead(200, { 'content-length': '0' }).end(),
  '204': (_req, res) => res.writeHead(204).end(),
  'a 4D error': (_req, res) => {
    res
      .writeHead(404, { 'content-type': 'application/json' })
      .end(JSON.stringify({ __ERROR: [{ message: 'Dataclass not found', componentSignature: 'dbmg', errCode: 1800 }] }));
  },
  'several cookies': (_req, res) => {
    res.setHeader('set-cookie', ['WASID4D=abc; path=/; HttpOnly', 'other=1; path=/']);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  },
  'latin-1 text': (_req, res) => res.writeHead(400, { 'content-type': 'text/plain' }).end(Buffer.from([0x66, 0xfc, 0x72])),
  'echo request': (req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ method: req.method, length: req.headers['content-length'], body })),
    );
  },
};

const LENIENT: Record<string, Handler> = {
  'raw deflate': sendWith('deflate', (b) => zlib.deflateRawSync(b)),
};

const FAILURES: Record<string, Handler> = {
  'body cut short': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
    res.write('{"__ENTITIES":[');
    setTimeout(() => res.socket?.destroy(), 20);
  },
  'bad gzip': (_req, res) => res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': '5' }).end('hello'),
  'no answer': () => {},
};

let server: Server;
let base = '';
beforeAll(async () => {
  server = createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url!, 'http://x').pathname.slice(1));
    (CASES[name] ?? LENIENT[name] ?? FAILURES[name])!(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const transport = new Transport({ timeoutMs: 500, retries: 0, backoffMs: 1, logger: silentLogger });

/** got as the transport called it until issue 15. */
const viaGot = (url: string, body?: string) =>
  got(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { accept: 'application/json', 'user-agent': 'legacy-4d-cli' },
    body,
    throwHttpErrors: false,
    followRedirect: false,
    retry: { limit: 0 },
    timeout: { request: 500 },
  });

describe('the transport reads every answer as got did', () => {
  it.each(Object.keys(CASES))('%s', async (name) => {
    const url = base + encodeURIComponent(name);
    const body = name === 'echo request' ? '{"Name":"Grüße"}' : undefined;
    const expected = await viaGot(url, body);
    const actual = await transport.send({ method: body === undefined ? 'GET' : 'POST', url, body, idempotent: true });
    expect(actual.status).toBe(expected.statusCode);
    expect(actual.bytes).toBe(expected.rawBody.length);
    let json: unknown;
    try {
      json = expected.body.length ? JSON.parse(expected.body) : undefined;
    } catch {}
    expect(actual.json).toEqual(json);
    // A parsed success body is not kept twice; anything else is kept as text, as got gave it.
    if (json === undefined || actual.status >= 300) expect(actual.text).toBe(expected.body);
    expect(actual.setCookies).toEqual(expected.headers['set-cookie'] ?? []);
    expect(actual.headers['content-type']).toBe(expected.headers['content-type']);
  });

  it.each(Object.keys(FAILURES))('%s: both fail (no answer is made up)', async (name) => {
    const url = base + encodeURIComponent(name);
    await expect(viaGot(url)).rejects.toThrow();
    const error = await transport.send({ method: 'GET', url, idempotent: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TransportError);
    if (name === 'no answer') expect((error as Error).message).toMatch(/did not answer within 500 ms/);
  });

  it('deflate without the zlib header (which some servers send): read, where got gave up', async () => {
    const url = `${base}raw%20deflate`;
    await expect(viaGot(url)).rejects.toThrow(/incorrect header check/);
    expect((await transport.send({ method: 'GET', url, idempotent: true })).json).toEqual(JSON.parse(PAGE));
  });

  it('the decode hook reads a 200 body instead of JSON.parse, into the buffer it lends', async () => {
    const lent: Buffer[] = [];
    const response = await transport.send({
      method: 'GET',
      url: `${base}announced%20length`,
      idempotent: true,
      bodyBuffer: (n) => {
        lent.push(Buffer.alloc(n));
        return lent[0]!;
      },
      decode: (body) => ({ same: body === lent[0], text: body.toString() }),
    });
    expect(response.json).toEqual({ same: true, text: PAGE });
  });
});

describe('HAR entries mask before they cut', () => {
  const exchange = (body: string, error?: string): Exchange => ({
    requestId: 'r1',
    attempt: 0,
    startedAt: new Date(0),
    method: 'GET',
    url: 'http://127.0.0.1:1/rest/$info',
    requestHeaders: {},
    status: error ? 0 : 200,
    responseHeaders: {},
    responseBody: body,
    error,
    ms: 1,
    willRetry: false,
  });

  it('a secret or a sessionID across the 64 KiB cut leaves no part of itself', () => {
    const secret = 'Pa55-word-that-is-long';
    registerSecret(secret);
    for (const body of [
      `${'x'.repeat(HAR_BODY_LIMIT - 5)}${secret}${'y'.repeat(1000)}`,
      `{"pad":"${'x'.repeat(HAR_BODY_LIMIT - 30)}","sessionID":"ABCDEF0123456789ABCDEF0123456789","more":"${'z'.repeat(1000)}"}`,
    ]) {
      const content = (harEntry(exchange(body)) as { response: { content: { text: string; comment?: string } } }).response.content;
      expect(content.comment).toMatch(/body cut/);
      expect(content.text).not.toContain(secret.slice(0, 5));
      expect(content.text).not.toContain('ABCDEF01');
    }
  });

  it('a network error naming a secret is masked too', () => {
    registerSecret('Pa55-word-that-is-long');
    expect(JSON.stringify(harEntry(exchange('', 'EPROTO at Pa55-word-that-is-long')))).not.toContain('Pa55');
  });
});
