/**
 * Where a change feed's events go. A sink's `send` resolves only when the batch is taken (written
 * to stdout, acknowledged by the webhook receiver, added to the Redis stream); the feed commits its
 * cursor after that and not before, so delivery is at least once: a batch is repeated only when the
 * process ended between the sink taking it and the commit.
 *
 * - stdout: NDJSON, one write per batch, waiting for the pipe to drain (backpressure); a reader that
 *   went away fails the send, so that batch is not committed.
 * - webhook: one POST per batch (a JSON array of CloudEvents), signed as Standard Webhooks with the
 *   `standardwebhooks` package (`webhook-id` = a hash of the batch's event ids, stable on a retry;
 *   `webhook-timestamp`; `webhook-signature`), retried with exponential backoff and full jitter on
 *   network errors, timeouts, 408, 429 and 5xx. After the last attempt: `stop` fails the feed
 *   (exit 69, nothing committed, the batch is sent again on the next start); `dead-letter` appends
 *   the batch to a file (0600) and goes on.
 * - redis: `XADD <key> MAXLEN ~ <n> * event <json>` per event, one MULTI per batch.
 */
import { createHash } from 'node:crypto';
import { appendFile, open } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { Webhook } from 'standardwebhooks';
import { maskUrl } from '../config/values.js';
import { ConfigError, UnavailableError } from '../errors/index.js';
import { registerSecret, type Logger } from '../log/index.js';
import { backoffDelay, sleep } from '../transport/index.js';
import type { FeedEvent } from './events.js';

export interface Sink {
  /** Human name for messages (no secrets). */
  readonly name: string;
  send(events: FeedEvent[]): Promise<void>;
  close(): Promise<void>;
}

export class StdoutSink implements Sink {
  readonly name = 'stdout';
  constructor(private readonly out: Writable) {}

  send(events: FeedEvent[]): Promise<void> {
    const text = events.map((e) => `${JSON.stringify(e)}\n`).join('');
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.out.once('error', onError);
      const flushed = this.out.write(text, (error) => {
        if (error) return reject(error);
        if (flushed) {
          this.out.off('error', onError);
          resolve();
        }
      });
      if (!flushed) {
        this.out.once('drain', () => {
          this.out.off('error', onError);
          resolve();
        });
      }
    });
  }

  async close(): Promise<void> {}
}

export interface WebhookOptions {
  url: string;
  /** `whsec_…` (Standard Webhooks); from LEGACY_WEBHOOK_SECRET, never argv. */
  secret: string;
  attempts: number;
  timeoutMs: number;
  onFailure: 'stop' | 'dead-letter';
  deadLetterPath?: string;
  logger: Logger;
  signal?: AbortSignal;
  /** First backoff step (ms); tests make it short. */
  backoffMs?: number;
}

export class WebhookSink implements Sink {
  readonly name: string;
  private readonly webhook: Webhook;

  constructor(private readonly options: WebhookOptions) {
    // Only the origin: receivers often carry a token in the path or the query.
    this.name = `webhook ${new URL(options.url).origin}`;
    registerSecret(options.secret);
    try {
      this.webhook = new Webhook(options.secret);
    } catch (error) {
      throw new ConfigError(`LEGACY_WEBHOOK_SECRET is not a Standard Webhooks secret: ${(error as Error).message}`, {
        hint: 'use the whsec_<base64> form your receiver gives you',
      });
    }
  }

  async send(events: FeedEvent[]): Promise<void> {
    const { url, attempts, timeoutMs, logger, signal } = this.options;
    const body = JSON.stringify(events);
    const msgId = `msg_${createHash('sha256')
      .update(events.map((e) => e.id).join(','))
      .digest('hex')
      .slice(0, 32)}`;
    let last = '';
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(backoffDelay(attempt - 1, this.options.backoffMs ?? 500, 30_000), signal);
      const timestamp = new Date();
      const signature = this.webhook.sign(msgId, timestamp, body);
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'webhook-id': msgId,
            'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
            'webhook-signature': signature,
          },
          body,
          // A redirect is not delivery: fetch would follow a 301/302 with a GET without the batch.
          redirect: 'manual',
          signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs),
        });
        await response.arrayBuffer().catch(() => undefined);
        if (response.status >= 200 && response.status < 300) return;
        last = `HTTP ${response.status}`;
        if (response.status >= 300 && response.status < 400) {
          const to = response.headers.get('location');
          last = `HTTP ${response.status}, a redirect${to ? ` to ${new URL(to, url).origin}` : ''}: give --webhook the final URL`;
          break;
        }
        // A receiver that refuses the batch for good (400, 401, 413, …) will refuse it again: stop retrying.
        if (response.status < 500 && response.status !== 408 && response.status !== 429) break;
      } catch (error) {
        if (signal?.aborted) throw error;
        last =
          (error as Error).name === 'TimeoutError'
            ? `no answer within ${timeoutMs} ms`
            : ((error as { cause?: Error }).cause?.message ?? (error as Error).message);
      }
      logger.warn(`${this.name}: batch of ${events.length} event(s) not taken (${last}); attempt ${attempt + 1} of ${attempts}`);
    }
    if (this.options.onFailure === 'dead-letter' && this.options.deadLetterPath) {
      await writeDeadLetter(this.options.deadLetterPath, events, last);
      logger.error(`${this.name}: ${events.length} event(s) written to the dead-letter file ${this.options.deadLetterPath} (${last})`);
      return;
    }
    throw new UnavailableError(`${this.name} did not take a batch of ${events.length} event(s) (${last}); nothing was committed`, {
      hint: 'the feed resends it on the next start; --on-failure dead-letter keeps going instead',
    });
  }

  async close(): Promise<void> {}
}

/** One line per event, appended; the file is created 0600 (events carry customer data). */
async function writeDeadLetter(path: string, events: FeedEvent[], reason: string): Promise<void> {
  const handle = await open(path, 'a', 0o600);
  await handle.close();
  const at = new Date().toISOString();
  await appendFile(path, events.map((e) => `${JSON.stringify({ failedAt: at, reason, event: e })}\n`).join(''));
}

export interface RedisStreamOptions {
  url: string;
  key: string;
  /** Approximate MAXLEN of the stream (0: unbounded). */
  maxLen: number;
}

export class RedisStreamSink implements Sink {
  readonly name: string;
  private constructor(
    private readonly client: import('ioredis').Redis,
    private readonly options: RedisStreamOptions,
  ) {
    this.name = `redis stream ${options.key} at ${maskUrl(options.url)}`;
  }

  static async connect(options: RedisStreamOptions): Promise<RedisStreamSink> {
    const parsed = new URL(options.url);
    if (parsed.password) registerSecret(decodeURIComponent(parsed.password));
    const { Redis } = await import('ioredis');
    const client = new Redis(options.url, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 1, connectionName: 'legacy-watch' });
    client.on('error', () => undefined); // reported by the failing call
    try {
      await client.connect();
    } catch (error) {
      if (client.status !== 'end') client.disconnect();
      throw new UnavailableError(`cannot reach Redis at ${maskUrl(options.url)}: ${(error as Error).message}`, { hint: 'check --redis-stream' });
    }
    return new RedisStreamSink(client, options);
  }

  async send(events: FeedEvent[]): Promise<void> {
    const multi = this.client.multi();
    for (const e of events) {
      if (this.options.maxLen > 0) multi.xadd(this.options.key, 'MAXLEN', '~', this.options.maxLen, '*', 'event', JSON.stringify(e));
      else multi.xadd(this.options.key, '*', 'event', JSON.stringify(e));
    }
    try {
      const results = await multi.exec();
      const failed = results?.find(([error]) => error);
      if (!results || failed) throw failed?.[0] ?? new Error('the transaction was discarded');
    } catch (error) {
      throw new UnavailableError(`${this.name}: XADD failed: ${(error as Error).message}; nothing was committed`);
    }
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
