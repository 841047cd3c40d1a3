/**
 * Seeded German ERP demo tables. Every value is a pure function of (seed, table, row index), so a table of a
 * million rows is served without storing it. The first rows of `Artikel` carry the hard cases on purpose
 * (commas, quotes, semicolons, newlines, leading = + - @, umlauts) so small samples meet them.
 * Tracked tables (changeTracking) get a `__GlobalStamp` column computed from the row index (tracking.ts).
 */
import type { AttributeDef, DataClassDef, StorageType, WireValue } from './model.js';
import { OptionError } from './options.js';
import type { RowGenerator } from './table.js';
import { Table } from './table.js';
import { GLOBAL_STAMP, globalStampPosition, interleavedStamps } from './tracking.js';
import { hashString, hasher, hex8, Permutation32 } from './util/random.js';
import { daysFromCivil, EMPTY_DATE, format4DDate } from './wire.js';

export const DEMO_DEFAULT_ROWS: Readonly<Record<string, number>> = {
  Artikel_Familie: 200,
  Artikel: 1000,
  Artikel_Variante: 2000,
  Kunden: 500,
  Belege: 1000,
  Belege_Pos: 3000,
};

type Hash = (i: number, salt: number) => number;
type Col = (i: number) => WireValue;

type ColumnSpec =
  | { name: string; type: StorageType; indexed?: boolean; gen: Col }
  | { name: string; kind: 'relatedEntity'; related: string; gen: (i: number) => string | null }
  | { name: string; kind: 'relatedEntities'; related: string; path: string };

interface Keys {
  key(i: number): string;
  indexOfKey(k: string): number;
}

interface TableSpec {
  name: string;
  keyName: string;
  count: number;
  keys: Keys;
  columns: ColumnSpec[];
  stamp(i: number): number;
  timestamp(i: number): number;
}

// ---- value pools ---------------------------------------------------------------------------------------------

const USERS = ['Tropp', 'Müller', 'Schäfer', 'Weiß', 'König', 'Groß', 'Beck', 'Hoffmann', 'admin', 'Schulze'];
const NOUNS = [
  'Filigranengel',
  'Teelichthalter',
  'Räucherhäuschen',
  'Nussknacker',
  'Schwibbogen',
  'Weihnachtspyramide',
  'Kerzenständer',
  'Spieluhr',
  'Lichterbogen',
  'Glöckchen',
  'Holzfigur Förster',
  'Bergmann',
  'Schneemann',
  'Krippenfigur',
  'Osterhase',
  'Blumenkind',
  'Kurrende',
  'Räuchermann Bäcker',
  'Engel mit Laterne',
  'Sternsinger',
  'Wichtel',
  'Lebkuchenhaus',
  'Tischläufer',
  'Fensterbild',
  'Baumbehang',
  'Stollendose',
  'Türkranz',
  'Vogelhaus',
  'Kerzenhalter Stern',
  'Adventsleuchter',
];
const ADJ = [
  'divers',
  'gold',
  'silber',
  'natur',
  'bemalt',
  'weiß',
  'rot',
  'grün',
  'blau',
  'groß',
  'klein',
  'mini',
  'XXL',
  'mit Glitzer',
  'handgeschnitzt',
  'Größe M',
  'für Außen',
  '2er-Set',
  'limitiert',
  'Jubiläumsedition',
];
/** Hard cases for CSV/JSON/SQL round trips, used verbatim for Artikel rows 1..12. */
const HARD_BEZ = [
  'Engel, gold, 12 cm',
  'Figur "Gabriel" mit Trompete',
  'Set; 3-teilig; sortiert',
  'Pyramide\n2-stöckig',
  '=SUMME(A1:A3)',
  '+49 Vase Ø 20 cm',
  '-Restposten- Kerzen',
  '@Home Deko "Winter", groß',
  'Räuchermännchen Förster Müller – Größe L',
  "O'Brien Teelicht & Co.",
  'Zeile 1\r\nZeile 2; "zitiert", Ende',
  'Straßenbahn „Dresden“ 100 % Holz',
];
const SENTENCES = [
  'Handarbeit aus Seiffen, jedes Stück ein Unikat.',
  'Größe ca. 12 cm; Farbe: natur/weiß.',
  'Hinweis: nicht für Kinder unter 3 Jahren geeignet!',
  'Lieferung ohne Kerzen.\nBatterien nicht enthalten.',
  'Maße (B×H×T): 10×15×5 cm',
  'Das „Original“ – seit 1920.',
  'Preis inkl. 19 % MwSt., zzgl. Versand.',
  'Made in Germany; Qualität "Premium".',
];
const SUFFIXES = ['BE', 'BL', 'OX', 'GO', 'SI', 'RO', 'WE', 'SW'];
const COLORS = ['rot', 'grün', 'blau', 'weiß', 'natur', 'gold', 'silber', 'schwarz'];
const SIZES = ['S', 'M', 'L', 'XL', '10 cm', '15 cm', '20 cm', '30 cm'];
const CHANNELS = ['Webshop', 'Laden', 'Handel', 'Amazon', 'eBay'];
const CITIES: Array<[string, string, string]> = [
  ['01067', 'Dresden', 'DE'],
  ['04109', 'Leipzig', 'DE'],
  ['09111', 'Chemnitz', 'DE'],
  ['09548', 'Seiffen', 'DE'],
  ['01454', 'Radeberg', 'DE'],
  ['10115', 'Berlin', 'DE'],
  ['20095', 'Hamburg', 'DE'],
  ['80331', 'München', 'DE'],
  ['50667', 'Köln', 'DE'],
  ['60311', 'Frankfurt am Main', 'DE'],
  ['70173', 'Stuttgart', 'DE'],
  ['90402', 'Nürnberg', 'DE'],
  ['06108', 'Halle (Saale)', 'DE'],
  ['1010', 'Wien', 'AT'],
  ['8001', 'Zürich', 'CH'],
];
const STREETS = ['Hauptstraße', 'Bahnhofstraße', 'Schloßallee', 'Am Mühlgraben', 'Lindenweg', 'Marktplatz', 'Goethestraße', 'Äußere Weberstraße'];
const LAST_NAMES = ['Müller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Meyer', 'Wagner', 'Becker', 'Schäfer', 'Köhler', 'Groß', 'Weiß', 'Jäger', 'Öztürk'];
const FIRST_NAMES = ['Anna', 'Jürgen', 'Sören', 'Maria', 'Klaus', 'Jörg', 'Renate', 'Günther', 'Lea', 'Björn', 'Ute', 'Frank'];
const FIRM_FORMS = [
  (n: string) => `${n} GmbH`,
  (n: string) => `${n} & Söhne KG`,
  (n: string) => `Holzkunst ${n} e.K.`,
  (n: string) => `${n}, Meier & Partner`,
  (n: string) => `Café "Zur Post" ${n}`,
  (n: string) => `Bäckerei ${n}; Filiale 2`,
  (n: string) => `${n}`,
];
const BELEG_TEXTS = [
  'Vielen Dank für Ihren Auftrag!',
  'Lieferung frei Haus; Zahlung innerhalb 14 Tagen.',
  'Bitte "Rechnungsnummer" angeben.',
  'Teillieferung,\nRest folgt.',
  'Skonto 2 % bei Zahlung bis Monatsende',
];

const START_DAY = daysFromCivil(2010, 1, 1);
const END_DAY = daysFromCivil(2025, 6, 30);

const round2 = (x: number) => Math.round(x * 100) / 100;
const pick = <T>(arr: readonly T[], n: number): T => arr[n % arr.length]!;
const asciiFold = (s: string) =>
  s
    .replace(/ä/g, 'ae')
    .replace(/ö/g, 'oe')
    .replace(/ü/g, 'ue')
    .replace(/ß/g, 'ss')
    .replace(/[ÄÖÜ]/g, (c) => ({ Ä: 'Ae', Ö: 'Oe', Ü: 'Ue' })[c]!);

/** 6-digit article numbers, unique for the first 900,000 rows, then 7 digits. */
function spreadNumber(i: number, mult: number, offset: number): number {
  return i < 900_000 ? 100_000 + ((i * mult + offset) % 900_000) : 1_000_000 + i;
}

function randomDay(h: Hash, i: number, salt: number, from: number, to: number): number {
  return from + (h(i, salt) % (to - from + 1));
}

// ---- key schemes ---------------------------------------------------------------------------------------------

/** 32 upper-case hex keys; chars 16..23 hold a keyed permutation of the row index, so keys map back to rows. */
function hexKeys(seed: number, table: string, count: number): Keys {
  const salt = hashString(table);
  const h = hasher(seed ^ salt);
  const perm = new Permutation32(seed ^ mixSalt(salt));
  // one-entry memo: a rendered row asks for its key several times (UID, __KEY, deferred URIs)
  let lastI = -1;
  let lastKey = '';
  const key = (i: number) => {
    if (i !== lastI) {
      lastKey = hex8(h(i, 1)) + hex8(h(i, 2)) + hex8(perm.forward(i)) + hex8(h(i, 3));
      lastI = i;
    }
    return lastKey;
  };
  return {
    key,
    indexOfKey(k) {
      if (k.length !== 32 || !/^[0-9A-F]{32}$/.test(k)) return -1;
      const i = perm.inverse(parseInt(k.slice(16, 24), 16));
      return i < count && key(i) === k ? i : -1;
    },
  };
}

function mixSalt(s: number): number {
  return Math.imul(s, 0x2545f491) >>> 0;
}

function numericKeys(base: number, count: number): Keys {
  return {
    key: (i) => String(base + i),
    indexOfKey(k) {
      const i = Number(k) - base;
      return Number.isInteger(i) && i >= 0 && i < count ? i : -1;
    },
  };
}

// ---- audit fields (created_*/modified_*, __STAMP, __TIMESTAMP) ----------------------------------------------

/**
 * created_* grow with the row index (older rows first); 60 % of rows were modified later. `__TIMESTAMP` is the
 * last change (modified or created), to the second equal to the date/time fields.
 */
function audit(h: Hash, count: number) {
  const span = END_DAY - START_DAY;
  const createdDay = (i: number) => Math.min(END_DAY, START_DAY + Math.floor((i * span) / Math.max(1, count)) + (h(i, 101) % 20));
  const createdSec = (i: number) => 6 * 3600 + (h(i, 102) % (14 * 3600));
  const modified = (i: number) => h(i, 103) % 10 < 6;
  const modDay = (i: number) => {
    const c = createdDay(i);
    return c + (h(i, 104) % (END_DAY - c + 1));
  };
  const modSec = (i: number) => {
    const from = modDay(i) === createdDay(i) ? createdSec(i) + 1 : 6 * 3600;
    return from + (h(i, 105) % (22 * 3600 - from));
  };
  const columns: ColumnSpec[] = [
    { name: 'created_name', type: 'string', gen: (i) => pick(USERS, h(i, 106)) },
    { name: 'created_date', type: 'date', gen: (i) => format4DDate(createdDay(i)) },
    { name: 'created_time', type: 'duration', gen: (i) => createdSec(i) * 1000 },
    { name: 'modified_name', type: 'string', gen: (i) => (modified(i) ? pick(USERS, h(i, 107)) : null) },
    { name: 'modified_date', type: 'date', indexed: true, gen: (i) => (modified(i) ? format4DDate(modDay(i)) : null) },
    { name: 'modified_time', type: 'duration', gen: (i) => (modified(i) ? modSec(i) * 1000 : null) },
  ];
  return {
    columns,
    stamp: (i: number) => (modified(i) ? 2 + (h(i, 108) % 20) : 1 + (h(i, 108) % 9)),
    timestamp: (i: number) => {
      const sec = modified(i) ? modDay(i) * 86400 + modSec(i) : createdDay(i) * 86400 + createdSec(i);
      return sec * 1000 + (h(i, 109) % 1000);
    },
  };
}

// ---- text helpers --------------------------------------------------------------------------------------------

function bezeichnung(h: Hash, i: number, salt: number): string {
  const noun = pick(NOUNS, h(i, salt));
  const adj = pick(ADJ, h(i, salt + 1));
  switch (h(i, salt + 2) % 60) {
    case 0:
      return `${noun}, ${adj}`;
    case 1:
      return `${noun} "${adj}"`;
    case 2:
      return `${noun}; ${adj}`;
    case 3:
      return `${noun}\n${adj}`;
    case 4:
      return `=${noun}`;
    case 5:
      return `+${noun} ${adj}`;
    case 6:
      return `-${noun}-`;
    case 7:
      return `@${noun}`;
    default:
      return `${noun} ${adj}`;
  }
}

function beschreibung(h: Hash, i: number, salt: number, noun: string): string | null {
  if (i % 500 === 7) {
    // occasionally very long (> 10 KB)
    let s = `${noun} – ausführliche Beschreibung (#${i}).\n`;
    let n = 0;
    while (s.length < 12_000) s += `${pick(SENTENCES, h(i, salt) + n++)} `;
    return s;
  }
  const r = h(i, salt) % 10;
  if (r === 0) return null;
  if (r === 1) return '';
  return `${noun} aus dem Erzgebirge. ${pick(SENTENCES, h(i, salt + 1))}`;
}

function preise(p: number, empty: boolean): WireValue {
  if (empty) return { Coll: [] };
  return {
    Coll: [
      { Art: 'Laden', Preis: p, VE: 1 },
      { Art: 'Handel', Preis: round2(p * 0.45), VE: 1 },
      { Art: 'Empf.', Preis: round2(p * 0.9), VE: 1 },
      { Art: 'Einkauf', Preis: round2(p * 0.17), VE: 1 },
    ],
  };
}

function channels(h: Hash, i: number, salt: number): WireValue {
  const bits = h(i, salt);
  return { values: CHANNELS.filter((_, k) => (bits >>> k) & 1), geerbt: ((bits >>> 8) & 1) === 1 };
}

// ---- tables --------------------------------------------------------------------------------------------------

function buildSpecs(seed: number, counts: Record<string, number>): TableSpec[] {
  const hOf = (table: string) => hasher(seed ^ hashString(table));
  const nF = counts.Artikel_Familie!;
  const nA = counts.Artikel!;
  const nV = counts.Artikel_Variante!;
  const nK = counts.Kunden!;
  const nB = counts.Belege!;
  const nP = counts.Belege_Pos!;

  // Artikel_Familie
  const hF = hOf('Artikel_Familie');
  const famKeys = hexKeys(seed, 'Artikel_Familie', nF);
  const famBez = (i: number) => `${pick(NOUNS, hF(i, 10))} Serie ${String.fromCharCode(65 + (hF(i, 11) % 26))}`;
  const famAudit = audit(hF, nF);
  const familie: TableSpec = {
    name: 'Artikel_Familie',
    keyName: 'UID',
    count: nF,
    keys: famKeys,
    stamp: famAudit.stamp,
    timestamp: famAudit.timestamp,
    columns: [
      { name: 'UID', type: 'string', indexed: true, gen: famKeys.key },
      { name: 'Nummer', type: 'long', indexed: true, gen: (i) => 1000 + i },
      { name: 'Bezeichnung', type: 'string', gen: famBez },
      { name: 'Beschreibung', type: 'string', gen: (i) => beschreibung(hF, i, 12, pick(NOUNS, hF(i, 10))) },
      { name: 'aktiv', type: 'bool', gen: (i) => hF(i, 14) % 8 !== 0 },
      { name: 'Gewicht', type: 'number', gen: (i) => (hF(i, 15) % 5000) / 1000 },
      { name: 'Release_Date', type: 'date', gen: (i) => format4DDate(randomDay(hF, i, 16, daysFromCivil(1990, 1, 1), END_DAY)) },
      { name: 'Neu', type: 'bool', gen: (i) => hF(i, 17) % 5 === 0 },
      { name: 'Lagerwert_Cent', type: 'long64', gen: (i) => hF(i, 18) * 1000 + (i % 1000) },
      { name: 'Datenblatt', type: 'blob', gen: (i) => (hF(i, 19) % 4 === 0 ? true : null) },
      ...famAudit.columns,
      { name: 'Varianten', kind: 'relatedEntities', related: 'Artikel_Variante', path: 'ArtikelFamilie' },
      { name: 'Artikel', kind: 'relatedEntities', related: 'Artikel', path: 'Familie' },
    ],
  };
  const familyOf = (h: Hash, i: number, salt: number) => (nF > 0 ? famKeys.key(h(i, salt) % nF) : null);

  // Artikel
  const hA = hOf('Artikel');
  const artKeys = hexKeys(seed, 'Artikel', nA);
  const artBez = (i: number) => (i >= 1 && i <= HARD_BEZ.length ? HARD_BEZ[i - 1]! : bezeichnung(hA, i, 10));
  const artPreis = (i: number) => ((hA(i, 20) % 19_900) + 100) / 100;
  const artNummer = (i: number) => spreadNumber(i, 7919, 12_345);
  const artAudit = audit(hA, nA);
  const artikel: TableSpec = {
    name: 'Artikel',
    keyName: 'UID',
    count: nA,
    keys: artKeys,
    stamp: artAudit.stamp,
    timestamp: artAudit.timestamp,
    columns: [
      { name: 'UID', type: 'string', indexed: true, gen: artKeys.key },
      { name: 'Nummer', type: 'long', indexed: true, gen: artNummer },
      {
        name: 'alteNummer',
        type: 'string',
        indexed: true,
        gen: (i) => `${10_000 + (hA(i, 30) % 90_000)}${hA(i, 31) % 3 === 0 ? 'A' : ''}-${pick(SUFFIXES, hA(i, 32))}`,
      },
      { name: 'Bezeichnung', type: 'string', gen: artBez },
      { name: 'Beschreibung', type: 'string', gen: (i) => beschreibung(hA, i, 40, pick(NOUNS, hA(i, 10))) },
      { name: 'Preis', type: 'number', gen: artPreis },
      { name: 'Aktiv', type: 'bool', gen: (i) => hA(i, 21) % 10 !== 0 },
      { name: 'Release_Date', type: 'date', gen: (i) => format4DDate(randomDay(hA, i, 23, daysFromCivil(1990, 1, 1), END_DAY)) },
      {
        name: 'Auslaufdatum',
        type: 'date',
        gen: (i) => {
          const r = hA(i, 24) % 10;
          return r < 7 ? EMPTY_DATE : r === 7 ? null : format4DDate(randomDay(hA, i, 25, daysFromCivil(2020, 1, 1), daysFromCivil(2027, 12, 31)));
        },
      },
      { name: 'Preise', type: 'object', gen: (i) => preise(artPreis(i), hA(i, 26) % 20 === 0) },
      { name: 'SalesChannel', type: 'object', gen: (i) => channels(hA, i, 27) },
      { name: 'Bild', type: 'image', gen: (i) => (hA(i, 37) % 5 < 3 ? true : null) },
      ...artAudit.columns,
      { name: 'Familie', kind: 'relatedEntity', related: 'Artikel_Familie', gen: (i) => familyOf(hA, i, 50) },
    ],
  };

  // Artikel_Variante
  const hV = hOf('Artikel_Variante');
  const varKeys = hexKeys(seed, 'Artikel_Variante', nV);
  const varPreis = (i: number) => ((hV(i, 20) % 9_900) + 100) / 100;
  const varAudit = audit(hV, nV);
  const variante: TableSpec = {
    name: 'Artikel_Variante',
    keyName: 'UID',
    count: nV,
    keys: varKeys,
    stamp: varAudit.stamp,
    timestamp: varAudit.timestamp,
    columns: [
      { name: 'UID', type: 'string', indexed: true, gen: varKeys.key },
      { name: 'Nummer', type: 'long', indexed: true, gen: (i) => spreadNumber(i, 104_729, 54_321) },
      { name: 'alteNummer', type: 'string', indexed: true, gen: (i) => `${10_000 + (hV(i, 30) % 90_000)}-${pick(SUFFIXES, hV(i, 32))}` },
      { name: 'Familie_', type: 'string', indexed: true, gen: (i) => familyOf(hV, i, 50) },
      { name: 'Bezeichnung', type: 'string', gen: (i) => bezeichnung(hV, i, 10) },
      { name: 'Aktiv', type: 'bool', gen: (i) => hV(i, 21) % 10 !== 0 },
      { name: 'Auslaufdatum', type: 'date', gen: (i) => (hV(i, 24) % 10 < 8 ? EMPTY_DATE : null) },
      {
        name: 'Sperrinfo',
        type: 'object',
        gen: (i) =>
          hV(i, 25) % 15 === 0 ? { Coll: [{ Grund: 'Qualität', seit: format4DDate(randomDay(hV, i, 26, daysFromCivil(2022, 1, 1), END_DAY)) }] } : { Coll: [] },
      },
      { name: 'Preise', type: 'object', gen: (i) => preise(varPreis(i), false) },
      { name: 'Release_Date', type: 'date', gen: (i) => format4DDate(randomDay(hV, i, 23, daysFromCivil(1990, 1, 1), END_DAY)) },
      { name: 'Typ', type: 'word', gen: (i) => 1 + (hV(i, 22) % 3) },
      { name: 'SalesChannel', type: 'object', gen: (i) => channels(hV, i, 27) },
      { name: 'Publish', type: 'object', gen: (i) => ({ values: hV(i, 28) % 4 === 0 ? [] : ['Webshop'], geerbt: true }) },
      { name: 'Farbe', type: 'string', gen: (i) => pick(COLORS, hV(i, 29)) },
      { name: 'Groesse', type: 'string', gen: (i) => pick(SIZES, hV(i, 31)) },
      { name: 'Masse_angepasst', type: 'bool', gen: (i) => hV(i, 33) % 7 === 0 },
      {
        name: 'shopware',
        type: 'uuid',
        gen: (i) => (hV(i, 34) % 3 === 0 ? '0'.repeat(32) : hex8(hV(i, 41)) + hex8(hV(i, 42)) + hex8(hV(i, 43)) + hex8(hV(i, 44))),
      },
      {
        name: 'EAN',
        type: 'string',
        gen: (i) => (hV(i, 35) % 10 === 0 ? null : String(hV(i, 36) % 1_000_000).padStart(6, '0') + String(hV(i, 38) % 10_000_000).padStart(7, '0')),
      },
      { name: 'Bild', type: 'image', gen: (i) => (hV(i, 37) % 2 === 0 ? true : null) },
      ...varAudit.columns,
      { name: 'ArtikelFamilie', kind: 'relatedEntity', related: 'Artikel_Familie', gen: (i) => familyOf(hV, i, 50) },
    ],
  };

  // Kunden
  const hK = hOf('Kunden');
  const kunKeys = numericKeys(10_001, nK);
  const kunName = (i: number) => pick(LAST_NAMES, hK(i, 10));
  const kunVorname = (i: number) => pick(FIRST_NAMES, hK(i, 11));
  const kunCity = (i: number) => pick(CITIES, hK(i, 12));
  const kunAudit = audit(hK, nK);
  const kunden: TableSpec = {
    name: 'Kunden',
    keyName: 'KundenNr',
    count: nK,
    keys: kunKeys,
    stamp: kunAudit.stamp,
    timestamp: kunAudit.timestamp,
    columns: [
      { name: 'KundenNr', type: 'long', indexed: true, gen: (i) => 10_001 + i },
      { name: 'Firma', type: 'string', gen: (i) => pick(FIRM_FORMS, hK(i, 13))(kunName(i)) },
      { name: 'Anrede', type: 'string', gen: (i) => pick(['Herr', 'Frau', 'Firma', null], hK(i, 14)) },
      { name: 'Name', type: 'string', gen: kunName },
      { name: 'Vorname', type: 'string', gen: kunVorname },
      { name: 'Straße', type: 'string', gen: (i) => `${pick(STREETS, hK(i, 15))} ${1 + (hK(i, 16) % 120)}${hK(i, 17) % 6 === 0 ? 'a' : ''}` },
      { name: 'PLZ', type: 'string', indexed: true, gen: (i) => kunCity(i)[0] },
      { name: 'Ort', type: 'string', gen: (i) => kunCity(i)[1] },
      { name: 'Land', type: 'string', gen: (i) => kunCity(i)[2] },
      { name: 'Telefon', type: 'string', gen: (i) => (hK(i, 18) % 8 === 0 ? null : `+49 ${300 + (hK(i, 19) % 700)} ${100_000 + (hK(i, 20) % 900_000)}`) },
      { name: 'Email', type: 'string', gen: (i) => (hK(i, 21) % 9 === 0 ? '' : asciiFold(`${kunVorname(i)}.${kunName(i)}${i}@example.de`).toLowerCase()) },
      { name: 'Kreditlimit', type: 'number', gen: (i) => (hK(i, 22) % 100) * 500 },
      { name: 'Rabatt', type: 'number', gen: (i) => (hK(i, 23) % 4) * 2.5 },
      { name: 'Liefersperre', type: 'bool', gen: (i) => hK(i, 24) % 15 === 0 },
      { name: 'Preisgruppe', type: 'word', gen: (i) => 1 + (hK(i, 25) % 5) },
      { name: 'USt_IdNr', type: 'string', gen: (i) => (hK(i, 26) % 10 < 3 ? `DE${String(hK(i, 27) % 1_000_000_000).padStart(9, '0')}` : null) },
      { name: 'Notiz', type: 'string', gen: (i) => (hK(i, 28) % 5 === 0 ? `Achtung: "${kunName(i)}" zahlt spät;\nnur gegen Vorkasse` : null) },
      {
        name: 'Kunde_seit',
        type: 'date',
        gen: (i) => (hK(i, 29) % 20 === 0 ? EMPTY_DATE : format4DDate(randomDay(hK, i, 30, daysFromCivil(1995, 1, 1), END_DAY))),
      },
      ...kunAudit.columns,
      { name: 'Belege', kind: 'relatedEntities', related: 'Belege', path: 'Kunde' },
    ],
  };

  // Belege_Pos and Belege reference each other's numbers: positions are spread evenly over the documents.
  const hB = hOf('Belege');
  const hP = hOf('Belege_Pos');
  const belKeys = numericKeys(200_001, nB);
  const posKeys = numericKeys(1, nP);
  const belegOfPos = (i: number) => (nB > 0 ? Math.floor((i * nB) / nP) : -1);
  const firstPos = (b: number) => Math.ceil((b * nP) / nB);
  const posArt = (i: number) => (nA > 0 ? hP(i, 10) % nA : -1);
  const posMenge = (i: number) => 1 + (hP(i, 11) % 20);
  const posPreis = (i: number) => (posArt(i) >= 0 ? artPreis(posArt(i)) : 9.99);
  const posRabatt = (i: number) => (hP(i, 12) % 4 === 0 ? 10 : 0);
  const posBetrag = (i: number) => round2(posMenge(i) * posPreis(i) * (1 - posRabatt(i) / 100));
  const belNetto = (b: number) => {
    const from = firstPos(b);
    const to = b + 1 < nB ? firstPos(b + 1) : nP;
    if (to - from > 50) return round2((hB(b, 40) % 1_000_000) / 100); // keep rows cheap for skewed counts
    let sum = 0;
    for (let p = from; p < to; p++) sum += posBetrag(p);
    return round2(sum);
  };
  const belDay = (b: number) => daysFromCivil(1998, 1, 1) + Math.floor((b * (END_DAY - daysFromCivil(1998, 1, 1))) / Math.max(1, nB));
  const belKunde = (b: number) => (nK > 0 ? hB(b, 10) % nK : -1);
  const belBezahlt = (b: number) => hB(b, 11) % 5 !== 0;
  const belAudit = audit(hB, nB);
  const belege: TableSpec = {
    name: 'Belege',
    keyName: 'AbsNr',
    count: nB,
    keys: belKeys,
    stamp: belAudit.stamp,
    timestamp: belAudit.timestamp,
    columns: [
      { name: 'AbsNr', type: 'long', indexed: true, gen: (b) => 200_001 + b },
      { name: 'PapierNr', type: 'long', gen: (b) => 1_000_000 + b * 2 + (hB(b, 12) % 2) },
      {
        name: 'Papierart',
        type: 'string',
        gen: (b) => pick(['Rechnung', 'Rechnung', 'Rechnung', 'Angebot', 'Lieferschein', 'Auftrag', 'Gutschrift'], hB(b, 13)),
      },
      { name: 'Datum', type: 'date', indexed: true, gen: (b) => format4DDate(belDay(b)) },
      { name: 'KundenNr', type: 'long', indexed: true, gen: (b) => (belKunde(b) >= 0 ? 10_001 + belKunde(b) : null) },
      { name: 'Netto', type: 'number', gen: belNetto },
      { name: 'MWST_EUR', type: 'number', gen: (b) => round2(belNetto(b) * 0.19) },
      { name: 'Endbetrag', type: 'number', gen: (b) => round2(belNetto(b) * 1.19) },
      { name: 'Währung', type: 'string', gen: (b) => (belDay(b) < daysFromCivil(2002, 1, 1) ? 'DM' : 'EUR') },
      { name: 'bezahlt', type: 'bool', gen: belBezahlt },
      { name: 'ZahlungsDat', type: 'date', gen: (b) => (belBezahlt(b) ? format4DDate(belDay(b) + (hB(b, 14) % 60)) : EMPTY_DATE) },
      { name: 'Text', type: 'string', gen: (b) => (hB(b, 15) % 2 === 0 ? null : pick(BELEG_TEXTS, hB(b, 16))) },
      ...belAudit.columns,
      { name: 'Kunde', kind: 'relatedEntity', related: 'Kunden', gen: (b) => (belKunde(b) >= 0 ? kunKeys.key(belKunde(b)) : null) },
      { name: 'Positionen', kind: 'relatedEntities', related: 'Belege_Pos', path: 'Beleg' },
    ],
  };

  const posAudit = audit(hP, nP);
  const belegePos: TableSpec = {
    name: 'Belege_Pos',
    keyName: 'ID',
    count: nP,
    keys: posKeys,
    stamp: posAudit.stamp,
    timestamp: posAudit.timestamp,
    columns: [
      { name: 'ID', type: 'long', indexed: true, gen: (i) => 1 + i },
      { name: 'AbsNr', type: 'long', indexed: true, gen: (i) => (belegOfPos(i) >= 0 ? 200_001 + belegOfPos(i) : null) },
      { name: 'PosNr', type: 'word', gen: (i) => (belegOfPos(i) >= 0 ? i - firstPos(belegOfPos(i)) + 1 : 1) },
      { name: 'ArtNr', type: 'long', gen: (i) => (posArt(i) >= 0 ? artNummer(posArt(i)) : null) },
      { name: 'Bezeichnung', type: 'string', gen: (i) => (posArt(i) >= 0 ? artBez(posArt(i)) : 'Versandkosten') },
      { name: 'Menge', type: 'number', gen: posMenge },
      { name: 'Preis', type: 'number', gen: posPreis },
      { name: 'Rabatt', type: 'number', gen: posRabatt },
      { name: 'Pos_Betrag', type: 'number', gen: posBetrag },
      ...posAudit.columns,
      { name: 'Beleg', kind: 'relatedEntity', related: 'Belege', gen: (i) => (belegOfPos(i) >= 0 ? belKeys.key(belegOfPos(i)) : null) },
    ],
  };

  return [familie, artikel, variante, kunden, belege, belegePos];
}

function toTable(spec: TableSpec, tableNumber: number): Table {
  let fieldPos = 0;
  const attributes: AttributeDef[] = spec.columns.map((c) => {
    if ('kind' in c) {
      return c.kind === 'relatedEntity'
        ? { name: c.name, kind: c.kind, type: 'string', related: c.related }
        : { name: c.name, kind: c.kind, type: 'string', related: c.related, path: c.path };
    }
    return { name: c.name, kind: 'storage', type: c.type, indexed: c.indexed || c.name === spec.keyName || undefined, fieldPos: ++fieldPos };
  });
  const def: DataClassDef = { name: spec.name, tableNumber, keyName: spec.keyName, attributes };
  const none: Col = () => null;
  const gen: RowGenerator = {
    count: spec.count,
    columns: spec.columns.map((c) => ('gen' in c ? c.gen : none)),
    key: spec.keys.key,
    indexOfKey: spec.keys.indexOfKey,
    stamp: spec.stamp,
    timestamp: spec.timestamp,
  };
  return new Table(def, gen);
}

/**
 * Adds the `__GlobalStamp` column to the tracked specs: initial stamps 1..N over all of them, interleaved by
 * creation order (row i of n was created at about i/n of the history in every demo table).
 */
function addGlobalStamps(specs: TableSpec[], tracked: ReadonlySet<string>): void {
  const chosen = specs.filter((s) => tracked.has(s.name));
  const stamps = interleavedStamps(chosen.map((s) => s.count));
  chosen.forEach((s, k) => {
    s.columns.splice(globalStampPosition(s.columns), 0, { name: GLOBAL_STAMP, type: 'long64', indexed: true, gen: stamps[k]! });
  });
}

/**
 * Builds the demo tables; `rows` overrides the default row counts (unknown table names are rejected); the
 * `tracked` tables carry `__GlobalStamp` (see enableTracking for the rest of change tracking).
 */
export function buildDemoTables(seed: number, rows: Record<string, number>, tracked: ReadonlySet<string> = new Set()): Table[] {
  for (const name of Object.keys(rows)) {
    if (!(name in DEMO_DEFAULT_ROWS)) {
      throw new OptionError(`unknown demo table "${name}" (known: ${Object.keys(DEMO_DEFAULT_ROWS).join(', ')})`);
    }
  }
  const counts = { ...DEMO_DEFAULT_ROWS, ...rows };
  const specs = buildSpecs(seed, counts);
  addGlobalStamps(specs, tracked);
  return specs.map((s, n) => toTable(s, n + 1));
}
