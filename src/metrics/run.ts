/**
 * What one run of `legacy` did, for the metrics file: fed by the command (rows), by the transport
 * (every HTTP try, as an ExchangeObserver) and by the session manager's events, and turned into
 * samples when the run ends.
 */
import type { Exchange, ExchangeObserver } from '../transport/index.js';
import type { Sample } from './exposition.js';

/** What a command tells the metrics: the table it works on and the rows it read and wrote. */
export interface RunReporter {
  /** The table label of this run (a sync of several tables: their names joined with ','). */
  table(name: string): void;
  rows(counts: { read?: number; written?: number }): void;
}

/** The session counts of a run (SessionManager.events) and the session in use at its end. */
export interface SessionReport {
  created: number;
  licenceWaits: number;
  budgetWaits: number;
  /** When the session in use at the end of the run was created (ISO time), if there was one. */
  sessionCreatedAt?: string;
}

/** The environment's circuit breaker at the end of the run (session/breaker.ts BreakerReport). */
export interface BreakerSample {
  state: number;
  failures: number;
  openedAtSeconds: number;
  fastFailures: number;
}

export interface RunLabels {
  /** The command path: `get-table`, `sync`, `sync status`, `session refresh`. */
  command: string;
  env: string;
}

/** HTTP status class of one try: 2xx..5xx, or `none` when no answer came (network error, timeout). */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'none';
}

export class RunMetrics implements ExchangeObserver, RunReporter {
  private tableName = '';
  private rowsRead = 0;
  private rowsWritten = 0;
  private readonly requests = new Map<string, number>();
  private retries = 0;
  private session: SessionReport = { created: 0, licenceWaits: 0, budgetWaits: 0 };
  private breakerSample?: BreakerSample;

  constructor(
    private labels: RunLabels,
    readonly startedAt = Date.now(),
  ) {}

  /** The labels can be completed once the command's settings are known. */
  relabel(labels: Partial<RunLabels>): void {
    this.labels = { ...this.labels, ...labels };
  }

  table(name: string): void {
    this.tableName = name;
  }

  rows(counts: { read?: number; written?: number }): void {
    this.rowsRead += counts.read ?? 0;
    this.rowsWritten += counts.written ?? 0;
  }

  onExchange(exchange: Exchange): void {
    const code = statusClass(exchange.status);
    this.requests.set(code, (this.requests.get(code) ?? 0) + 1);
    if (exchange.attempt > 0) this.retries += 1;
  }

  /** Add a client's session counts (a run may build more than one client). */
  addSession(report: SessionReport): void {
    this.session = {
      created: this.session.created + report.created,
      licenceWaits: this.session.licenceWaits + report.licenceWaits,
      budgetWaits: this.session.budgetWaits + report.budgetWaits,
      sessionCreatedAt: report.sessionCreatedAt ?? this.session.sessionCreatedAt,
    };
  }

  /** The breaker as the run saw it at its end (only runs that asked it: none is written otherwise). */
  breaker(sample: BreakerSample | undefined): void {
    if (!sample) return;
    this.breakerSample = { ...sample, fastFailures: sample.fastFailures + (this.breakerSample?.fastFailures ?? 0) };
  }

  /** The samples of this run, ended now with `exitCode`. */
  samples(exitCode: number, endedAt = Date.now()): Sample[] {
    const run = { command: this.labels.command, env: this.labels.env, table: this.tableName };
    const seconds = endedAt / 1000;
    const out: Sample[] = [
      { name: 'legacy_last_run_timestamp_seconds', labels: run, value: seconds },
      { name: 'legacy_last_run_duration_seconds', labels: run, value: (endedAt - this.startedAt) / 1000 },
      { name: 'legacy_last_run_exit_code', labels: run, value: exitCode },
      { name: 'legacy_last_run_rows_read', labels: run, value: this.rowsRead },
      { name: 'legacy_last_run_rows_written', labels: run, value: this.rowsWritten },
      { name: 'legacy_runs_total', labels: run, value: 1 },
      { name: 'legacy_rows_read_total', labels: run, value: this.rowsRead },
      { name: 'legacy_rows_written_total', labels: run, value: this.rowsWritten },
      { name: 'legacy_http_retries_total', labels: run, value: this.retries },
      { name: 'legacy_licence_waits_total', labels: run, value: this.session.licenceWaits },
      { name: 'legacy_licence_budget_waits_total', labels: run, value: this.session.budgetWaits },
      { name: 'legacy_sessions_created_total', labels: run, value: this.session.created },
    ];
    if (exitCode === 0) out.push({ name: 'legacy_last_success_timestamp_seconds', labels: run, value: seconds });
    for (const [code, count] of this.requests) out.push({ name: 'legacy_http_requests_total', labels: { ...run, code }, value: count });
    if (this.session.sessionCreatedAt) {
      const age = (endedAt - Date.parse(this.session.sessionCreatedAt)) / 1000;
      if (Number.isFinite(age)) out.push({ name: 'legacy_session_age_seconds', labels: { env: this.labels.env }, value: Math.max(0, age) });
    }
    if (this.breakerSample) {
      const env = { env: this.labels.env };
      const b = this.breakerSample;
      out.push(
        { name: 'legacy_breaker_state', labels: env, value: b.state },
        { name: 'legacy_breaker_failures', labels: env, value: b.failures },
        { name: 'legacy_breaker_opened_timestamp_seconds', labels: env, value: b.openedAtSeconds },
        { name: 'legacy_breaker_fast_failures_total', labels: env, value: b.fastFailures },
      );
    }
    return out;
  }
}
