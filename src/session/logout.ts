/**
 * Ending server sessions on purpose: `legacy session clear --logout`. The one place this tool logs
 * a shared session out, because a person asked for it (every run otherwise leaves sessions to the
 * server's idle timeout). The entries are forgotten whatever the server answers.
 */
import { type Logger, registerSecret } from '../log/index.js';
import { restUrl } from '../protocol/url.js';
import { Transport } from '../transport/index.js';
import { cookieChange, cookieHeader, sameSession, sessionCookiesSetBy } from './cookies.js';
import { sameSlot, type SessionBackend, type SessionEntry } from './store.js';

export interface LogoutResult {
  entry: SessionEntry;
  /** The server said it ended the session (`{"result": true}`). */
  confirmed: boolean;
  /** What it answered otherwise, for the message. */
  detail?: string;
}

export async function logoutSessions(
  store: SessionBackend,
  entries: SessionEntry[],
  options: { timeoutMs: number; insecure?: boolean; logger: Logger; signal?: AbortSignal },
): Promise<LogoutResult[]> {
  const transport = new Transport({ timeoutMs: options.timeoutMs, retries: 0, insecure: options.insecure, logger: options.logger, signal: options.signal });
  const results: LogoutResult[] = [];
  for (const entry of entries) {
    for (const value of Object.values(entry.cookies)) registerSecret(value);
    let result: LogoutResult;
    try {
      const response = await transport.send({
        method: 'GET',
        url: restUrl(entry.baseUrl, { kind: 'directory', action: 'logout' }),
        headers: { cookie: cookieHeader(entry.cookies) },
        idempotent: true,
      });
      // The server had already forgotten it and opened a new session for the logout: end that one too.
      const opened = cookieChange(entry.cookies, await sessionCookiesSetBy(response.setCookies, entry.cookies));
      if (opened.kind === 'new') {
        await transport
          .send({
            method: 'GET',
            url: restUrl(entry.baseUrl, { kind: 'directory', action: 'logout' }),
            headers: { cookie: cookieHeader(opened.cookies) },
            idempotent: true,
          })
          .catch(() => undefined);
      }
      const confirmed = response.status === 200 && (response.json as { result?: unknown } | undefined)?.result === true && opened.kind !== 'new';
      result = {
        entry,
        confirmed,
        detail: confirmed ? undefined : opened.kind === 'new' || response.status === 402 ? 'the server no longer knew it' : `HTTP ${response.status}`,
      };
    } catch (error) {
      result = { entry, confirmed: false, detail: (error as Error).message };
    }
    await store.remove((e) => sameSlot(e, entry) && sameSession(e.cookies, entry.cookies));
    results.push(result);
  }
  return results;
}
