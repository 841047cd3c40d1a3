/**
 * Run the CLI in-process: `main(argv, io)` from src/ with in-memory streams (the way the GitHub CLI
 * tests use iostreams.Test()). Same code path as the bin minus the process wiring (signals, exit),
 * so it is for behaviour; what needs a process (signals, pipes, exit codes of a real process, file
 * modes, crashes, cross-process locks) stays in spawned tests (./cli.ts).
 */
import { PassThrough, Writable } from 'node:stream';
import { main } from '../../src/app/main.js';
import { ROOT } from './paths.js';

export interface MainResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface MainOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  cwd?: string;
  /** Pretend stdout is a terminal (default: not). */
  tty?: boolean;
  /** Pretend stdin and stderr are a terminal (default: not): a prompt reads `input` as the person's answer. */
  stdinTty?: boolean;
  /** Whether stderr is a terminal, when it differs from stdin (`legacy … 2>log` typed at a terminal). */
  stderrTty?: boolean;
  /** The process's abort signal (Ctrl-C: abort it with an InterruptedError, as the bin does on SIGINT). */
  signal?: AbortSignal;
  /** Told each chunk written to stdout, as it is written (a test can press Ctrl-C at a known point). */
  onStdout?: (text: string) => void;
}

class Sink extends Writable {
  text = '';
  isTTY: boolean;
  columns = 100;
  constructor(
    tty: boolean,
    private readonly onText?: (text: string) => void,
  ) {
    super();
    this.isTTY = tty;
  }
  // A terminal's cursor calls (a spinner uses them): nothing to move in memory.
  cursorTo(_x: number, _y?: number | (() => void), callback?: () => void): boolean {
    (typeof _y === 'function' ? _y : callback)?.();
    return true;
  }
  moveCursor(_dx: number, _dy: number, callback?: () => void): boolean {
    callback?.();
    return true;
  }
  clearLine(_dir: number, callback?: () => void): boolean {
    callback?.();
    return true;
  }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    this.text += text;
    this.onText?.(text);
    callback();
  }
}

/** `legacy <argv>` in this process; the environment is only what is given (plus NO_COLOR). */
export async function runMain(argv: string[], options: MainOptions = {}): Promise<MainResult> {
  const stdout = new Sink(options.tty === true, options.onStdout);
  const stderr = new Sink(options.stderrTty ?? options.stdinTty === true);
  // A byte stream like process.stdin (not an object-mode Readable.from), ended after the input.
  const stdin = new PassThrough() as PassThrough & { isTTY?: boolean };
  stdin.isTTY = options.stdinTty === true;
  stdin.end(options.input === undefined ? undefined : Buffer.from(options.input));
  const env: Record<string, string | undefined> = { NO_COLOR: '1', PATH: process.env.PATH, HOME: process.env.HOME, ...options.env };
  const code = await main(argv, { stdout, stderr, stdin, env, cwd: options.cwd ?? ROOT }, { signal: options.signal });
  return { code, stdout: stdout.text, stderr: stderr.text };
}
