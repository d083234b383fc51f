/**
 * AppArmor profile path quoting (apparmor.d(5)).
 *
 * Paths are written double-quoted; `\` and `"` are backslash-escaped, and so is every
 * AppArmor glob or alternation character (`* ? [ ] { } ^`), so a path is always
 * matched literally. `@{` would start a variable and is escaped by escaping `{`.
 * Control characters throw.
 */
import { UNPRINTABLE, UnrepresentableError } from './errors.js';

const SPECIAL = new Set(['\\', '"', '*', '?', '[', ']', '{', '}', '^']);

function escapeBody(path: string): string {
  if (UNPRINTABLE.test(path)) throw new UnrepresentableError('an AppArmor profile', path, 'control characters cannot appear in a profile');
  if (!path.startsWith('/')) throw new UnrepresentableError('an AppArmor profile', path, 'paths must be absolute');
  let out = '';
  for (const ch of path) out += SPECIAL.has(ch) ? '\\' + ch : ch;
  return out;
}

/** A literal path as an AppArmor quoted string. */
export function apparmorPath(path: string): string {
  return `"${escapeBody(path)}"`;
}

/**
 * A literal path followed by a glob suffix that is left unescaped: `/` (the directory
 * itself) or `/**` (everything below it).
 */
export function apparmorPathGlob(path: string, suffix: '' | '/' | '/**'): string {
  const body = escapeBody(path).replace(/\/+$/, '');
  return `"${body}${suffix}"`;
}
