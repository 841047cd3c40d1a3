/** Shapes of the 4D REST API as the client uses them. */

export type AttributeKind = 'storage' | 'relatedEntity' | 'relatedEntities' | 'calculated' | 'alias' | string;

export interface Attribute {
  name: string;
  kind: AttributeKind;
  /** 4D REST type: string, long, long64, word, number, bool, date, duration, object, image, blob, uuid, or a dataclass name for relations. */
  type: string;
  fieldPos?: number;
  indexed?: boolean;
  identifying?: boolean;
  simpleDate?: boolean;
  path?: string;
}

export interface DataClass {
  name: string;
  className?: string;
  dataURI?: string;
  attributes: Attribute[];
  key: Array<{ name: string }>;
}

export interface DataClassSummary {
  name: string;
  uri?: string;
  dataURI?: string;
}

export interface Entity {
  __KEY: string;
  __STAMP: number;
  __TIMESTAMP?: string;
  __ERROR?: Array<{ message?: string; errCode?: number; componentSignature?: string }>;
  __STATUS?: { status?: number; statusText?: string; success?: boolean };
  [attribute: string]: unknown;
}

export interface Envelope {
  __ENTITYSET?: string;
  __DATACLASS?: string;
  __entityModel?: string;
  __GlobalStamp?: number;
  __COUNT: number;
  __FIRST: number;
  __SENT: number;
  __ENTITIES: Entity[];
}

export type { PageQuery } from '../protocol/url.js';
