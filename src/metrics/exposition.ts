/**
 * The Prometheus text exposition format (version 0.0.4) for the node_exporter textfile collector:
 * the metric families legacy writes, rendering, parsing our own files back, and merging a run's
 * samples into what is there (so several cron jobs can share one file).
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

type Kind = 'gauge' | 'counter';

/** Every family legacy writes: its type, help text and how a run's sample merges with the stored one. */
export const FAMILIES: Record<string, { type: Kind; help: string }> = {
  legacy_last_run_timestamp_seconds: { type: 'gauge', help: 'When the last run of this command, table and environment ended (Unix time).' },
  legacy_last_success_timestamp_seconds: { type: 'gauge', help: 'When the last run that exited 0 ended (Unix time).' },
  legacy_last_run_duration_seconds: { type: 'gauge', help: 'How long the last run took.' },
  legacy_last_run_exit_code: { type: 'gauge', help: 'Exit code of the last run (0 ok, 1 sync verify differs, 64..78 errors, 130 interrupted).' },
  legacy_last_run_rows_read: { type: 'gauge', help: 'Rows the last run read from the server.' },
  legacy_last_run_rows_written: { type: 'gauge', help: 'Rows the last run wrote (exported, stored or updated).' },
  legacy_runs_total: { type: 'counter', help: 'Runs, failed ones included.' },
  legacy_rows_read_total: { type: 'counter', help: 'Rows read from the server.' },
  legacy_rows_written_total: { type: 'counter', help: 'Rows written (exported, stored or updated).' },
  legacy_http_requests_total: { type: 'counter', help: 'HTTP requests sent (every try), by status class (code="none": no answer).' },
  legacy_http_retries_total: { type: 'counter', help: 'HTTP requests sent again after a transient failure.' },
  legacy_licence_waits_total: { type: 'counter', help: "Waits after HTTP 402 (the server's licences all in use)." },
  legacy_licence_budget_waits_total: { type: 'counter', help: 'Waits for a place in the fleet-wide licence budget (maxSessions).' },
  legacy_sessions_created_total: { type: 'counter', help: 'Server sessions created (new session or login).' },
  legacy_session_age_seconds: { type: 'gauge', help: 'Age of the server session in use at the end of the last run that used one.' },
  legacy_breaker_state: { type: 'gauge', help: "The environment's circuit breaker as the last run saw it: 0 closed, 1 open, 2 half-open." },
  legacy_breaker_failures: { type: 'gauge', help: "Unavailable runs the environment's circuit breaker counts now (in its window, or since it opened)." },
  legacy_breaker_opened_timestamp_seconds: { type: 'gauge', help: "When the environment's circuit breaker opened (Unix time); 0 when closed." },
  legacy_breaker_fast_failures_total: { type: 'counter', help: 'Runs refused by the open circuit breaker without touching the server.' },
  legacy_watch_events_total: { type: 'counter', help: 'Change events a watch consumer delivered, by kind (created, updated, deleted).' },
  legacy_watch_polls_total: { type: 'counter', help: 'Polls (rounds over its tables) of a watch consumer, failed ones included.' },
  legacy_watch_poll_failures_total: { type: 'counter', help: 'Polls of a watch consumer that failed and were tried again.' },
  legacy_watch_last_poll_timestamp_seconds: { type: 'gauge', help: 'When a watch consumer last completed a poll (Unix time).' },
  legacy_watch_lag_seconds: {
    type: 'gauge',
    help: 'Seconds since a watch consumer last completed a poll, when the file was written: the most its feed can be behind.',
  },
};

const escapeLabel = (value: string) => value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function labelText(labels: Record<string, string>): string {
  const keys = Object.keys(labels).sort();
  return keys.length ? `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}` : '';
}

export function seriesKey(sample: Pick<Sample, 'name' | 'labels'>): string {
  return `${sample.name}${labelText(sample.labels)}`;
}

function valueText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return String(value);
}

/** Render samples, grouped by family with HELP and TYPE, in a stable order. */
export function render(samples: Sample[]): string {
  const byFamily = new Map<string, Sample[]>();
  for (const s of samples) byFamily.set(s.name, [...(byFamily.get(s.name) ?? []), s]);
  let text = '';
  for (const name of [...byFamily.keys()].sort()) {
    const family = FAMILIES[name];
    if (family) text += `# HELP ${name} ${family.help}\n# TYPE ${name} ${family.type}\n`;
    const lines = byFamily.get(name)!.map((s) => `${seriesKey(s)} ${valueText(s.value)}`);
    text += `${lines.sort().join('\n')}\n`;
  }
  return text;
}

const SERIES = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy;

function parseLabels(text: string): Record<string, string> | undefined {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  let m: RegExpExecArray | null;
  // biome-ignore lint/suspicious/noAssignInExpressions: the idiomatic loop/step form
  while (LABEL.lastIndex < text.length && (m = LABEL.exec(text))) {
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  return LABEL.lastIndex === text.length || text.trim() === '' ? labels : undefined;
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

/**
 * The samples of a file we wrote. Lines that are not ours (another family, a damaged line) are
 * dropped and counted, so a damaged file heals on the next write instead of failing every run.
 */
export function parse(text: string): { samples: Sample[]; dropped: number } {
  const samples: Sample[] = [];
  let dropped = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = SERIES.exec(line.trim());
    const labels = m ? parseLabels(m[2] ?? '') : undefined;
    const value = m ? parseValue(m[3]!) : NaN;
    if (!m || !labels || !FAMILIES[m[1]!] || Number.isNaN(value)) {
      dropped += 1;
      continue;
    }
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, dropped };
}

/**
 * Merge a run's samples into the stored ones: a gauge replaces the series with the same labels, a
 * counter adds to it; series of other commands, tables and environments are kept as they are.
 */
export function merge(stored: Sample[], run: Sample[]): Sample[] {
  const series = new Map(stored.map((s) => [seriesKey(s), s]));
  for (const s of run) {
    const key = seriesKey(s);
    const old = series.get(key);
    const counter = FAMILIES[s.name]?.type === 'counter';
    series.set(key, counter && old ? { ...s, value: old.value + s.value } : s);
  }
  return [...series.values()];
}
