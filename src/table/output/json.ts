/** `--json` (one array) and `--ndjson` (one object per line): objects with the keys in column order. */
import type { Writable } from 'node:stream';
import { write } from '../../streams/write.js';
import { jsonText } from '../convert.js';
import { jsonTranscoder } from './transcode.js';
import { pageEncoder, type RowWriter, writeEncoded } from './writer.js';

export function jsonWriter(columns: string[], out: Writable, ndjson: boolean, resumeAt?: number): RowWriter {
  let written = resumeAt ?? 0;
  // Build each object with the keys in column order.
  const toObject = (row: readonly unknown[]) => {
    const obj: Record<string, unknown> = {};
    for (let i = 0; i < columns.length; i++) obj[columns[i]!] = row[i] ?? null;
    return obj;
  };
  // JSON: a line break before the first row, a comma and one before every other.
  const separator = (index: number) => (index === 0 ? '\n' : ',\n');
  return {
    get written() {
      return written;
    },
    async begin() {
      if (!ndjson && resumeAt === undefined) await write(out, '[');
    },
    async write(rows) {
      let chunk = '';
      for (const row of rows) {
        const text = jsonText(toObject(row));
        if (ndjson) chunk += `${text}\n`;
        else chunk += `${separator(written)}${text}`;
        written++;
      }
      await write(out, chunk);
    },
    async end() {
      if (!ndjson) await write(out, written === 0 ? ']\n' : '\n]\n');
    },
    encoder(cols) {
      const transcoder = jsonTranscoder(cols);
      if (!transcoder) return undefined;
      return pageEncoder(transcoder, (row) => jsonText(toObject(row)), ndjson ? { after: 0x0a } : { before: separator }, written);
    },
    async writeEncoded(page) {
      written += page.rows;
      await writeEncoded(out, page);
    },
  };
}
