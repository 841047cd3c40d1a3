/**
 * Bulk input for push-field: CSV (header row) or NDJSON, from a file or stdin, streamed as rows.
 * Bytes must be valid UTF-8; a file is checked whole before anything is written.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { BadDataError, UsageError } from '../errors/index.js';

export interface InputRow {
  /** 1-based record number in the input (after the CSV header). */
  line: number;
  values: Record<string, unknown>;
}

export type InputFormat = 'csv' | 'ndjson';

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
        done(new BadDataError(`the input is not valid UTF-8 (near byte ${offset})`, { hint: 'save the file as UTF-8' }));
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

export async function detectFormat(path: string, cwd: string): Promise<InputFormat> {
  if (/\.(ndjson|jsonl)$/i.test(path)) return 'ndjson';
  if (/\.csv$/i.test(path) || path === '-') return path === '-' ? 'csv' : 'csv';
  const handle = await open(resolve(cwd, path), 'r');
  try {
    const { buffer, bytesRead } = await handle.read({ buffer: Buffer.alloc(256), position: 0 });
    return buffer.subarray(0, bytesRead).toString('utf8').trimStart().startsWith('{') ? 'ndjson' : 'csv';
  } finally {
    await handle.close();
  }
}

export function openInput(path: string, cwd: string, stdin: Readable): Readable {
  if (path === '-') return stdin;
  const stream = createReadStream(resolve(cwd, path));
  return stream;
}

/** Rows of the input, streamed. */
export async function* readRows(source: Readable, format: InputFormat): AsyncGenerator<InputRow> {
  const text = source.pipe(utf8Guard());
  source.on('error', (error) => text.destroy(error));
  if (format === 'csv') {
    const { parse } = await import('csv-parse');
    const parser = text.pipe(parse({ columns: true, bom: true, skip_empty_lines: true, relax_column_count: false, trim: false }));
    text.on('error', (error) => parser.destroy(error));
    let line = 0;
    try {
      for await (const record of parser as AsyncIterable<Record<string, string>>) {
        line += 1;
        yield { line, values: record };
      }
    } catch (error) {
      if (error instanceof BadDataError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') throw inputError(error);
      throw new BadDataError(`the CSV input is malformed: ${(error as Error).message}`);
    }
    return;
  }
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
    for await (const chunk of text as AsyncIterable<string>) {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const row = parseLine(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        if (row) yield row;
      }
    }
  } catch (error) {
    if (error instanceof BadDataError) throw error;
    throw inputError(error);
  }
  const last = parseLine(buffer);
  if (last) yield last;
}

function inputError(error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  return new UsageError(`cannot read the input: ${code ?? (error as Error).message}`);
}
