/**
 * Process wiring for the `legacy` bin: signals, exit code, last-resort error handling.
 * Never calls process.exit() while work is in flight: it sets process.exitCode and lets streams drain.
 */
import { ExitCode, interruptedBy, isBrokenPipe, noSpaceReason } from '../errors/index.js';
import { processIo } from '../cli/io.js';
import { main } from './main.js';

export async function runProcess(argv: string[]): Promise<void> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts += 1;
    if (interrupts > 1) {
      // Second Ctrl-C: the user means it.
      process.exit(ExitCode.interrupted);
    }
    controller.abort(interruptedBy(signal));
    // Cleanup (temp files, locks) has a few seconds; then we leave anyway.
    setTimeout(() => process.exit(signal === 'SIGINT' ? ExitCode.interrupted : 128 + 15), 5000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed or full stdout/stderr must never surface as an uncaught trace: main() reports what
  // a failed stdout means (nothing for a closed pipe, exit 73 for `> /dev/full`).
  process.stdout.on('error', (error) => {
    if (!isBrokenPipe(error) && !noSpaceReason(error)) throw error;
  });
  process.stderr.on('error', () => undefined);

  const code = await main(argv, processIo(), { signal: controller.signal });
  process.exitCode = code;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
