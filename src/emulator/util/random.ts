/**
 * Deterministic hashing and pseudo-random numbers. Demo rows are pure functions of (seed, table, row index),
 * so nothing has to be stored for rows nobody changed.
 */
import { randomBytes } from 'node:crypto';

/** A bijective 32-bit mixer ("lowbias32"). */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** A 32-bit hash of a string (FNV-1a followed by mix32). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

/**
 * Returns a function (i, salt) → uint32 for a stream identified by `seed`. Distinct row indexes give distinct
 * values for a fixed salt.
 */
export function hasher(seed: number): (i: number, salt: number) => number {
  const s = mix32(seed ^ 0x9e3779b9);
  return (i, salt) => mix32(mix32((s + Math.imul(salt, 0x9e3779b1)) | 0) ^ i);
}

/** mulberry32: a small seeded PRNG. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = mix32(seed) | 0;
  }
  next(): number {
    // biome-ignore lint/suspicious/noAssignInExpressions: the idiomatic loop/step form
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  hex32(): string {
    let s = '';
    for (let i = 0; i < 4; i++) s += hex8((this.next() * 4294967296) >>> 0);
    return s;
  }
}

const HEX2 = Array.from({ length: 256 }, (_, b) => b.toString(16).toUpperCase().padStart(2, '0'));

/** 8 upper-case hex digits. */
export function hex8(n: number): string {
  return HEX2[(n >>> 24) & 255]! + HEX2[(n >>> 16) & 255]! + HEX2[(n >>> 8) & 255]! + HEX2[n & 255]!;
}

/** A random 32-hex upper-case id (session ids, entity set ids): a UUID without dashes, as 4D renders it. */
export function randomHexId(): string {
  return randomBytes(16).toString('hex').toUpperCase();
}

/**
 * A keyed permutation of 32-bit integers (4-round Feistel network) and its inverse. Demo UID keys embed
 * `permute(index)` so a key can be mapped back to its row without an index of all keys.
 */
export class Permutation32 {
  private readonly keys: number[];
  constructor(seed: number) {
    this.keys = [1, 2, 3, 4].map((k) => mix32(seed * 4 + k));
  }
  forward(x: number): number {
    let l = x >>> 16;
    let r = x & 0xffff;
    for (const k of this.keys) {
      const t = l ^ (mix32(r ^ k) & 0xffff);
      l = r;
      r = t;
    }
    return ((l << 16) | r) >>> 0;
  }
  inverse(y: number): number {
    let l = y >>> 16;
    let r = y & 0xffff;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      const prevR = l;
      const prevL = r ^ (mix32(l ^ this.keys[i]!) & 0xffff);
      l = prevL;
      r = prevR;
    }
    return ((l << 16) | r) >>> 0;
  }
}
