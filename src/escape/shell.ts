/**
 * POSIX shell quoting: the one way agentbox puts a value into a shell script
 * (box/bwrap.ts's setup script) or shows a command line to a person (--dry-run).
 */

/** Single-quotes any value; a NUL byte cannot be passed to a shell and throws. */
export function shQuote(s: string): string {
  if (s.includes('\0')) throw new Error('a NUL byte cannot be passed to a shell');
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A command line for display: plain words stay bare, anything else is quoted. */
export function shellLine(argv: readonly string[], separator = ' '): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : shQuote(a))).join(separator);
}
