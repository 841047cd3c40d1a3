/**
 * Pages in flight adapt to the server (src/table/paging/concurrency.ts). The controller is fed
 * the round trips a modelled server gives (latency L, then S ms of work per page, one page at a
 * time) on a simulated clock, so these tests never depend on the machine's speed.
 */
import { describe, expect, it } from 'vitest';
import { INFLIGHT_BYTES, MAX_PAGES_IN_FLIGHT, PagesInFlight } from '../../src/table/paging/concurrency.js';

/** Run `pages` pages through a server of latency `latency` and `work` ms per page; the limits seen. */
function simulate(
  flight: PagesInFlight,
  {
    latency,
    work,
    pages,
    bytes = 1_000_000,
    trouble = () => false,
  }: { latency: number; work: number; pages: number; bytes?: number; trouble?: (page: number) => boolean },
) {
  let now = 0;
  const limits: number[] = [];
  for (let page = 0; page < pages; page++) {
    const n = flight.limit;
    // Steady state: a page every max(work, (latency + work) / n) ms, each taking latency + its wait in the queue.
    const interval = Math.max(work, (latency + work) / n);
    const queueing = Math.max(0, n * work - (latency + work));
    now += interval;
    flight.observe(latency + work + queueing, bytes, trouble(page), now);
    limits.push(flight.limit);
  }
  return limits;
}

describe('pages in flight', () => {
  it('pinned (--concurrency): never changes', () => {
    const flight = new PagesInFlight(2, false, undefined, 0);
    expect(new Set(simulate(flight, { latency: 50, work: 10, pages: 300 }))).toEqual(new Set([2]));
  });

  it('a slow server with room: grows past 3 towards (latency + work) / work, within the ceiling', () => {
    const log: string[] = [];
    const flight = new PagesInFlight(3, true, (m) => log.push(m), 0);
    const limits = simulate(flight, { latency: 50, work: 10, pages: 400 });
    expect(Math.max(...limits)).toBeGreaterThanOrEqual(5);
    expect(Math.max(...limits)).toBeLessThanOrEqual(MAX_PAGES_IN_FLIGHT);
    expect(limits.slice(-100).every((n) => n >= 5)).toBe(true);
    expect(log[0]).toMatch(/^pages in flight 3 → 6: under one page waits at the server/);
  });

  it('a server that is the bottleneck already: stays at 3 (a growth that does not pay is taken back)', () => {
    const log: string[] = [];
    const flight = new PagesInFlight(3, true, (m) => log.push(m), 0);
    const limits = simulate(flight, { latency: 0, work: 10, pages: 400 });
    expect(Math.max(...limits)).toBeLessThanOrEqual(6);
    expect(log).toContain('pages in flight 6 → 3: the last growth did not make it faster');
    expect(limits.slice(-100).filter((n) => n === 3).length).toBeGreaterThan(60);
  });

  it('trouble (a retry, a licence wait): halves at once, then grows again', () => {
    const log: string[] = [];
    const flight = new PagesInFlight(3, true, (m) => log.push(m), 0);
    const limits = simulate(flight, { latency: 50, work: 10, pages: 400, trouble: (page) => page === 200 });
    const before = limits[199]!;
    const after = limits[200]!;
    expect(after).toBe(Math.max(1, Math.floor(before / 2)));
    expect(log.some((m) => m.endsWith('a retry or a licence wait'))).toBe(true);
    expect(limits[399]).toBeGreaterThan(after);
  });

  it('large pages: at most INFLIGHT_BYTES in flight, never below one page', () => {
    const big = new PagesInFlight(3, true, undefined, 0);
    simulate(big, { latency: 50, work: 10, pages: 50, bytes: INFLIGHT_BYTES / 2 });
    expect(big.limit).toBe(2);
    const huge = new PagesInFlight(3, true, undefined, 0);
    simulate(huge, { latency: 50, work: 10, pages: 50, bytes: INFLIGHT_BYTES * 3 });
    expect(huge.limit).toBe(1);
  });
});
