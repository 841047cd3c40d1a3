/**
 * Dataclass definitions (what `$catalog` describes) and the value types stored in tables.
 */

export type StorageType = 'string' | 'long' | 'long64' | 'word' | 'number' | 'bool' | 'date' | 'duration' | 'object' | 'image' | 'blob' | 'uuid';

export const STORAGE_TYPES: readonly StorageType[] = [
  'string',
  'long',
  'long64',
  'word',
  'number',
  'bool',
  'date',
  'duration',
  'object',
  'image',
  'blob',
  'uuid',
];

export const NUMERIC_TYPES: ReadonlySet<StorageType> = new Set(['long', 'long64', 'word', 'number', 'duration']);

export type AttributeKind = 'storage' | 'relatedEntity' | 'relatedEntities';

export interface AttributeDef {
  name: string;
  kind: AttributeKind;
  /** Storage type; for relations the related dataclass name is in `related`. */
  type: StorageType;
  /** Target dataclass of a relation. */
  related?: string;
  /** relatedEntities: the relatedEntity attribute in the target that points back here. */
  path?: string;
  indexed?: boolean;
  /** 1-based field number; storage attributes only. */
  fieldPos?: number;
}

export interface DataClassDef {
  name: string;
  tableNumber: number;
  keyName: string;
  attributes: AttributeDef[];
}

/**
 * Stored value of one attribute, in wire encoding: dates `D!M!YYYY`, durations ms, objects inline,
 * relatedEntity = the related key string, image/blob = `true` when present. null = unset.
 * relatedEntities are not stored (always null). A long64 beyond 2^53 is a bigint (4D writes its exact digits).
 */
export type WireValue = string | number | bigint | boolean | null | { [k: string]: unknown } | unknown[];
