/** The metrics file format: label escaping survives a round trip, gauges replace, counters add, foreign lines go. */
import { describe, expect, it } from 'vitest';
import { merge, parse, render } from '../../src/metrics/exposition.js';
import { statusClass } from '../../src/metrics/run.js';

describe('exposition', () => {
  it('round-trips labels with quotes, backslashes and newlines', () => {
    const samples = [{ name: 'legacy_runs_total', labels: { command: 'get-table', env: 'a"b\\c\nd', table: 'Ärger' }, value: 3 }];
    const text = render(samples);
    expect(text).toContain('legacy_runs_total{command="get-table",env="a\\"b\\\\c\\nd",table="Ärger"} 3');
    expect(parse(text)).toEqual({ samples, dropped: 0 });
  });

  it('gauges replace, counters add, other series stay, foreign or damaged lines are dropped', () => {
    const a = { command: 'sync', env: 'live', table: 'Artikel' };
    const b = { command: 'sync verify', env: 'live', table: 'Artikel' };
    const stored = parse(
      `${render([
        { name: 'legacy_runs_total', labels: a, value: 4 },
        { name: 'legacy_last_run_exit_code', labels: a, value: 0 },
        { name: 'legacy_last_run_exit_code', labels: b, value: 1 },
      ])}other_metric 1\nlegacy_runs_total{command="x" 2\n`,
    );
    expect(stored.dropped).toBe(2);
    const merged = merge(stored.samples, [
      { name: 'legacy_runs_total', labels: a, value: 1 },
      { name: 'legacy_last_run_exit_code', labels: a, value: 69 },
    ]);
    expect(parse(render(merged)).samples).toEqual(
      expect.arrayContaining([
        { name: 'legacy_runs_total', labels: a, value: 5 },
        { name: 'legacy_last_run_exit_code', labels: a, value: 69 },
        { name: 'legacy_last_run_exit_code', labels: b, value: 1 },
      ]),
    );
    expect(merged).toHaveLength(3);
  });

  it('status classes', () => {
    expect([200, 304, 402, 503, 0].map(statusClass)).toEqual(['2xx', '3xx', '4xx', '5xx', 'none']);
  });
});
