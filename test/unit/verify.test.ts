/** Row checks never reject a row 4D may have been right to send (only certain mismatches count). */
import { describe, expect, it } from 'vitest';
import type { Attribute } from '../../src/rest/types.js';
import { conditionCheck } from '../../src/table/verify.js';

const attr = (name: string, type: string): Attribute => ({ name, kind: 'storage', type });
const test = (a: Attribute, op: string, value: unknown, v: unknown) => conditionCheck(a, op, value, `${a.name}${op}${String(value)}`)!.test({ [a.name]: v });

describe('row checks', () => {
  it('reals: values within 4D-like tolerance of the bound cannot be judged; clear ones can', () => {
    const preis = attr('Preis', 'number');
    expect(test(preis, '>', 100, 100.00000005)).toBeUndefined();
    expect(test(preis, '<', 100, 99.99999995)).toBeUndefined();
    expect(test(preis, '!=', 100, 100.00000005)).toBeUndefined();
    expect(test(preis, '>', 100, 99)).toBe(false);
    expect(test(preis, '>', 100, 101)).toBe(true);
    const id = attr('ID', 'long');
    expect(test(id, '>=', 10, 9)).toBe(false);
    expect(test(id, '=', 10, 10)).toBe(true);
  });

  it('null: blank values (empty date, empty text) cannot be judged; null and a real value can', () => {
    const datum = attr('Datum', 'date');
    expect(test(datum, '=', null, '0!0!0')).toBeUndefined();
    expect(test(datum, '=', null, null)).toBe(true);
    expect(test(datum, '=', null, '1!2!2025')).toBe(false);
    expect(test(attr('Name', 'string'), '!=', null, '')).toBeUndefined();
    expect(test(attr('Name', 'string'), '!=', null, 'x')).toBe(true);
  });

  it('text: plain ASCII case-insensitively with @; other text cannot be judged', () => {
    const ort = attr('Ort', 'string');
    expect(test(ort, '=', 'dresden', 'Dresden')).toBe(true);
    expect(test(ort, '=', 'Dres@', 'Dresden')).toBe(true);
    expect(test(ort, '=', 'Dresden', 'Berlin')).toBe(false);
    expect(test(ort, '=', 'Köln', 'Koeln')).toBeUndefined();
    expect(test(ort, 'begin', 'Dr', 'dresden')).toBe(true);
  });

  it('dates compare by day; an empty date cannot be judged', () => {
    const d = attr('modified_date', 'date');
    expect(test(d, '>=', '2025-01-27', '27!1!2025')).toBe(true);
    expect(test(d, '>=', '2025-01-27', '26!1!2025')).toBe(false);
    expect(test(d, '>=', '2025-01-27', '0!0!0')).toBeUndefined();
  });
});
