#!/usr/bin/env node
import('../dist/emulator/cli.js').then((m) => m.main(process.argv.slice(2)));
