/**
 * `$catalog` shapes (v19/v20: `tableNumber`, `fieldPos`, `<Name>Selection`; dates carry `simpleDate: true`).
 */
import type { DataStore } from './datastore.js';
import type { Table } from './table.js';

export function catalogList(store: DataStore, uniqId: string): Record<string, unknown> {
  return {
    __UNIQID: uniqId,
    dataClasses: store.tables.map((t) => ({ name: t.name, uri: `/rest/$catalog/${t.name}`, dataURI: `/rest/${t.name}` })),
  };
}

export function dataClassInfo(table: Table): Record<string, unknown> {
  const attributes = table.attrs.map((a) => {
    if (a.kind === 'relatedEntity') return { name: a.name, kind: a.kind, scope: 'public', type: a.related, path: a.related };
    if (a.kind === 'relatedEntities') {
      return { name: a.name, kind: a.kind, scope: 'public', type: `${a.related}Selection`, reversePath: true, path: a.path };
    }
    const o: Record<string, unknown> = { name: a.name, kind: a.kind, fieldPos: a.fieldPos, scope: 'public' };
    if (a.indexed) o.indexed = true;
    o.type = a.type;
    if (a.name === table.def.keyName) o.identifying = true;
    if (a.type === 'date') o.simpleDate = true;
    return o;
  });
  return {
    name: table.name,
    className: table.name,
    collectionName: `${table.name}Selection`,
    tableNumber: table.def.tableNumber,
    scope: 'public',
    dataURI: `/rest/${table.name}`,
    attributes,
    key: [{ name: table.def.keyName }],
  };
}
