#!/usr/bin/env node
// The `legacy` command. Kept tiny: `--version` answers without loading anything else, and the
// CLI frame loads each command's modules only when that command runs.
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.version}\n`);
} else {
  const { runProcess } = await import('../dist/app/process.js');
  await runProcess(argv);
}
