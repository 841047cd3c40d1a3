/** A change feed event's id: the same for the same change, different for any other (a re-created key too). */
import { describe, expect, it } from 'vitest';
import type { StoredChange } from '../../src/sync/store.js';
import { eventOf, inChangeOrder } from '../../src/watch/events.js';

const change = (over: Partial<StoredChange>): StoredChange => ({
  table: 'Kunden',
  kind: 'created',
  key: 10051,
  stamp: 1,
  timestamp: '2026-12-07T10:00:00.000Z',
  globalStamp: null,
  row: { KundenNr: 10051 },
  ...over,
});

describe('event ids', () => {
  it('the same change sent again has the same id', () => {
    expect(eventOf('live', change({})).id).toBe(eventOf('live', change({ row: { KundenNr: 10051, Ort: 'x' } })).id);
  });

  it('a key deleted and created again gets new ids for its new life (created, updated and deleted alike)', () => {
    const first = [
      change({}),
      change({ kind: 'updated', stamp: 2, timestamp: '2026-12-07T10:01:00.000Z' }),
      change({ kind: 'deleted', stamp: 2, timestamp: null, previousTimestamp: '2026-12-07T10:01:00.000Z' }),
    ];
    const second = [
      change({ timestamp: '2026-12-07T11:00:00.000Z' }),
      change({ kind: 'updated', stamp: 2, timestamp: '2026-12-07T11:01:00.000Z' }),
      change({ kind: 'deleted', stamp: 2, timestamp: null, previousTimestamp: '2026-12-07T11:01:00.000Z' }),
    ];
    const ids = [...first, ...second].map((c) => eventOf('live', c).id);
    expect(new Set(ids).size).toBe(6);
    // Tracked tables: the global stamp tells them apart.
    expect(eventOf('live', change({ globalStamp: 7 })).id).not.toBe(eventOf('live', change({ globalStamp: 70 })).id);
  });
});

describe('change order', () => {
  it('a deletion found without a stamp comes after the changes read in the same batch', () => {
    const ordered = inChangeOrder(
      [
        change({ kind: 'deleted', timestamp: null }),
        change({ kind: 'updated', key: 1, timestamp: '2026-12-07T10:05:00.000Z' }),
        change({ kind: 'created', key: 2, timestamp: '2026-12-07T10:01:00.000Z' }),
      ],
      Date.parse('2026-12-07T12:00:00.000Z'),
    );
    expect(ordered.map((c) => c.kind)).toEqual(['created', 'updated', 'deleted']);
  });

  it("by 4D's global stamp when every change has one", () => {
    const ordered = inChangeOrder([change({ globalStamp: 9, timestamp: '2026-12-07T09:00:00.000Z' }), change({ globalStamp: 3 })]);
    expect(ordered.map((c) => c.globalStamp)).toEqual([3, 9]);
  });
});
