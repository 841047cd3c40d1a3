/**
 * Before each test file. The files of a project share a worker process (isolate: false in
 * vitest.config.ts), so each starts without the secrets an earlier file's runs registered for
 * masking: they would mask text in this file's output (a number in a message came out as "39.5******").
 */
import { forgetSecrets } from '../src/log/redact.js';

forgetSecrets();
