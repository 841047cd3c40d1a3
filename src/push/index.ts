/**
 * Safe field updates with optimistic locking (4D `$method=update` with `__KEY` + `__STAMP`).
 *
 * For each row: read the record (its value and __STAMP), convert the new value with the catalog
 * type, skip it when it already holds that value, send only the changed fields with the stamp,
 * and check every returned item for __ERROR/__STATUS even on HTTP 200.
 * - The stamp sent is the one just read; for a row of an exported file with `__STAMP` it is the
 *   export's (`expected stamp`): a record saved since the export is a conflict, reported with the
 *   file's and the server's values and left as the server has it, unless --force.
 * - Stamp conflict (1263) at the write: re-read. With an expected stamp (and no --force) that is a
 *   conflict. Else: if a target field itself changed since our read → conflict (unless --force);
 *   if only other fields changed → retry with the new stamp (3 times at most).
 * - A write is never blindly re-sent: after a timeout or reset, re-read; if the record already
 *   holds the new value it is reported updated, otherwise it is retried once.
 */
import { BadDataError, CancelledError, EXIT_CANCELLED, ExitCode, type LegacyError, PermissionError } from '../errors/index.js';
import { EntitySetGoneError, type RestClient } from '../rest/index.js';
import type { Attribute, DataClass, Entity } from '../rest/types.js';
import type { Logger } from '../log/index.js';
import { classOfCode, errCodeOf, isRecordGone, isStampConflict } from '../protocol/errors.js';
import { pageUrl } from '../protocol/url.js';
import { TransportError, newRequestId } from '../transport/index.js';
import { attributeNamed } from '../table/plan/query.js';
import { MEDIA_TYPES, relatedKey } from '../table/convert.js';
import type { AuditLog, AuditRecord } from './audit.js';
import { displayValue, coerce, sameValue, type ValueType } from './coerce.js';
import type { FileValue } from './values.js';

export type PushResult = 'updated' | 'unchanged' | 'conflict' | 'not-found' | 'forbidden' | 'invalid' | 'failed' | 'would-update' | 'cancelled' | 'pending';

export interface PushRequestRow {
  line?: number;
  key: string;
  /** Field → input value (text from CSV/argv, typed from NDJSON/JSON/xlsx). */
  fields: Record<string, unknown>;
  /** The record's `__STAMP` in the exported file: the row is written only if the server still has it. */
  stamp?: number;
  /** Columns compared with the server but never written (relations, pictures, the key field): column → file value. */
  fixed?: Record<string, unknown>;
}

export interface RowReport {
  line?: number;
  key: string;
  fields: string[];
  /** The server's values (for a conflict: as the server has them now). */
  old: Record<string, unknown>;
  /** The file's (or the command line's) values. */
  new: Record<string, unknown>;
  result: PushResult;
  message?: string;
  stampBefore?: number;
  stampAfter?: number;
  /** The `__STAMP` the file was exported with. */
  stampExported?: number;
  /** A conflict's values at export time, where known (the record was read at the exported stamp). */
  exported?: Record<string, unknown>;
  /** Written with --force over a change made since the export. */
  forced?: boolean;
}

export interface PushOptions {
  dryRun?: boolean;
  force?: boolean;
  type?: ValueType;
  logger: Logger;
  audit: AuditLog;
  env: string;
  /**
   * Asked before anything is written with the planned changes (a bulk push: the first of them, and
   * the totals of the whole file); false = write none of them.
   */
  confirm?: (changes: RowReport[], total?: ChangeTotals) => Promise<boolean>;
  /** Ctrl-C: no further update request is sent once it is aborted. */
  signal?: AbortSignal;
  /** How a file's value becomes the value sent (values.ts); default: the command line's rules (coerce). */
  convert?: (attr: Attribute, input: unknown) => FileValue;
  /** Changed records per update request (default 100). */
  batchSize?: number;
}

/** What a whole bulk file changes: records and fields. */
export interface ChangeTotals {
  records: number;
  fields: number;
}

export interface Planned {
  report: RowReport;
  entity?: Entity;
  values?: Record<string, unknown>; // converted new values of the changed fields
  attrs?: Attribute[];
  /** The stamp the write must find: the export's (when the file has __STAMP and no --force) */
  expectStamp?: number;
}

const MAX_CONFLICT_RETRIES = 3;
/** Longest batch-read URL: well under the client's 16 KB limit, so a batch read never falls back to one read per key. */
const MAX_READ_URL = 12 * 1024;
const DEFAULT_BATCH = 100;

function changedBySomeoneElse(attr: Attribute, before: Entity, now: Entity): string {
  const show = (e: Entity) => JSON.stringify(displayValue(attr, e[attr.name]));
  return `${attr.name} was changed by someone else from ${show(before)} to ${show(now)}; re-run to overwrite`;
}

/** What a read-only column's server value is, as export writes it (text), for comparison with the file. */
function fixedText(attr: Attribute | undefined, entity: Entity): string {
  if (!attr) return String(entity.__KEY);
  if (attr.kind === 'relatedEntity') return relatedKey(entity[attr.name]) ?? '';
  // Pictures, blobs and to-many relations have no value of their own in an export (an empty cell).
  if (attr.kind === 'relatedEntities' || MEDIA_TYPES.has(attr.type)) return '';
  const v = entity[attr.name];
  return v === null || v === undefined ? '' : String(v);
}

export class Pusher {
  private batchReadWorks = true;

  constructor(
    private readonly client: RestClient,
    readonly dataClass: DataClass,
    private readonly options: PushOptions,
  ) {}

  get keyAttribute(): Attribute | undefined {
    const name = this.dataClass.key[0]?.name;
    return name ? this.dataClass.attributes.find((a) => a.name === name) : undefined;
  }

  /** Check field names before anything is read or written. */
  checkFields(names: string[]): Attribute[] {
    return names.map((n) => {
      const attr = attributeNamed(this.dataClass, n, 'field');
      if (attr.kind !== 'storage') throw new BadDataError(`${attr.name} is a relation; push-field updates stored fields only`);
      if (this.dataClass.key.some((k) => k.name === attr.name)) throw new BadDataError(`${attr.name} is the table's key and cannot be changed`);
      return attr;
    });
  }

  /**
   * Read many records by key: filtered requests (`key IN :1`) of as many keys as fit a URL, or one
   * GET each if the server refuses that.
   */
  async readMany(keys: string[]): Promise<Map<string, Entity>> {
    const found = new Map<string, Entity>();
    const keyAttr = this.keyAttribute;
    if (keys.length > 1 && keyAttr && this.batchReadWorks) {
      const numeric = ['long', 'long64', 'word', 'number'].includes(keyAttr.type);
      const values = keys.map((k) => (numeric && /^-?\d+$/.test(k) ? Number(k) : k));
      const query = (group: unknown[]) => ({ filter: `${keyAttr.name} IN :1`, params: [group], top: group.length, skip: 0 });
      // Groups whose URL fits: halve a group until it does.
      const groups: unknown[][] = [];
      const split = (group: unknown[]) => {
        if (group.length > 1 && pageUrl(this.client.baseUrl, this.dataClass.name, query(group)).length > MAX_READ_URL) {
          const half = Math.ceil(group.length / 2);
          split(group.slice(0, half));
          split(group.slice(half));
        } else groups.push(group);
      };
      split(values);
      try {
        for (const group of groups) {
          const envelope = await this.client.page(this.dataClass.name, query(group));
          // Verify, don't trust: a server that dropped the filter sends other records (or more).
          const asked = new Set(group.map(String));
          const stray = envelope.__ENTITIES.find((e) => !asked.has(String(e.__KEY)));
          if (envelope.__COUNT > group.length || stray) {
            this.batchReadWorks = false;
            this.options.logger.warn(
              `the server did not apply the batch read's filter (${stray ? `it sent record ${String(stray.__KEY)}, which was not asked for` : `it counted ${envelope.__COUNT} records for ${group.length} keys`}); reading records one by one`,
            );
            found.clear();
            break;
          }
          for (const e of envelope.__ENTITIES) found.set(String(e.__KEY), e);
        }
        if (this.batchReadWorks) return found;
      } catch (error) {
        if (!(error instanceof BadDataError) || error instanceof EntitySetGoneError) throw error;
        this.batchReadWorks = false;
        found.clear();
        this.options.logger.info(`the server refused a batch read (${error.message}); reading records one by one`);
      }
    }
    for (const key of keys) {
      const e = await this.client.entity(this.dataClass.name, key);
      if (e) found.set(key, e);
    }
    return found;
  }

  /** Read a file's values by its rules (values.ts) from now on. */
  convertWith(convert: (attr: Attribute, input: unknown) => FileValue): void {
    this.options.convert = convert;
  }

  /** The value to send for one input value (the file's rules, or the command line's). */
  private convert(attr: Attribute, input: unknown): FileValue {
    if (this.options.convert) return this.options.convert(attr, input);
    return { value: coerce(attr, input, this.options.type) };
  }

  /** Read, convert and compare a batch; nothing is written. One Planned per row, in order. */
  async plan(rows: PushRequestRow[]): Promise<Planned[]> {
    const entities = await this.readMany([...new Set(rows.map((r) => r.key))]);
    return rows.map((row) => this.planRow(row, entities.get(row.key)));
  }

  private planRow(row: PushRequestRow, entity: Entity | undefined): Planned {
    const names = Object.keys(row.fields);
    const report: RowReport = { line: row.line, key: row.key, fields: names, old: {}, new: {}, result: 'unchanged' };
    if (row.stamp !== undefined) report.stampExported = row.stamp;
    let attrs: Attribute[];
    const converted = new Map<string, FileValue>();
    try {
      attrs = this.checkFields(names);
      for (const attr of attrs) converted.set(attr.name, this.convert(attr, row.fields[attr.name]));
    } catch (error) {
      report.result = 'invalid';
      report.message = (error as Error).message;
      for (const n of names) report.new[n] = row.fields[n];
      return { report };
    }
    for (const attr of attrs) report.new[attr.name] = displayValue(attr, converted.get(attr.name)!.value);
    if (!entity) {
      report.result = 'not-found';
      report.message = `no record with key ${row.key} in ${this.dataClass.name}`;
      return { report };
    }
    report.stampBefore = entity.__STAMP;
    for (const attr of attrs) report.old[attr.name] = displayValue(attr, entity[attr.name]);
    const changedAttrs = attrs.filter((a) => !sameValue(a, entity[a.name], converted.get(a.name)!.value));
    // Read-only columns (a relation, a picture, the key field): the file must hold what the server has.
    const fixedChanged: Array<{ column: string; file: string; server: string }> = [];
    for (const [column, value] of Object.entries(row.fixed ?? {})) {
      const attr = this.dataClass.attributes.find((a) => a.name === column);
      const file = value === null || value === undefined ? '' : String(value);
      const server = fixedText(attr, entity);
      if (file !== server) fixedChanged.push({ column, file, server });
    }
    const stale = row.stamp !== undefined && entity.__STAMP !== row.stamp;
    if (stale && changedAttrs.length === 0) {
      // Saved since the export, and the file writes nothing here (its fields hold the server's values):
      // no edit to protect. A read-only column that differs is the other save's (the file cannot change it).
      if (fixedChanged.length > 0)
        report.message = `${this.dataClass.name}[${row.key}] was saved on the server since the export (__STAMP ${row.stamp} → ${entity.__STAMP}), which changed ${fixedChanged.map((f) => f.column).join(', ')}; the file changes nothing here, skipped`;
      return { report };
    }
    if (stale && (!this.options.force || fixedChanged.length > 0)) {
      // Saved on the server since the export: which of the differences are the file's edits and which
      // the other user's cannot be told apart, so none is written.
      report.result = 'conflict';
      report.fields = [...changedAttrs.map((a) => a.name), ...fixedChanged.map((f) => f.column)];
      report.old = Object.fromEntries(changedAttrs.map((a) => [a.name, report.old[a.name]]));
      report.new = Object.fromEntries(changedAttrs.map((a) => [a.name, report.new[a.name]]));
      for (const f of fixedChanged) {
        report.old[f.column] = f.server;
        report.new[f.column] = f.file;
      }
      report.message = `${this.dataClass.name}[${row.key}] was saved on the server since the export (__STAMP ${row.stamp} → ${entity.__STAMP}); not written${this.options.force ? '' : ' (--force overwrites)'}`;
      return { report };
    }
    const refusal =
      fixedChanged.length > 0
        ? `${fixedChanged[0]!.column} cannot be changed by push-field (${fixedChanged[0]!.column === this.keyAttribute?.name ? "the table's key" : 'a relation or a picture'}): the file has ${JSON.stringify(fixedChanged[0]!.file)}, the server ${JSON.stringify(fixedChanged[0]!.server)}`
        : changedAttrs
            .map((a) => {
              const c = converted.get(a.name)!;
              if (c.onlyIfUnchanged) return c.onlyIfUnchanged;
              return c.check?.(entity[a.name]);
            })
            .find((m) => m !== undefined);
    if (refusal) {
      report.result = 'invalid';
      report.message = refusal;
      return { report };
    }
    if (changedAttrs.length === 0) return { report };
    if (row.stamp !== undefined || changedAttrs.length < attrs.length) {
      report.fields = changedAttrs.map((a) => a.name);
      report.old = Object.fromEntries(changedAttrs.map((a) => [a.name, report.old[a.name]]));
      report.new = Object.fromEntries(changedAttrs.map((a) => [a.name, report.new[a.name]]));
    }
    if (stale && this.options.force) {
      report.forced = true;
      report.message = `overwrites a save made since the export (__STAMP ${row.stamp} → ${entity.__STAMP}): --force`;
    }
    report.result = this.options.dryRun ? 'would-update' : 'updated';
    const values = Object.fromEntries(changedAttrs.map((a) => [a.name, converted.get(a.name)!.value]));
    return { report, entity, values, attrs: changedAttrs, expectStamp: row.stamp !== undefined && !this.options.force ? row.stamp : undefined };
  }

  /** Plan and apply one batch; returns one report per input row. */
  async push(rows: PushRequestRow[]): Promise<RowReport[]> {
    const planned = await this.plan(rows);
    await this.apply(planned);
    return planned.map((p) => p.report);
  }

  /**
   * Write the changes of planned rows, in update requests of `batchSize` changed records (rows
   * without a change cost no request). After a request with a failed row, `stopOnFailure` ends
   * it: the rows of later requests are returned unwritten (their reports still say 'updated'
   * planned, so the caller reports rows up to the returned index only).
   * Returns the index (in `planned`) after the last row whose outcome is final.
   */
  async apply(planned: Planned[], stopOnFailure = false, ask = true): Promise<number> {
    const changes = planned.filter((p) => p.values);
    if (this.options.dryRun || changes.length === 0) return planned.length;
    if (ask && this.options.confirm && !(await this.options.confirm(changes.map((c) => c.report)))) {
      for (const c of changes) {
        c.report.result = 'cancelled';
        c.report.message = 'not written: the change was not confirmed';
      }
      return planned.length;
    }
    const size = this.options.batchSize ?? DEFAULT_BATCH;
    for (let i = 0; i < changes.length; i += size) {
      // Interrupted: nothing more is sent; the rows before are final (the caller reports them and stops).
      if (this.options.signal?.aborted) return i === 0 ? planned.indexOf(changes[0]!) : planned.indexOf(changes[i - 1]!) + 1;
      const slice = changes.slice(i, i + size);
      const audit: AuditRecord[] = [];
      try {
        await this.write(slice, audit);
      } finally {
        await this.options.audit.append(audit);
      }
      if (stopOnFailure && i + size < changes.length && slice.some((c) => c.report.result !== 'updated' && c.report.result !== 'unchanged')) {
        return planned.indexOf(slice[slice.length - 1]!) + 1;
      }
    }
    return planned.length;
  }

  /** Record the outcome of one row and its audit line(s). */
  private conclude(
    c: Planned,
    result: PushResult,
    message: string | undefined,
    requestId: string | undefined,
    audit: AuditRecord[],
    stampAfter?: number,
  ): void {
    c.report.result = result;
    c.report.message = message;
    if (stampAfter !== undefined) c.report.stampAfter = stampAfter;
    this.auditFor(c, requestId, audit);
  }

  private auditFor(p: Planned, requestId: string | undefined, audit: AuditRecord[]): void {
    for (const attr of p.attrs ?? []) {
      audit.push({
        time: new Date().toISOString(),
        env: this.options.env,
        baseUrl: this.client.baseUrl,
        table: this.dataClass.name,
        key: p.report.key,
        field: attr.name,
        old: p.report.old[attr.name],
        new: p.report.new[attr.name],
        stampBefore: p.report.stampBefore,
        stampAfter: p.report.stampAfter,
        ...(p.report.stampExported !== undefined ? { stampExported: p.report.stampExported } : {}),
        ...(p.report.forced ? { forced: true } : {}),
        result: p.report.result,
        message: p.report.message,
        requestId,
      });
    }
  }

  /**
   * Send one update request. Its `pending` audit lines are appended first (write-ahead), so a
   * write the server may have received is on record even if this process is killed before the
   * answer; the outcome lines follow with the same request id.
   */
  private async sendUpdate(changes: Planned[]) {
    const requestId = newRequestId();
    const pending: AuditRecord[] = [];
    for (const c of changes)
      this.auditFor({ ...c, report: { ...c.report, result: 'pending' as PushResult, message: undefined, stampAfter: undefined } }, requestId, pending);
    await this.options.audit.append(pending);
    const items = changes.map((c) => ({ __KEY: c.entity!.__KEY, __STAMP: c.entity!.__STAMP, ...c.values }));
    return this.client.update(this.dataClass.name, items, requestId);
  }

  private async write(changes: Planned[], audit: AuditRecord[]): Promise<void> {
    let result: Awaited<ReturnType<Pusher['sendUpdate']>>;
    try {
      result = await this.sendUpdate(changes);
    } catch (error) {
      if (!(error instanceof TransportError)) throw error;
      // The batch may or may not have reached the server: find out record by record.
      this.options.logger.warn(`the connection failed during a write (${error.causeCode ?? error.message}); re-reading to see what was saved`);
      for (const c of changes) {
        await this.recover(c, audit);
      }
      return;
    }
    const byKey = new Map(result.items.map((item) => [String(item.__KEY), item]));
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i]!;
      const item = byKey.get(String(c.entity!.__KEY)) ?? result.items[i];
      await this.settle(c, item, result.response.requestId, audit, 0, result.status);
    }
  }

  /** Decide the outcome of one item of an update response. */
  private async settle(c: Planned, item: Entity | undefined, requestId: string, audit: AuditRecord[], attempt: number, status = 200): Promise<void> {
    const code = item ? errCodeOf(item) : undefined;
    const failed = !item || item.__ERROR !== undefined || item.__STATUS?.success === false;
    if (!failed) {
      const holds = c.attrs!.every((a) => sameValue(a, item![a.name], c.values![a.name]));
      if (holds && (item!.__STAMP ?? 0) > (c.entity!.__STAMP ?? 0)) this.conclude(c, 'updated', undefined, requestId, audit, item!.__STAMP);
      else this.conclude(c, 'failed', 'the server answered without the new value or a new stamp', requestId, audit);
      return;
    }
    if (status === 401 || status === 403 || classOfCode(item)?.cls === 'permission') {
      const reason = item?.__ERROR?.[0]?.message ? `: ${item.__ERROR[0].message}${code !== undefined ? ` (errCode ${code})` : ''}` : '';
      this.conclude(c, 'forbidden', `not allowed to update ${this.dataClass.name}${reason}`, requestId, audit);
      return;
    }
    const stampConflict = isStampConflict(item);
    const gone = isRecordGone(item);
    if (gone) {
      this.conclude(c, 'not-found', `record ${c.report.key} no longer exists`, requestId, audit);
      return;
    }
    if (!stampConflict) {
      this.conclude(
        c,
        'failed',
        item?.__ERROR?.[0]?.message ? `server: ${item.__ERROR[0].message} (errCode ${code})` : 'the server refused the update',
        requestId,
        audit,
      );
      return;
    }
    // Stamp conflict: someone saved the record since we read it.
    const current = await this.client.entity(this.dataClass.name, c.report.key);
    if (!current) {
      this.conclude(c, 'not-found', `record ${c.report.key} was deleted meanwhile`, requestId, audit);
      return;
    }
    const movedFields = c.attrs!.filter((a) => !sameValue(a, current[a.name], c.entity![a.name]));
    if (c.attrs!.every((a) => sameValue(a, current[a.name], c.values![a.name]))) {
      this.conclude(c, 'unchanged', 'someone else already set the same value', requestId, audit, current.__STAMP);
      return;
    }
    if (c.expectStamp !== undefined) {
      this.staleSinceExport(c, current, requestId, audit);
      return;
    }
    if (movedFields.length > 0 && !this.options.force) {
      this.conclude(c, 'conflict', changedBySomeoneElse(movedFields[0]!, c.entity!, current), requestId, audit, current.__STAMP);
      return;
    }
    if (attempt + 1 >= MAX_CONFLICT_RETRIES) {
      this.conclude(c, 'conflict', `the record kept changing (${MAX_CONFLICT_RETRIES} tries); re-run later`, requestId, audit);
      return;
    }
    // Only other fields changed (or --force): write again on top of the current stamp.
    this.conclude(c, 'conflict', 'stamp changed; retried with the new stamp', requestId, audit);
    // --force over a change of these very fields: this write overwrites a newer save.
    if (movedFields.length > 0) c.report.forced = true;
    c.entity = current;
    c.report.stampBefore = current.__STAMP;
    const retry = await this.sendUpdate([c]).catch((error: unknown) => {
      if (error instanceof TransportError) return undefined;
      throw error;
    });
    if (!retry) {
      await this.recover(c, audit);
      return;
    }
    c.report.message = undefined;
    await this.settle(c, retry.items[0], retry.response.requestId, audit, attempt + 1, retry.status);
  }

  /**
   * A row of an exported file whose record was saved by someone else between our read (which still
   * found the export's stamp, so it holds the exported values) and our write: a conflict, with the
   * exported, the file's and the server's current values.
   */
  private staleSinceExport(c: Planned, current: Entity, requestId: string | undefined, audit: AuditRecord[]): void {
    c.report.exported = Object.fromEntries(c.attrs!.map((a) => [a.name, displayValue(a, c.entity![a.name])]));
    c.report.old = Object.fromEntries(c.attrs!.map((a) => [a.name, displayValue(a, current[a.name])]));
    this.conclude(
      c,
      'conflict',
      `${this.dataClass.name}[${c.report.key}] was saved on the server while this run wrote it (__STAMP ${c.entity!.__STAMP} → ${current.__STAMP}); not written (--force overwrites)`,
      requestId,
      audit,
      current.__STAMP,
    );
  }

  /** After a failed connection during a write: re-read; done if saved, else send once more. */
  private async recover(c: Planned, audit: AuditRecord[], retried = false): Promise<void> {
    const current = await this.client.entity(this.dataClass.name, c.report.key);
    if (!current) {
      this.conclude(c, 'not-found', `record ${c.report.key} no longer exists`, undefined, audit);
      return;
    }
    if (c.attrs!.every((a) => sameValue(a, current[a.name], c.values![a.name]))) {
      this.conclude(c, 'updated', 'the connection failed after the server saved it', undefined, audit, current.__STAMP);
      return;
    }
    if (retried) {
      this.conclude(c, 'failed', 'the connection failed twice while writing', undefined, audit);
      return;
    }
    if (c.expectStamp !== undefined && current.__STAMP !== c.entity!.__STAMP) {
      this.staleSinceExport(c, current, undefined, audit);
      return;
    }
    const moved = c.attrs!.find((a) => !sameValue(a, current[a.name], c.entity![a.name]));
    if (moved && !this.options.force) {
      this.conclude(c, 'conflict', changedBySomeoneElse(moved, c.entity!, current), undefined, audit);
      return;
    }
    if (moved) c.report.forced = true;
    c.entity = current;
    c.report.stampBefore = current.__STAMP;
    try {
      const retry = await this.sendUpdate([c]);
      await this.settle(c, retry.items[0], retry.response.requestId, audit, 0, retry.status);
    } catch (error) {
      if (!(error instanceof TransportError)) throw error;
      await this.recover(c, audit, true);
    }
  }
}

/**
 * Exit status of a set of reports: 0 only when every row was updated or unchanged; 77 when the
 * server refused a row for lack of permission (a person must grant it); else 65 when a row failed;
 * else 1 when the person declined the confirmation (nothing written).
 */
export function pushExitCode(reports: Iterable<RowReport>): number {
  let code: number = ExitCode.ok;
  for (const r of reports) {
    if (r.result === 'forbidden') return ExitCode.auth;
    if (r.result === 'cancelled') code = code === ExitCode.ok ? EXIT_CANCELLED : code;
    else if (r.result !== 'updated' && r.result !== 'unchanged' && r.result !== 'would-update') code = ExitCode.badData;
  }
  return code;
}

/** A single-row failure as an error with one clear line. */
export function errorForReport(r: RowReport): LegacyError {
  if (r.result === 'cancelled') return new CancelledError('cancelled: nothing was written');
  if (r.result === 'forbidden') {
    return new PermissionError(r.message ?? `not allowed to update: ${r.key}`, {
      hint: "the user lacks the 'update' permission on this table (4D privileges): ask the 4D administrator",
    });
  }
  return new BadDataError(r.message ?? `${r.result}: ${r.key}`);
}
