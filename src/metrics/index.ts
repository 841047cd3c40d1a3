/** Metrics for ops: a run's counts, the Prometheus text format, and the shared metrics file. */
export { FAMILIES, merge, parse, render, seriesKey, type Sample } from './exposition.js';
export { METRICS_FILE_MODE, writeMetricsFile, type WriteResult } from './file.js';
export { RunMetrics, statusClass, type RunLabels, type RunReporter, type SessionReport } from './run.js';
