/**
 * legacy-emulator: a 4D REST server emulator (sessions and licences, catalog, paging, $filter, entity sets,
 * $method=update, fault injection) for tests, benchmarks and demos.
 */
export { startEmulator } from './server.js';
export { ControlError } from './control.js';
export { OptionError } from './options.js';
export { FixtureError } from './datastore.js';
export { DEMO_DEFAULT_ROWS } from './demo.js';
export { DEFAULT_FAULT_KINDS, FAULT_KINDS, GENERATIONS } from './types.js';
export type {
  EmulatorControl,
  EmulatorOptions,
  EmulatorStats,
  FaultKind,
  FaultOptions,
  Generation,
  MutateRequest,
  MutateResult,
  QueuedFault,
  RenderedEntity,
  RunningEmulator,
  RuntimeOptionsPatch,
  SessionSummary,
} from './types.js';
