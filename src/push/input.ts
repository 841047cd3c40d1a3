/**
 * Bulk input for push-field: CSV (header row) or NDJSON, from a file or stdin, streamed as rows.
 * Bytes must be valid UTF-8; a file is checked whole before anything is written.
 */
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Transform, pipeline, type Readable } from 'node:stream';
import { BadDataError, UsageError } from '../errors/index.js';

export interface InputRow {
  /** 1-based record number in the input (after the CSV header). */
  line: number;
  values: Record<string, unknown>;
}

export type InputFormat = 'csv' | 'ndjson';

/** Index of the first byte in `chunk` that starts or continues an invalid UTF-8 sequence (0 if unknown). */
function firstInvalidByte(chunk: Buffer): number {
  const fatal = new TextDecoder('utf-8', { fatal: true });
  // Binary search on prefixes: the longest prefix that decodes (allowing a cut-off sequence at its end).
  let lo = 0;
  let hi = chunk.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    try {
      fatal.decode(chunk.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  // A sequence left incomplete at the end of that prefix is where the error starts.
  let k = lo;
  while (k > 0 && lo - k < 3 && ((chunk[k - 1] ?? 0) & 0xc0) === 0x80) k--;
  return k > 0 && ((chunk[k - 1] ?? 0) & 0xc0) === 0xc0 ? k - 1 : lo;
}

/** Fails the stream on bytes that are not UTF-8 (Node would silently turn them into U+FFFD). */
function utf8Guard(): Transform {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      try {
        const text = decoder.decode(chunk, { stream: true });
        offset += chunk.length;
        done(null, text);
      } catch {
        done(new BadDataError(`the input is not valid UTF-8 (at byte offset ${offset + firstInvalidByte(chunk)})`, { hint: 'save the file as UTF-8' }));
      }
    },
    flush(done) {
      try {
        done(null, decoder.decode());
      } catch {
        done(new BadDataError('the input ends in the middle of a UTF-8 character', { hint: 'save the file as UTF-8' }));
      }
    },
  });
}

/** Sniff stdin: peek at its first chunk and put it back. */
export async function detectStdinFormat(stdin: Readable): Promise<InputFormat> {
  const first = await new Promise<Buffer | null>((resolve, reject) => {
    const onReadable = () => {
      cleanup();
      // Put it back at once: read() of the last buffered bytes of an ended stream schedules 'end',
      // and a later unshift would be lost (small inputs piped in whole).
      const chunk = stdin.read() as Buffer | null;
      if (chunk) stdin.unshift(chunk);
      resolve(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      stdin.off('readable', onReadable);
      stdin.off('end', onEnd);
      stdin.off('error', onError);
    };
    stdin.once('readable', onReadable);
    stdin.once('end', onEnd);
    stdin.once('error', onError);
  });
  if (!first) return 'csv';
  return Buffer.from(first).toString('utf8').trimStart().startsWith('{') ? 'ndjson' : 'csv';
}

export async function detectFormat(path: string, cwd: string): Promise<InputFormat> {
  if (/\.(ndjson|jsonl)$/i.test(path)) return 'ndjson';
  if (/\.csv$/i.test(path)) return 'csv';
  const handle = await open(resolve(cwd, path), 'r');
  try {
    const { buffer, bytesRead } = await handle.read({ buffer: Buffer.alloc(256), position: 0 });
    return buffer.subarray(0, bytesRead).toString('utf8').trimStart().startsWith('{') ? 'ndjson' : 'csv';
  } finally {
    await handle.close();
  }
}

/** Open the input; a file that cannot be read is a usage error (64) before anything else happens. */
export async function openInput(path: string, cwd: string, stdin: Readable): Promise<Readable> {
  if (path === '-') return stdin;
  try {
    const handle = await open(resolve(cwd, path), 'r');
    return handle.createReadStream();
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/** Rows of the input, streamed. Errors of any stage (read, UTF-8, parse) end the iteration. */
export async function* readRows(source: Readable, format: InputFormat): AsyncGenerator<InputRow> {
  if (format === 'csv') {
    const { parse } = await import('csv-parse');
    // relax_quotes: a quote inside an unquoted field is taken literally (common in hand-made files).
    const parser = parse({ columns: true, bom: true, skip_empty_lines: true, relax_quotes: true, trim: false });
    pipeline(source, utf8Guard(), parser, () => undefined);
    let line = 0;
    try {
      for await (const record of parser as AsyncIterable<Record<string, string>>) {
        line += 1;
        yield { line, values: record };
      }
    } catch (error) {
      throw classify(error, 'CSV');
    }
    return;
  }
  const text = pipeline(source, utf8Guard(), () => undefined) as unknown as AsyncIterable<string>;
  let buffer = '';
  let line = 0;
  const parseLine = (raw: string): InputRow | undefined => {
    line += 1;
    if (raw.trim() === '') return undefined;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new BadDataError(`line ${line} of the NDJSON input is not JSON`);
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new BadDataError(`line ${line} of the NDJSON input is not a JSON object`);
    return { line, values: value as Record<string, unknown> };
  };
  try {
    for await (const chunk of text) {
      buffer += chunk;
      let nl: number;
      // biome-ignore lint/suspicious/noAssignInExpressions: the idiomatic loop/step form
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const row = parseLine(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        if (row) yield row;
      }
    }
  } catch (error) {
    throw classify(error, 'NDJSON');
  }
  const last = parseLine(buffer);
  if (last) yield last;
}

function classify(error: unknown, kind: string): Error {
  if (error instanceof BadDataError || error instanceof UsageError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code && /^E[A-Z]+$/.test(code)) return inputError(error);
  return new BadDataError(`the ${kind} input is malformed: ${(error as Error).message}`);
}

function inputError(error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  return new UsageError(`cannot read the input: ${code ?? (error as Error).message}`);
}
