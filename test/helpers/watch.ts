/** The change feed's events and how tests compare them with the emulator's record of its changes (issue 25). */
import { expect } from 'vitest';
import type { TestServer } from './emulator.js';

export interface FeedEvent {
  id: string;
  type: string;
  source: string;
  subject: string;
  time: string;
  specversion: string;
  data: { table: string; key: unknown; stamp: number | null; row: Record<string, unknown> | null; changedFields?: string[] };
}

export interface ChangeRecord {
  seq: number;
  table: string;
  kind: 'created' | 'updated' | 'deleted';
  key: string;
}

export function parseEvents(text: string): FeedEvent[] {
  // A process killed mid-write may leave a cut last line: a consumer skips it, so do we.
  return text
    .split('\n')
    .filter((l) => l.startsWith('{') && l.endsWith('}'))
    .map((l) => JSON.parse(l) as FeedEvent);
}

/**
 * The feed's events against the emulator's change record: every changed record's last event has its
 * final kind and stamp; no event for a record nobody changed (after `since`). A record created and
 * deleted between two polls may have none (the feed reads state, not a log).
 */
export async function expectFeedMatches(server: TestServer, table: string, events: FeedEvent[], since = 0): Promise<void> {
  const changes = (await server.control<ChangeRecord[]>(`changes?since=${since}`)).filter((c) => c.table === table);
  const changed = new Set(changes.map((c) => c.key));
  const last = new Map<string, FeedEvent>();
  for (const e of events.filter((e) => e.data.table === table)) last.set(e.subject, e);
  const unexpected = [...last.keys()].filter((k) => !changed.has(k));
  expect(unexpected, 'events for records nobody changed').toEqual([]);
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const key of changed) {
    const event = last.get(key);
    if (!event) {
      // The feed reads state: a record created and deleted between two polls never existed for it.
      const kinds = changes.filter((c) => c.key === key).map((c) => c.kind);
      if (!(kinds[0] === 'created' && kinds[kinds.length - 1] === 'deleted')) missing.push(`${key} (${kinds.join(', ')})`);
      continue;
    }
    const row = (await server.control<Record<string, unknown> | null>(`row/${table}/${encodeURIComponent(key)}`).catch(() => null)) as Record<
      string,
      unknown
    > | null;
    if (!row) {
      if (event.type !== 'legacy.record.deleted') wrong.push(`${key}: deleted on the server, last event ${event.type}`);
    } else if (event.type === 'legacy.record.deleted' || event.data.stamp !== row.__STAMP) {
      wrong.push(`${key}: last event ${event.type} stamp ${event.data.stamp}, server stamp ${row.__STAMP}`);
    }
  }
  // Kinds: a record created after the feed started is first sent as created; one that existed before never is.
  const kinds: string[] = [];
  for (const key of changed) {
    const mine = events.filter((e) => e.data.table === table && e.subject === key).map((e) => e.type.replace('legacy.record.', ''));
    if (mine.length === 0) continue;
    const createdHere = changes.find((c) => c.key === key)?.kind === 'created';
    if (createdHere && mine[0] !== 'created') kinds.push(`${key}: created on the server, first event ${mine[0]}`);
    if (!createdHere && mine.includes('created')) kinds.push(`${key}: existed before, yet an event says created`);
  }
  expect(missing, 'changed records without an event').toEqual([]);
  expect(wrong, 'last events that do not carry the final state').toEqual([]);
  expect(kinds, 'events of the wrong kind').toEqual([]);
}
