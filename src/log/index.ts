/**
 * Logging: winston, to stderr only (never stdout), plus an optional file.
 *
 * winston costs ~33 ms to import, and cron runs this tool every few minutes, so it is loaded
 * on the first record that is actually emitted (a quiet successful run never loads it).
 * Every record passes through the redaction format first.
 */
import { closeSync, openSync, fchmodSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import { CannotCreateError } from '../errors/index.js';
import type { ChalkInstance } from 'chalk';
import { redact, redactString, registerSecret } from './redact.js';

export { redact, redactString, registerSecret };

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LoggerOptions {
  level: LogLevel;
  format: 'text' | 'json';
  stderr: Writable;
  file?: string;
  /**
   * Colour for the level names on stderr: a chalk instance at the level the one colour decision
   * (cli/io.ts) chose; none: no colour. The caller loads chalk only then (~20 ms cron never pays).
   */
  chalk?: ChalkInstance;
}

export interface Logger {
  readonly level: LogLevel;
  isEnabled(level: LogLevel): boolean;
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  /** Flush the file transport. Call before the process ends. */
  close(): Promise<void>;
}

type WinstonModule = typeof import('winston');
const require = createRequire(import.meta.url);

function formatMeta(meta: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(meta)) {
    if (v === undefined) continue;
    parts.push(`${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`);
  }
  return parts.length ? ` ${parts.join(' ')}` : '';
}

export function createLogger(options: LoggerOptions): Logger {
  if (options.file) {
    // Create the file now, 0600, so that a bad path is reported at once (73), not from whatever
    // code happens to log first.
    try {
      const fd = openSync(options.file, 'a', 0o600);
      fchmodSync(fd, 0o600);
      closeSync(fd);
    } catch (error) {
      throw new CannotCreateError(`cannot open log file ${options.file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
        hint: 'check that the directory exists and is writable',
      });
    }
  }
  let winstonLogger: import('winston').Logger | undefined;
  let fileTransport: import('winston').transport | undefined;

  const build = (): import('winston').Logger => {
    if (winstonLogger) return winstonLogger;
    const winston = require('winston') as WinstonModule;
    const { format } = winston;
    const redactFormat = format((info) => {
      const clean = redact({ ...info });
      // winston keeps the level/message under symbols too; copy the redacted string fields back.
      for (const [k, v] of Object.entries(clean)) (info as Record<string, unknown>)[k] = v;
      return info;
    });
    const chalk = options.format === 'text' ? options.chalk : undefined;
    const colours: Record<string, (text: string) => string> = chalk ? { error: chalk.red, warning: chalk.yellow, info: chalk.cyan, debug: chalk.gray } : {};
    const paint = (level: string): string => (colours[level] ?? String)(level);
    const textLine = (colored: boolean) =>
      format.printf((info) => {
        const { level, message, timestamp: _t, ...meta } = info as Record<string, unknown> & { level: string; message: unknown };
        const label = level === 'warn' ? 'warning' : level;
        return `legacy: ${colored ? paint(label) : label}: ${String(message)}${formatMeta(meta)}`;
      });
    const jsonLine = format.combine(format.timestamp(), format.json());
    // A Stream transport on the injected stderr: winston's Console transport would write to
    // stdout by default, and stdout carries data only.
    const transports: import('winston').transport[] = [
      new winston.transports.Stream({
        stream: options.stderr,
        format: options.format === 'json' ? jsonLine : textLine(chalk !== undefined),
      }),
    ];
    if (options.file) {
      fileTransport = new winston.transports.File({
        filename: options.file,
        format:
          options.format === 'json'
            ? jsonLine
            : format.combine(
                format.timestamp(),
                format.printf((info) => {
                  const { level, message, timestamp, ...meta } = info as Record<string, unknown> & { level: string };
                  return `${String(timestamp)} ${level}: ${String(message)}${formatMeta(meta)}`;
                }),
              ),
      });
      transports.push(fileTransport);
    }
    winstonLogger = winston.createLogger({
      level: options.level,
      levels: { error: 0, warn: 1, info: 2, debug: 3 },
      format: redactFormat(),
      transports,
      exitOnError: false,
    });
    return winstonLogger;
  };

  const emit = (level: LogLevel, message: string, meta?: Record<string, unknown>) => {
    if (RANK[level] > RANK[options.level]) return;
    build().log(level, redactString(message), meta ? redact(meta) : undefined);
  };

  return {
    level: options.level,
    isEnabled: (level) => RANK[level] <= RANK[options.level],
    error: (m, meta) => emit('error', m, meta),
    warn: (m, meta) => emit('warn', m, meta),
    info: (m, meta) => emit('info', m, meta),
    debug: (m, meta) => emit('debug', m, meta),
    close: async () => {
      const logger = winstonLogger;
      if (!logger) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        if (fileTransport) fileTransport.once('finish', done);
        else logger.once('finish', done);
        logger.end();
      });
    },
  };
}

/** A logger that drops everything (library callers that pass none). */
export const silentLogger: Logger = {
  level: 'error',
  isEnabled: () => false,
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  close: async () => undefined,
};
