/**
 * The typed error hierarchy and the one place that maps errors to exit codes.
 *
 * Every error a user can meet is a LegacyError with a one-line message and, where useful,
 * a hint that says what to do. Anything else is a bug and maps to exit 1.
 */

export const ExitCode = {
  ok: 0,
  unexpected: 1,
  usage: 64,
  badData: 65,
  unavailable: 69,
  temporary: 75,
  auth: 77,
  config: 78,
  cannotCreate: 73,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** `sync verify` only: the copy differs from the server (like cmp's 1; errors keep their own codes). */
export const EXIT_DIFFERS = 1;
/** A person declined a confirmation prompt (like terraform's "Apply cancelled."): nothing was done. */
export const EXIT_CANCELLED = 1;

export interface LegacyErrorOptions {
  hint?: string;
  cause?: unknown;
}

export class LegacyError extends Error {
  readonly exitCode: number = ExitCode.unexpected;
  /** A short machine-readable code, stable across releases (used by --json error output). */
  readonly code: string = 'E_LEGACY';
  readonly hint?: string;

  constructor(message: string, options: LegacyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** Bad command line: unknown option, missing argument, conflicting flags. Exit 64. */
export class UsageError extends LegacyError {
  override readonly exitCode = ExitCode.usage;
  override readonly code = 'E_USAGE';
}

/** Configuration is missing, invalid or cannot be written. Exit 78. */
export class ConfigError extends LegacyError {
  override readonly exitCode = ExitCode.config;
  override readonly code = 'E_CONFIG';
}

/** Input or server data that cannot be used: bad value, rejected filter, unknown field. Exit 65. */
export class BadDataError extends LegacyError {
  override readonly exitCode = ExitCode.badData;
  override readonly code: string = 'E_BAD_DATA';
}

/** A table, field or record that does not exist. Exit 65 (it is bad input data). */
export class NotFoundError extends BadDataError {
  override readonly code = 'E_NOT_FOUND';
}

/** A stored entity set is gone (expired, or it belonged to a replaced session). Exit 65 if not recovered. */
export class EntitySetGoneError extends BadDataError {
  override readonly code = 'E_ENTITY_SET_GONE';
}

/** Someone else changed the record since we read it. Exit 65. */
export class ConflictError extends BadDataError {
  override readonly code = 'E_CONFLICT';
}

/**
 * The server did not do what the query asked (it answered 200 with rows the filter excludes, or a
 * probe query that cannot match matched). Exit 65: the data would be wrong, so nothing is written.
 */
export class FilterNotAppliedError extends BadDataError {
  override readonly code = 'E_FILTER_NOT_APPLIED';
}

/**
 * A page that is not the page asked for: more rows than `$top`, another `$skip` than asked
 * (`__FIRST`), an `__ERROR` beside the rows of a 200, or a stored selection that yielded fewer rows
 * than it holds. Exit 65: writing it could repeat, skip or invent rows, so the export stops.
 */
export class PageNotAsAskedError extends BadDataError {
  override readonly code = 'E_PAGE_NOT_AS_ASKED';
}

/**
 * The server refused the request for what it asked (a query it cannot run, a write it will not
 * make): its 4D error is of a deterministic class. Exit 65. Sync reads a rejected window in full.
 */
export class RequestRejectedError extends BadDataError {
  override readonly code = 'E_REQUEST_REJECTED';
}

/** A value that cannot be written exactly (an integer beyond 2^53). Exit 65: nothing rounded is written. */
export class UnrepresentableValueError extends BadDataError {
  override readonly code = 'E_UNREPRESENTABLE_VALUE';
}

/** The server could not be reached or kept failing after retries. Exit 69. */
export class UnavailableError extends LegacyError {
  override readonly exitCode = ExitCode.unavailable;
  override readonly code: string = 'E_UNAVAILABLE';
}

/**
 * The environment's circuit breaker is open: recent runs found the server unavailable, so this run
 * fails at once without touching it (session/breaker.ts). Exit 69, like the failures that opened it.
 */
export class BreakerOpenError extends UnavailableError {
  override readonly code = 'E_BREAKER_OPEN';
}

/** An output or log file cannot be created (sysexits EX_CANTCREAT). Exit 73. */
export class CannotCreateError extends LegacyError {
  override readonly exitCode = ExitCode.cannotCreate;
  override readonly code = 'E_CANT_CREATE';
}

/**
 * The one place that knows which failures mean "the output cannot be stored": a full or read-only
 * file system, an exhausted quota, a file larger than the file system allows, SQLite's "database or
 * disk is full". Returns the reason in words, or undefined for any other failure.
 */
export function noSpaceReason(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOSPC':
    case 'SQLITE_FULL':
      return 'no space left on the device';
    case 'EDQUOT':
      return 'disk quota exceeded';
    case 'EROFS':
      return 'read-only file system';
    case 'EFBIG':
      return 'file too large for the file system';
    default:
      return undefined;
  }
}

/**
 * An error met while writing `what` (`output file /x/y.csv`, `standard output`) as the one-line
 * exit 73 it is: a full disk says so and what to do; other system errors name their code. `reason`:
 * the caller knows the disk is full although the error does not say so.
 */
export function cannotWriteError(error: unknown, what: string, verb = 'write', reason = noSpaceReason(error)): CannotCreateError {
  if (error instanceof CannotCreateError) return error;
  if (reason) {
    return new CannotCreateError(`cannot ${verb} ${what}: ${reason}`, {
      hint: 'free some space (or raise the quota) there, or write somewhere else',
      cause: error,
    });
  }
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return new CannotCreateError(`cannot ${verb} ${what}: ${code ?? (error instanceof Error ? error.message : String(error))}`, { cause: error });
}

/** A temporary condition: retry later (licence limit, lock held by another run). Exit 75. */
export class TemporaryError extends LegacyError {
  override readonly exitCode = ExitCode.temporary;
  override readonly code: string = 'E_TEMPORARY';
}

/** The server's licences (sessions) are all in use. Exit 75. */
export class SessionLimitError extends TemporaryError {
  override readonly code = 'E_SESSION_LIMIT';
}

/**
 * The server lost a stored selection during an export and rebuilt a different one (another row
 * count): carrying on could skip or repeat rows. Exit 75: running again gives a consistent export.
 */
export class SelectionChangedError extends TemporaryError {
  override readonly code = 'E_SELECTION_CHANGED';
}

/** Another process holds a lock we need. Exit 75. */
export class LockBusyError extends TemporaryError {
  override readonly code = 'E_LOCK_BUSY';
}

/** Login required, wrong credentials or no permission. Exit 77. */
export class AuthError extends LegacyError {
  override readonly exitCode = ExitCode.auth;
  override readonly code: string = 'E_AUTH';
}

/**
 * The server refused an operation on a table for lack of permission (4D privileges, `roles.json`;
 * `$info` is admin only when passwords are on). Exit 77, like a login: a person must grant it.
 */
export class PermissionError extends AuthError {
  override readonly code = 'E_PERMISSION';
}

/** A person answered no at a confirmation prompt: nothing was written. Exit 1, never "a bug". */
export class CancelledError extends LegacyError {
  override readonly exitCode = EXIT_CANCELLED;
  override readonly code = 'E_CANCELLED';
}

/** The user pressed Ctrl-C (or the process got SIGTERM). Exit 130. */
export class InterruptedError extends LegacyError {
  override readonly exitCode = ExitCode.interrupted;
  override readonly code = 'E_INTERRUPTED';
}

/** The abort reason of a run stopped by a signal (Ctrl-C: SIGINT; a service manager: SIGTERM). */
export function interruptedBy(signalName: string): InterruptedError {
  return new InterruptedError(`interrupted (${signalName})`);
}

/**
 * The interruption that aborted `signal`, when a person or the system stopped the run (not a reader
 * of stdout that went away): the abort's own InterruptedError, else a plain "interrupted".
 */
export function interruptionOf(signal: AbortSignal | undefined): InterruptedError | undefined {
  if (!signal?.aborted) return undefined;
  const reason: unknown = signal.reason;
  if (reason instanceof InterruptedError) return reason;
  if (reason === 'epipe' || reason === 'stdout') return undefined;
  return new InterruptedError('interrupted');
}

/**
 * What happened to a run whose work was aborted, in words for its record (sync's run history): not
 * the "The operation was aborted" that the aborted request or wait threw.
 */
export function abortedBecause(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (reason === 'epipe') return 'stopped: the reader of standard output went away';
  if (reason === 'stdout') return 'stopped: standard output could not be written';
  return interruptionOf(signal)?.message ?? 'interrupted';
}

/** Exit code for any thrown value. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof LegacyError) return error.exitCode;
  return ExitCode.unexpected;
}

/** One line for the user: the message plus its hint, never a stack. */
export function formatErrorLine(error: unknown): string {
  if (error instanceof LegacyError) {
    const message = oneLine(error.message);
    return error.hint ? `${message} (${oneLine(error.hint)})` : message;
  }
  const message = error instanceof Error ? error.message : String(error);
  return `unexpected error: ${oneLine(message)} (this is a bug; re-run with --debug and report it)`;
}

/** Machine-readable form used with --log-format json. */
export function errorToJson(error: unknown): Record<string, unknown> {
  if (error instanceof LegacyError) {
    return { code: error.code, message: error.message, hint: error.hint, exitCode: error.exitCode };
  }
  return { code: 'E_UNEXPECTED', message: error instanceof Error ? error.message : String(error), exitCode: 1 };
}

export function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** Is this a write to a closed pipe (`legacy ... | head`)? */
export function isBrokenPipe(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END';
}
