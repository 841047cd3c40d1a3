/**
 * `-o FILE` for exports: the atomic streamed file of config/files.ts (temporary file beside the
 * target, renamed over it only when the export succeeded).
 */
export { CannotCreateError } from '../errors/index.js';
export { openAtomic, type AtomicFile, type OpenAtomicOptions } from '../config/files.js';
