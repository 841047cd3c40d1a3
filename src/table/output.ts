/**
 * `-o FILE` for exports: the one output-file module of streams/ (through symlinks, atomically for
 * files, in place for devices, FIFOs and the standard streams; modes kept; a full disk is exit 73).
 */
export { CannotCreateError } from '../errors/index.js';
export { openOutputFile, type OutputFile, type OutputFileOptions } from '../streams/output-file.js';
