/** `legacy tables` and `legacy describe <table>`: what the server exposes. */
import type { CommandContext } from '../cli/context.js';
import { write, writeJson } from '../cli/io.js';
import { columns } from '../cli/render.js';
import { command, JSON_OPTION } from '../cli/spec.js';

export async function runTables(ctx: CommandContext, _args: string[], opts: { json?: boolean }): Promise<number> {
  const client = await ctx.client();
  const catalog = await client.catalog();
  if (opts.json) {
    await writeJson(
      ctx.io,
      catalog.map((dc) => ({ name: dc.name, dataURI: dc.dataURI ?? `/rest/${dc.name}` })),
    );
  } else {
    await write(ctx.io.stdout, catalog.map((dc) => `${dc.name}\n`).join(''));
  }
  return 0;
}

export async function runDescribe(ctx: CommandContext, args: string[], opts: { json?: boolean }): Promise<number> {
  ctx.metrics.table(args[0]!);
  const client = await ctx.client();
  const dc = await client.dataClass(args[0]!);
  const keyNames = new Set(dc.key.map((k) => k.name));
  if (opts.json) {
    await writeJson(ctx.io, { name: dc.name, key: [...keyNames], attributes: dc.attributes });
    return 0;
  }
  const rows = dc.attributes.map((a) => [
    a.name,
    a.kind === 'storage' ? a.type : `${a.kind} → ${a.path ?? a.type}`,
    [keyNames.has(a.name) || a.identifying ? 'key' : '', a.indexed ? 'indexed' : ''].filter(Boolean).join(', '),
  ]);
  await write(ctx.io.stdout, columns(rows, ['ATTRIBUTE', 'TYPE', 'NOTES']));
  return 0;
}

export const specs = [
  command<{ json?: boolean }>({
    name: 'tables',
    description: 'list the tables (dataclasses) the server exposes',
    options: [JSON_OPTION],
    run: runTables,
  }),
  command<{ json?: boolean }>({
    name: 'describe <table>',
    complete: ['tables'],
    description: "show a table's attributes, types and key",
    options: [JSON_OPTION],
    run: runDescribe,
  }),
];
