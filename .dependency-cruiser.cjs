/**
 * The house's layering, checked by `npm run deps` (part of `npm test`): data flows one way,
 * command → library → 4D client → session → plain HTTP, over a base every layer may use.
 *
 *   base        errors, streams, protocol (4D URL grammar and error codes), log, fs (private dirs,
 *               atomic writes, locks; the caller chooses the error), config
 *   transport   plain HTTP (one exchange, retries, HAR recording)
 *   session     the shared server session (cookies, stores, locks, licence budget)
 *   rest        the 4D REST client (catalog, pages, entities, updates, the server's dialect)
 *   table       export (paging, checks, formats)
 *   push, sync, metrics
 *   watch       the change feed (built on sync)
 *   cli         the toolkit commands use (spec, context, io, prompt, render, progress)
 *   commands    one file per command: its spec and run
 *   app, index.ts   the program assembled from the commands (main, completion, process wiring) and
 *               the library API: may use everything
 *   emulator    an island: the 4D server it plays must not share code with the client
 *
 * A layer may import its own folder and any layer listed before it; nothing imports cli/ or
 * commands/; no cycles (type imports included).
 */
const LAYERS = [
  ['errors', 'streams'],
  ['protocol', 'log', 'fs'],
  ['config'],
  ['transport'],
  ['session'],
  ['rest'],
  ['table'],
  ['push', 'sync', 'metrics'],
  ['watch'],
];

const folder = (names) => `^src/(${names.join('|')})/`;

/** For each layer: it must not import any folder of a later layer. */
const upward = LAYERS.flatMap((layer, i) => {
  const later = LAYERS.slice(i + 1).flat();
  return later.length === 0
    ? []
    : [
        {
          name: `no-upward-from-${layer.join('-')}`,
          comment: `${layer.join(', ')} must not import a later layer (${later.join(', ')})`,
          severity: 'error',
          from: { path: folder(layer) },
          to: { path: folder(later) },
        },
      ];
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycles, type imports included',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-library-to-cli',
      comment: 'library folders never import the command line',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/(app|cli|commands)/', '^src/index\\.ts$'] },
      to: { path: '^src/(app|cli|commands)/' },
    },
    {
      name: 'toolkit-does-not-import-commands',
      comment: 'cli/ is the toolkit commands use (spec, context, io, prompt, render); it never imports a command or the app',
      severity: 'error',
      from: { path: '^src/cli/' },
      to: { path: '^src/(commands|app)/' },
    },
    {
      name: 'commands-do-not-import-the-app',
      comment: 'app/ assembles the commands into the program (main, program, completion, process wiring); nothing it assembles imports it',
      severity: 'error',
      from: { path: '^src/commands/' },
      to: { path: '^src/app/' },
    },
    {
      name: 'emulator-is-an-island',
      comment: 'the emulator plays an independent 4D server: it shares no code with the client, and the client none with it',
      severity: 'error',
      from: { path: '^src/emulator/' },
      to: { path: '^src/', pathNot: '^src/emulator/' },
    },
    {
      name: 'client-does-not-use-the-emulator',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/emulator/', '^src/index\\.ts$'] },
      to: { path: '^src/emulator/' },
    },
    ...upward,
    {
      name: 'no-unknown-folder',
      comment: 'every library folder belongs to a layer (add new ones to LAYERS)',
      severity: 'error',
      from: { path: '^src/[^/]+/' , pathNot: [folder([...LAYERS.flat(), 'app', 'cli', 'commands', 'emulator'])] },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    includeOnly: '^src/',
    exclude: { path: '\\.d\\.ts$' },
  },
};
