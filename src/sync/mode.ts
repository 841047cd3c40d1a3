/** A sync pass's mode for people (run history, tables, logs): `full (cursor filter rejected)`. No imports: commands load it with their spec. */
export function modeText(r: { mode: string; reason?: string }): string {
  return r.reason ? `${r.mode} (${r.reason})` : r.mode;
}
