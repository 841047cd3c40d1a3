/** `--table`: a capped, width-fitted table for a terminal (cli-table3, loaded only for it). */
import type { Writable } from 'node:stream';
import { write } from '../../streams/write.js';
import type { RowWriter, WriterOptions } from './writer.js';

function cellText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function truncate(text: string, width: number): string {
  const flat = text.replace(/[\r\n\t]+/g, ' ');
  const chars = [...flat];
  return chars.length <= width ? flat : `${chars.slice(0, Math.max(1, width - 1)).join('')}…`;
}

export function tableWriter(columns: string[], out: Writable, options: WriterOptions): RowWriter {
  const maxRows = options.maxRows ?? 100;
  const rows: string[][] = [];
  let written = 0;
  return {
    get written() {
      return written;
    },
    async begin() {},
    async write(page) {
      for (const row of page) {
        if (rows.length >= maxRows) return;
        rows.push(row.map(cellText));
        written++;
      }
    },
    async end() {
      const { default: Table } = await import('cli-table3');
      // Fit the terminal: natural widths, then shrink the widest columns until the table fits.
      const total = options.width ?? 120;
      const natural = columns.map((c, i) => Math.min(60, Math.max([...c].length, ...rows.map((r) => [...(r[i] ?? '')].length), 1)));
      const overhead = columns.length * 3 + 1; // borders and padding
      const widths = [...natural];
      while (widths.reduce((a, b) => a + b, 0) + overhead > total) {
        const widest = widths.indexOf(Math.max(...widths));
        if (widths[widest]! <= 4) break;
        widths[widest]! -= 1;
      }
      const style = options.color ? { head: ['cyan'], border: ['grey'] } : { head: [], border: [] };
      const table = new Table({ head: columns.map((c, i) => truncate(c, widths[i]!)), style, colWidths: widths.map((w) => w + 2), wordWrap: false });
      for (const r of rows) table.push(r.map((cell, i) => truncate(cell, widths[i]!)));
      await write(out, `${table.toString()}\n`);
    },
  };
}
