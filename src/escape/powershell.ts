/**
 * PowerShell single-quoted string literals (about_Quoting_Rules): nothing inside is
 * expanded; a single quote is written twice. PowerShell also treats the typographic
 * quotes U+2018, U+2019, U+201A and U+201B as single quotes, so each of those is doubled
 * too. Control characters cannot appear (they throw).
 */
import { UNPRINTABLE, UnrepresentableError } from './errors.js';

const SINGLE_QUOTES = new Set(["'", '\u2018', '\u2019', '\u201a', '\u201b']);

export function psString(value: string): string {
  if (UNPRINTABLE.test(value)) throw new UnrepresentableError('a PowerShell string', value, 'control characters cannot appear');
  let out = '';
  for (const ch of value) out += SINGLE_QUOTES.has(ch) ? ch + ch : ch;
  return `'${out}'`;
}

/** A PowerShell array literal of single-quoted strings: @('a', 'b'). */
export function psArray(values: readonly string[]): string {
  return `@(${values.map(psString).join(', ')})`;
}
