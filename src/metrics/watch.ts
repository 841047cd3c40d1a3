/**
 * A watch consumer's series for the metrics file, written while it runs (a follower never "ends"
 * for monitoring): counters as the increase since the previous write, so the file's merge adds them
 * once; gauges as they are.
 */
import type { Sample } from './exposition.js';

export class FeedMetrics {
  private events = { created: 0, updated: 0, deleted: 0 };
  private polls = 0;
  private failures = 0;
  private lastPoll = 0;
  private written = { created: 0, updated: 0, deleted: 0, polls: 0, failures: 0 };

  constructor(private readonly labels: { env: string; consumer: string }) {}

  delivered(counts: { created: number; updated: number; deleted: number }): void {
    this.events.created += counts.created;
    this.events.updated += counts.updated;
    this.events.deleted += counts.deleted;
  }

  polled(ok: boolean, at = Date.now()): void {
    this.polls++;
    if (ok) this.lastPoll = at;
    else this.failures++;
  }

  /** The samples to merge now (counters since the last call). */
  samples(now = Date.now()): Sample[] {
    const l = this.labels;
    const out: Sample[] = [];
    for (const kind of ['created', 'updated', 'deleted'] as const) {
      out.push({ name: 'legacy_watch_events_total', labels: { ...l, kind }, value: this.events[kind] - this.written[kind] });
    }
    out.push({ name: 'legacy_watch_polls_total', labels: l, value: this.polls - this.written.polls });
    out.push({ name: 'legacy_watch_poll_failures_total', labels: l, value: this.failures - this.written.failures });
    if (this.lastPoll) {
      out.push({ name: 'legacy_watch_last_poll_timestamp_seconds', labels: l, value: this.lastPoll / 1000 });
      out.push({ name: 'legacy_watch_lag_seconds', labels: l, value: Math.max(0, (now - this.lastPoll) / 1000) });
    }
    this.written = { ...this.events, polls: this.polls, failures: this.failures };
    return out;
  }
}
