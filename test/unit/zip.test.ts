/**
 * The streaming ZIP writer (src/streams/zip.ts) against independent readers: Info-ZIP's `unzip -t`,
 * Python's zipfile (CRC-32 and sizes of every member) and, for a workbook, openpyxl; with ZIP64
 * records forced, the path an archive past 4 GiB takes. And against yazl, the library it replaced
 * (for its JS CRC-32 and stream copies, see the commit): the same entries read back the same.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { ZipWriter } from '../../src/streams/zip.js';
import { cleanupTempDirs, tempDir } from '../helpers/cli.js';
import { openpyxlPython } from '../helpers/services.mjs';
import { unzip } from '../helpers/zip.js';
import yazl from 'yazl';

const python = openpyxlPython();
afterAll(cleanupTempDirs);

/** Text that deflates poorly and well, in uneven chunks, the largest bigger than zlib's buffers. */
function parts(): Array<{ name: string; chunks: Buffer[] }> {
  let seed = 1;
  const noise = (n: number) =>
    Buffer.from(
      Array.from({ length: n }, () => {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        return seed >>> 24;
      }),
    );
  return [
    { name: 'xl/worksheets/sheet1.xml', chunks: [Buffer.from('<a>'), noise(300_000), Buffer.from('x'.repeat(1_000_000)), Buffer.alloc(0), noise(70_000)] },
    { name: 'leer.txt', chunks: [] },
    { name: 'Ärger/ü 😀.txt', chunks: [Buffer.from('Straße\n')] },
  ];
}

async function archive(forceZip64: boolean): Promise<{ file: string; want: Map<string, Buffer> }> {
  const file = join(tempDir(), 'a.zip');
  const out = createWriteStream(file);
  const zip = new ZipWriter(out, { forceZip64 });
  const want = new Map<string, Buffer>();
  const released: number[] = [];
  for (const part of parts()) {
    const entry = await zip.entry(part.name, 3);
    for (const [i, chunk] of part.chunks.entries()) await entry.write(chunk, () => released.push(i));
    await entry.end();
    want.set(part.name, Buffer.concat(part.chunks));
  }
  await zip.addBuffer('[Content_Types].xml', Buffer.from('<Types/>'));
  want.set('[Content_Types].xml', Buffer.from('<Types/>'));
  await zip.addBuffer('empty.xml', Buffer.alloc(0));
  want.set('empty.xml', Buffer.alloc(0));
  await zip.end();
  out.end();
  await finished(out);
  expect(released.length, 'every chunk handed back').toBe(6);
  return { file, want };
}

const PY_CHECK = `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
json.dump({i.filename: [i.file_size, z.read(i).hex()] for i in z.infolist()}, sys.stdout)
`;

describe('ZipWriter', () => {
  for (const forceZip64 of [false, true]) {
    it(`archives every reader reads the same${forceZip64 ? ' (ZIP64 records)' : ''}`, async () => {
      const { file, want } = await archive(forceZip64);
      const names = [...want.keys()];
      // Our own reader: names in order, contents, CRC-32 and sizes.
      const entries = unzip(readFileSync(file));
      expect(entries.map((e) => e.name)).toEqual(names);
      for (const e of entries) expect(e.data.equals(want.get(e.name)!), e.name).toBe(true);
      // Info-ZIP.
      expect(execFileSync('unzip', ['-t', file], { encoding: 'utf8' })).toMatch(/No errors detected/);
      // Python's zipfile.
      if (python) {
        const read = JSON.parse(execFileSync(python, ['-c', PY_CHECK, file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })) as Record<
          string,
          [number, string]
        >;
        expect(Object.keys(read)).toEqual(names);
        for (const [name, [size, hex]] of Object.entries(read)) {
          expect(size).toBe(want.get(name)!.length);
          expect(Buffer.from(hex, 'hex').equals(want.get(name)!), name).toBe(true);
        }
      }
    });
  }
});

describe('ZipWriter and yazl', () => {
  it('the same entries give archives whose entries read back alike: names, order, contents, flags', async () => {
    const { file } = await archive(false);
    const ours = unzip(readFileSync(file));
    const theirs = new yazl.ZipFile();
    for (const part of parts()) theirs.addBuffer(Buffer.concat(part.chunks), part.name, { compressionLevel: 3 });
    theirs.addBuffer(Buffer.from('<Types/>'), '[Content_Types].xml');
    theirs.addBuffer(Buffer.alloc(0), 'empty.xml');
    theirs.end();
    const chunks: Buffer[] = [];
    for await (const chunk of theirs.outputStream) chunks.push(chunk as Buffer);
    const reference = unzip(Buffer.concat(chunks));
    expect(ours.map((e) => e.name)).toEqual(reference.map((e) => e.name));
    for (const [i, e] of ours.entries()) {
      expect(e.data.equals(reference[i]!.data), e.name).toBe(true);
      // UTF-8 names (bit 11) as yazl marks them; ours streams, so it adds a data descriptor (bit 3).
      expect(e.flags & 0x0800, e.name).toBe(reference[i]!.flags & 0x0800);
    }
  });
});
