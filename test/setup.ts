/**
 * Before each test file. The files of a project share a worker process (isolate: false in
 * vitest.config.ts), so each starts without the secrets an earlier file's runs registered for
 * masking: they would mask text in this file's output ("39.5***" for a password "000").
 */
import { forgetSecrets } from '../src/log/redact.js';

forgetSecrets();
