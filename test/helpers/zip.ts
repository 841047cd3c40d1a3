/**
 * A ZIP archive's entries, read through its central directory (ZIP64 included), each inflated and
 * checked against its CRC-32 and size: for tests that compare the contents of two archives.
 */
import { crc32, inflateRawSync } from 'node:zlib';

export interface ZipEntry {
  name: string;
  data: Buffer;
  /** General purpose flags of the central directory record. */
  flags: number;
}

const u64 = (b: Buffer, at: number) => Number(b.readBigUInt64LE(at));

export function unzip(zip: Buffer): ZipEntry[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('no end of central directory');
  let count = zip.readUInt16LE(eocd + 10);
  let offset = zip.readUInt32LE(eocd + 16);
  if (count === 0xffff || offset === 0xffffffff) {
    if (zip.readUInt32LE(eocd - 20) !== 0x07064b50) throw new Error('no ZIP64 end of central directory locator');
    const z64 = u64(zip, eocd - 20 + 8);
    if (zip.readUInt32LE(z64) !== 0x06064b50) throw new Error('no ZIP64 end of central directory');
    count = u64(zip, z64 + 32);
    offset = u64(zip, z64 + 48);
  }
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(offset) !== 0x02014b50) throw new Error(`no central directory record at ${offset}`);
    const flags = zip.readUInt16LE(offset + 8);
    const method = zip.readUInt16LE(offset + 10);
    const crc = zip.readUInt32LE(offset + 16);
    let compressed = zip.readUInt32LE(offset + 20);
    let size = zip.readUInt32LE(offset + 24);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extraLength = zip.readUInt16LE(offset + 30);
    const commentLength = zip.readUInt16LE(offset + 32);
    let local = zip.readUInt32LE(offset + 42);
    const name = zip.toString('utf8', offset + 46, offset + 46 + nameLength);
    for (let x = offset + 46 + nameLength; x < offset + 46 + nameLength + extraLength; ) {
      const tag = zip.readUInt16LE(x);
      const length = zip.readUInt16LE(x + 2);
      if (tag === 0x0001) {
        let at = x + 4;
        if (size === 0xffffffff) {
          size = u64(zip, at);
          at += 8;
        }
        if (compressed === 0xffffffff) {
          compressed = u64(zip, at);
          at += 8;
        }
        if (local === 0xffffffff) local = u64(zip, at);
      }
      x += 4 + length;
    }
    if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error(`no local header for ${name}`);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(start, start + compressed);
    const data = method === 8 ? inflateRawSync(raw) : method === 0 ? Buffer.from(raw) : undefined;
    if (!data) throw new Error(`${name}: compression method ${method}`);
    if (data.length !== size || crc32(data) !== crc) throw new Error(`${name}: size or CRC-32 does not match`);
    entries.push({ name, data, flags });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}
