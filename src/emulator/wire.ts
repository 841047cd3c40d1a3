/**
 * 4D wire encodings of dates and times.
 *
 * - Dates travel as `D!M!YYYY` without zero padding; `0!0!0` is the empty date; `null` is an unset date.
 * - Times (`duration`) travel as milliseconds since midnight.
 * - `__TIMESTAMP` is ISO-8601 UTC with milliseconds.
 *
 * The emulator treats the server's local time as UTC (the real server runs in Europe/Berlin, so its
 * `created_time` is local time); this keeps `modified_date`/`modified_time` and `__TIMESTAMP` consistent.
 */

export const EMPTY_DATE = '0!0!0';
export const DAY_MS = 86_400_000;

/** Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm). */
export function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** Inverse of daysFromCivil. */
export function civilFromDays(z: number): [number, number, number] {
  z += 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp + (mp < 10 ? 3 : -9);
  return [era * 400 + yoe + (m <= 2 ? 1 : 0), m, d];
}

/** `D!M!YYYY` for a day number. */
export function format4DDate(day: number): string {
  const [y, m, d] = civilFromDays(day);
  return `${d}!${m}!${y}`;
}

function validYmd(y: number, m: number, d: number): boolean {
  if (!Number.isInteger(y) || !Number.isInteger(m) || !Number.isInteger(d)) return false;
  if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) return false;
  const [yy, mm] = civilFromDays(daysFromCivil(y, m, d));
  return yy === y && mm === m;
}

/**
 * A sortable number for a stored date: yyyymmdd, 0 for the empty date, null for null (or garbage).
 * Accepts `D!M!YYYY` with or without zero padding.
 */
export function dateOrdinal(v: unknown): number | null {
  if (typeof v !== 'string') return null;
  const a = v.indexOf('!');
  const b = a < 0 ? -1 : v.indexOf('!', a + 1);
  if (b < 0) return null;
  const d = +v.slice(0, a);
  const m = +v.slice(a + 1, b);
  const y = +v.slice(b + 1);
  if (d === 0 && m === 0 && y === 0) return 0;
  if (!Number.isFinite(d + m + y)) return null;
  return y * 10000 + m * 100 + d;
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/;
const BANG_DATE = /^(\d{1,2})!(\d{1,2})!(\d{1,4})$/;

/**
 * Parses a date given by a client (update bodies, filter literals) into the stored `D!M!YYYY` form.
 * Accepted: `D!M!YYYY` (padded or not), `0!0!0`, `""` and `0000-00-00` (empty date), `YYYY-MM-DD`, and ISO
 * date-times such as `2010-10-05T23:00:00Z`, which are converted to UTC and truncated to the day
 * (server local time = UTC in the emulator). Returns undefined for anything else.
 */
export function parseDateInput(v: string): string | undefined {
  const s = v.trim();
  if (s === '' || s === '0000-00-00' || s === '00!00!0000' || s === '0!0!0' || s === '0!0!00') return EMPTY_DATE;
  let m = BANG_DATE.exec(s);
  if (m) {
    const [d, mo, y] = [+m[1]!, +m[2]!, +m[3]!];
    return validYmd(y, mo, d) ? `${d}!${mo}!${y}` : undefined;
  }
  m = ISO_DATE.exec(s);
  if (m) {
    const [y, mo, d] = [+m[1]!, +m[2]!, +m[3]!];
    return validYmd(y, mo, d) ? `${d}!${mo}!${y}` : undefined;
  }
  if (ISO_DATETIME.test(s)) {
    const t = Date.parse(/[Z+-]\d{0,2}:?\d{0,2}$/.test(s.slice(10)) ? s : `${s}Z`);
    if (Number.isNaN(t)) return undefined;
    return format4DDate(Math.floor(t / DAY_MS));
  }
  return undefined;
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** ISO-8601 UTC with milliseconds, as in `__TIMESTAMP` (hand-rolled: called for every rendered entity). */
export function isoTimestamp(ms: number): string {
  const day = Math.floor(ms / DAY_MS);
  const [y, m, d] = civilFromDays(day);
  if (y < 0 || y > 9999) return new Date(ms).toISOString();
  let rest = ms - day * DAY_MS;
  const milli = rest % 1000;
  rest = (rest - milli) / 1000;
  const sec = rest % 60;
  rest = (rest - sec) / 60;
  const min = rest % 60;
  const hour = (rest - min) / 60;
  const msText = milli < 10 ? `00${milli}` : milli < 100 ? `0${milli}` : String(milli);
  return `${String(y).padStart(4, '0')}-${pad2(m)}-${pad2(d)}T${pad2(hour)}:${pad2(min)}:${pad2(sec)}.${msText}Z`;
}

/** The (date, time) pair 4D's triggers write into `modified_date`/`modified_time` for an instant. */
export function dateTimeParts(ms: number): { date: string; time: number } {
  const day = Math.floor(ms / DAY_MS);
  const time = Math.floor((ms - day * DAY_MS) / 1000) * 1000; // 4D times have second resolution
  return { date: format4DDate(day), time };
}
