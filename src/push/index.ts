/**
 * Safe field updates with optimistic locking (4D `$method=update` with `__KEY` + `__STAMP`).
 *
 * For each row: read the record (its value and __STAMP), coerce the new value with the catalog
 * type, skip it when it already holds that value, send only the changed fields with the stamp just
 * read, and check every returned item for __ERROR/__STATUS even on HTTP 200.
 * - Stamp conflict (1263): re-read. If a target field itself changed since our read → conflict
 *   (unless --force). If only other fields changed → retry with the new stamp (3 times at most).
 * - A write is never blindly re-sent: after a timeout or reset, re-read; if the record already
 *   holds the new value it is reported updated, otherwise it is retried once.
 */
import { BadDataError, CancelledError, EXIT_CANCELLED, ExitCode, type LegacyError, PermissionError } from '../errors/index.js';
import { EntitySetGoneError, type RestClient } from '../rest/index.js';
import type { Attribute, DataClass, Entity } from '../rest/types.js';
import type { Logger } from '../log/index.js';
import { classOfCode, errCodeOf } from '../protocol/errors.js';
import { TransportError, newRequestId } from '../transport/index.js';
import { attributeNamed } from '../table/query.js';
import type { AuditLog, AuditRecord } from './audit.js';
import { displayValue, coerce, sameValue, type ValueType } from './coerce.js';

export type PushResult = 'updated' | 'unchanged' | 'conflict' | 'not-found' | 'forbidden' | 'invalid' | 'failed' | 'would-update' | 'cancelled' | 'pending';

export interface PushRequestRow {
  line?: number;
  key: string;
  /** Field → input value (text from CSV/argv, or typed from NDJSON). */
  fields: Record<string, unknown>;
}

export interface RowReport {
  line?: number;
  key: string;
  fields: string[];
  old: Record<string, unknown>;
  new: Record<string, unknown>;
  result: PushResult;
  message?: string;
  stampBefore?: number;
  stampAfter?: number;
}

export interface PushOptions {
  dryRun?: boolean;
  force?: boolean;
  type?: ValueType;
  logger: Logger;
  audit: AuditLog;
  env: string;
  /** Called once per batch with the planned changes before anything is written; false = skip the batch. */
  confirm?: (changes: RowReport[]) => Promise<boolean>;
}

interface Planned {
  report: RowReport;
  entity?: Entity;
  values?: Record<string, unknown>; // coerced new values of the changed fields
  attrs?: Attribute[];
}

const MAX_CONFLICT_RETRIES = 3;

function changedBySomeoneElse(attr: Attribute, before: Entity, now: Entity): string {
  const show = (e: Entity) => JSON.stringify(displayValue(attr, e[attr.name]));
  return `${attr.name} was changed by someone else from ${show(before)} to ${show(now)}; re-run to overwrite`;
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

  /** Read many records by key: one filtered request (`key IN :1`), or one GET each if the server refuses that. */
  async readMany(keys: string[]): Promise<Map<string, Entity>> {
    const found = new Map<string, Entity>();
    const keyAttr = this.keyAttribute;
    if (keys.length > 1 && keyAttr && this.batchReadWorks) {
      const numeric = ['long', 'long64', 'word', 'number'].includes(keyAttr.type);
      const values = keys.map((k) => (numeric && /^-?\d+$/.test(k) ? Number(k) : k));
      try {
        const envelope = await this.client.page(this.dataClass.name, { filter: `${keyAttr.name} IN :1`, params: [values], top: keys.length, skip: 0 });
        // Verify, don't trust: a server that dropped the filter sends other records (or more).
        const asked = new Set(values.map(String));
        const stray = envelope.__ENTITIES.find((e) => !asked.has(String(e.__KEY)));
        if (envelope.__COUNT > keys.length || stray) {
          this.batchReadWorks = false;
          this.options.logger.warn(
            `the server did not apply the batch read's filter (${stray ? `it sent record ${String(stray.__KEY)}, which was not asked for` : `it counted ${envelope.__COUNT} records for ${keys.length} keys`}); reading records one by one`,
          );
        } else {
          for (const e of envelope.__ENTITIES) found.set(String(e.__KEY), e);
          return found;
        }
      } catch (error) {
        if (!(error instanceof BadDataError) || error instanceof EntitySetGoneError) throw error;
        this.batchReadWorks = false;
        this.options.logger.info(`the server refused a batch read (${error.message}); reading records one by one`);
      }
    }
    for (const key of keys) {
      const e = await this.client.entity(this.dataClass.name, key);
      if (e) found.set(key, e);
    }
    return found;
  }

  /** Read, coerce and compare a batch; nothing is written. */
  async plan(rows: PushRequestRow[]): Promise<Planned[]> {
    const entities = await this.readMany([...new Set(rows.map((r) => r.key))]);
    return rows.map((row) => {
      const names = Object.keys(row.fields);
      const report: RowReport = { line: row.line, key: row.key, fields: names, old: {}, new: {}, result: 'unchanged' };
      const entity = entities.get(row.key);
      let attrs: Attribute[];
      const values: Record<string, unknown> = {};
      try {
        attrs = this.checkFields(names);
        for (const attr of attrs) values[attr.name] = coerce(attr, row.fields[attr.name], this.options.type);
      } catch (error) {
        report.result = 'invalid';
        report.message = (error as Error).message;
        for (const n of names) report.new[n] = row.fields[n];
        return { report };
      }
      for (const attr of attrs) report.new[attr.name] = displayValue(attr, values[attr.name]);
      if (!entity) {
        report.result = 'not-found';
        report.message = `no record with key ${row.key} in ${this.dataClass.name}`;
        return { report };
      }
      report.stampBefore = entity.__STAMP;
      const changed: Record<string, unknown> = {};
      for (const attr of attrs) {
        report.old[attr.name] = displayValue(attr, entity[attr.name]);
        if (!sameValue(attr, entity[attr.name], values[attr.name])) changed[attr.name] = values[attr.name];
      }
      if (Object.keys(changed).length === 0) return { report };
      report.result = this.options.dryRun ? 'would-update' : 'updated';
      return { report, entity, values: changed, attrs: attrs.filter((a) => a.name in changed) };
    });
  }

  /** Plan and apply one batch; returns one report per input row. */
  async push(rows: PushRequestRow[]): Promise<RowReport[]> {
    const planned = await this.plan(rows);
    const changes = planned.filter((p) => p.values);
    if (this.options.dryRun || changes.length === 0) return planned.map((p) => p.report);
    if (this.options.confirm && !(await this.options.confirm(changes.map((c) => c.report)))) {
      for (const c of changes) {
        c.report.result = 'cancelled';
        c.report.message = 'not written: the change was not confirmed';
      }
      return planned.map((p) => p.report);
    }
    const audit: AuditRecord[] = [];
    try {
      await this.write(changes, audit);
    } finally {
      await this.options.audit.append(audit);
    }
    return planned.map((p) => p.report);
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
    const stampConflict = code === 1263 || item?.__STATUS?.status === 2;
    const gone = code === 1542 || code === 1543 || item?.__STATUS?.status === 5;
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
    const moved = c.attrs!.find((a) => !sameValue(a, current[a.name], c.entity![a.name]));
    if (moved && !this.options.force) {
      this.conclude(c, 'conflict', changedBySomeoneElse(moved, c.entity!, current), undefined, audit);
      return;
    }
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
