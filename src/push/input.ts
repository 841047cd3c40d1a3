/**
 * Bulk input for push-field, streamed as rows: what `get-table` writes, and what a spreadsheet
 * program saves from it. CSV (header row; the delimiter detected from the header or given; BOM,
 * CRLF and quoted fields), NDJSON, a JSON array, or an .xlsx workbook (./xlsx.ts), from a file or
 * (except xlsx) stdin. Text must be valid UTF-8. A file can be read twice: once to check it whole
 * (bulk.ts) before anything is written, once to push it.
 */
import { open } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { Readable, Transform, pipeline } from 'node:stream';
import { BadDataError, UsageError } from '../errors/index.js';

export interface InputRow {
  /** 1-based record number in the input (after the header row). */
  line: number;
  values: Record<string, unknown>;
}

export type InputFormat = 'csv' | 'ndjson' | 'json' | 'xlsx';

/** An input opened for reading: its rows and what is known about how they were written. */
export interface OpenedInput {
  format: InputFormat;
  /** CSV: the delimiter (given, or detected from the header row). */
  delimiter?: string;
  /** xlsx: serial dates count from 1904. */
  date1904?: boolean;
  /** The column names, when the format has a header (CSV, xlsx); else undefined (each row names its own). */
  header?: string[];
  rows: AsyncGenerator<InputRow>;
  /** Stop reading (an early end); safe to call twice. */
  close(): void;
}

export interface InputSpec {
  /** A file path, or - for stdin. */
  path: string;
  cwd: string;
  stdin: Readable;
  /** CSV delimiter; undefined: detected. */
  delimiter?: string;
  /** The format; undefined: from the extension, else from the first bytes. */
  format?: InputFormat;
}

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

const ZIP_MAGIC = Buffer.from([0x50, 0x4b, 0x03, 0x04]);

function formatOfBytes(first: Buffer): InputFormat {
  if (first.subarray(0, 4).equals(ZIP_MAGIC)) return 'xlsx';
  const text = first
    .toString('utf8')
    .replace(/^\ufeff/, '')
    .trimStart();
  if (text.startsWith('[')) return 'json';
  if (text.startsWith('{')) return 'ndjson';
  return 'csv';
}

const FORMAT_OF_EXTENSION: Record<string, InputFormat> = {
  '.csv': 'csv',
  '.tsv': 'csv',
  '.txt': 'csv',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.json': 'json',
  '.xlsx': 'xlsx',
  '.xlsm': 'xlsx',
};

/** Sniff stdin: peek at its first chunk and put it back. */
async function peekStdin(stdin: Readable): Promise<Buffer | null> {
  return new Promise<Buffer | null>((resolve, reject) => {
    const onReadable = () => {
      cleanup();
      // Put it back at once: read() of the last buffered bytes of an ended stream schedules 'end',
      // and a later unshift would be lost (small inputs piped in whole).
      const chunk = stdin.read() as Buffer | null;
      if (chunk) stdin.unshift(chunk);
      resolve(chunk ? Buffer.from(chunk) : null);
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
}

/**
 * The input's format: the one given, else the file's extension, else its first bytes.
 * @public (push-field loads it with a dynamic import, which knip does not follow)
 */
export async function detectFormat(spec: InputSpec): Promise<InputFormat> {
  if (spec.format) return spec.format;
  if (spec.path === '-') {
    const first = await peekStdin(spec.stdin);
    return first ? formatOfBytes(first) : 'csv';
  }
  const byName = FORMAT_OF_EXTENSION[extname(spec.path).toLowerCase()];
  if (byName) return byName;
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(resolve(spec.cwd, spec.path), 'r');
  } catch (error) {
    throw new UsageError(`cannot read ${spec.path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  try {
    const { buffer, bytesRead } = await handle.read({ buffer: Buffer.alloc(256), position: 0 });
    return formatOfBytes(buffer.subarray(0, bytesRead));
  } catch {
    return 'csv';
  } finally {
    await handle.close();
  }
}

/** Open the input; a file that cannot be read is a usage error (64) before anything else happens. */
async function openStream(spec: InputSpec): Promise<Readable> {
  if (spec.path === '-') return spec.stdin;
  try {
    const handle = await open(resolve(spec.cwd, spec.path), 'r');
    return handle.createReadStream();
  } catch (error) {
    throw new UsageError(`cannot read ${spec.path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/**
 * Open the input in the given (or detected) format.
 * @public (push-field loads it with a dynamic import, which knip does not follow)
 */
export async function openRows(spec: InputSpec, format: InputFormat): Promise<OpenedInput> {
  if (format === 'xlsx') {
    if (spec.path === '-') throw new UsageError('an .xlsx workbook cannot be read from stdin: give its file name to --from');
    const { openXlsx } = await import('./xlsx.js');
    let book: Awaited<ReturnType<typeof openXlsx>>;
    try {
      book = await openXlsx(resolve(spec.cwd, spec.path));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code && /^E[A-Z]+$/.test(code)) throw new UsageError(`cannot read ${spec.path}: ${code}`);
      throw error;
    }
    const header = book.header;
    async function* rows(): AsyncGenerator<InputRow> {
      let line = 0;
      for await (const row of book.rows) {
        line += 1;
        const values: Record<string, unknown> = {};
        for (let i = 0; i < Math.max(header.length, row.cells.length); i++) {
          const name = header[i] ?? '';
          const cell = row.cells[i] ?? null;
          if (name === '' && (cell === null || cell === '')) continue;
          values[name] = cell;
        }
        yield { line, values };
      }
    }
    return { format, date1904: book.date1904, header, rows: rows(), close: () => book.close() };
  }
  const source = await openStream(spec);
  const close = () => {
    if (source !== spec.stdin) source.destroy();
  };
  if (format === 'csv') {
    const opened = await csvRows(source, spec.delimiter);
    return { format, ...opened, close };
  }
  if (format === 'json') return { format, rows: jsonRows(source), close };
  return { format, rows: ndjsonRows(source), close };
}

/** The most frequent of , ; TAB | outside quotes in the header line (`,` when none). */
export function detectDelimiter(headerLine: string): string {
  const counts = new Map<string, number>([
    [',', 0],
    [';', 0],
    ['\t', 0],
    ['|', 0],
  ]);
  let quoted = false;
  for (const ch of headerLine) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && counts.has(ch)) counts.set(ch, counts.get(ch)! + 1);
  }
  let best = ',';
  for (const [ch, n] of counts) if (n > counts.get(best)!) best = ch;
  return best;
}

/** CSV rows: the header line is read first to find the delimiter, then everything goes to csv-parse. */
async function csvRows(source: Readable, given: string | undefined): Promise<{ delimiter: string; header: string[]; rows: AsyncGenerator<InputRow> }> {
  const text = pipeline(source, utf8Guard(), () => undefined) as unknown as AsyncIterable<string>;
  const iterator = text[Symbol.asyncIterator]();
  let head = '';
  try {
    while (!head.includes('\n')) {
      const next = await iterator.next();
      if (next.done) break;
      head += next.value;
    }
  } catch (error) {
    throw classify(error, 'CSV');
  }
  const firstLine = head.replace(/^\ufeff/, '').split('\n')[0] ?? '';
  const delimiter = given ?? detectDelimiter(firstLine.replace(/\r$/, ''));
  const { parse } = await import('csv-parse');
  let header: string[] = [];
  // relax_quotes: a quote inside an unquoted field is taken literally (common in hand-made files).
  const parser = parse({
    bom: true,
    delimiter,
    skip_empty_lines: true,
    relax_quotes: true,
    trim: false,
    columns: (names: string[]) => {
      const seen = new Set<string>();
      for (const name of names) {
        if (name !== '' && seen.has(name)) throw new BadDataError(`the CSV header names the column '${name}' twice`);
        seen.add(name);
      }
      header = names;
      return names.map((n, i) => (n === '' ? `\u0000${i}` : n));
    },
  });
  const feed = Readable.from(
    (async function* () {
      if (head) yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })(),
    { objectMode: false },
  );
  pipeline(feed, parser, () => undefined);
  // The header is known once the parser has read the first line.
  const records = (parser as AsyncIterable<Record<string, string>>)[Symbol.asyncIterator]();
  let first: IteratorResult<Record<string, string>>;
  try {
    first = await records.next();
  } catch (error) {
    throw classify(error, 'CSV');
  }
  async function* rows(): AsyncGenerator<InputRow> {
    let line = 0;
    let current = first;
    try {
      while (!current.done) {
        line += 1;
        const values: Record<string, unknown> = {};
        for (const [name, value] of Object.entries(current.value)) {
          // A column without a name (a trailing delimiter) is left out; a value in it is kept under '' for bulk.ts to refuse.
          if (name.startsWith('\u0000')) {
            if (value !== '') values[''] = value;
          } else values[name] = value;
        }
        yield { line, values };
        current = await records.next();
      }
    } catch (error) {
      throw classify(error, 'CSV');
    }
  }
  return { delimiter, header: header.filter((n) => n !== ''), rows: rows() };
}

/** NDJSON: one JSON object per line. */
async function* ndjsonRows(source: Readable): AsyncGenerator<InputRow> {
  const text = pipeline(source, utf8Guard(), () => undefined) as unknown as AsyncIterable<string>;
  let buffer = '';
  let line = 0;
  let record = 0;
  const parseLine = (raw: string): InputRow | undefined => {
    line += 1;
    const trimmed = line === 1 ? raw.replace(/^\ufeff/, '') : raw;
    if (trimmed.trim() === '') return undefined;
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch {
      throw new BadDataError(`line ${line} of the NDJSON input is not JSON`);
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new BadDataError(`line ${line} of the NDJSON input is not a JSON object`);
    record += 1;
    return { line: record, values: value as Record<string, unknown> };
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

/** A JSON array of objects (what `get-table --json` writes), streamed element by element by stream-json. */
async function* jsonRows(source: Readable): AsyncGenerator<InputRow> {
  const { default: streamArray } = await import('stream-json/streamers/stream-array.js');
  const elements = streamArray.withParserAsStream();
  const text = pipeline(source, utf8Guard(), () => undefined);
  pipeline(text, elements, () => undefined);
  try {
    for await (const { key, value } of elements as AsyncIterable<{ key: number; value: unknown }>) {
      if (!value || typeof value !== 'object' || Array.isArray(value)) throw new BadDataError(`element ${key + 1} of the JSON array is not an object`);
      yield { line: key + 1, values: value as Record<string, unknown> };
    }
  } catch (error) {
    throw classify(error, 'JSON');
  }
}

function classify(error: unknown, kind: string): Error {
  if (error instanceof BadDataError || error instanceof UsageError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code && /^E[A-Z]+$/.test(code)) return new UsageError(`cannot read the input: ${code}`);
  return new BadDataError(`the ${kind} input is malformed: ${(error as Error).message.split('\n')[0]}`);
}
