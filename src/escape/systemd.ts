/**
 * systemd unit-file quoting (systemd.syntax(7), systemd.service(5) "Command lines").
 *
 * Every value is written as one double-quoted word: `\` and `"` are backslash-escaped,
 * `%` becomes `%%` (specifiers), and in command lines `$` becomes `$$` (no variable
 * expansion). A newline or other control character cannot be written and throws, so
 * no value can start a new directive.
 */
import { UNPRINTABLE, UnrepresentableError } from './errors.js';

function quoteWith(value: string, dollar: boolean): string {
  if (UNPRINTABLE.test(value)) throw new UnrepresentableError('a systemd unit', value, 'control characters cannot appear in a unit file');
  let out = '';
  for (const ch of value) {
    if (ch === '\\' || ch === '"') out += '\\' + ch;
    else if (ch === '%') out += '%%';
    else if (ch === '$' && dollar) out += '$$';
    else out += ch;
  }
  return `"${out}"`;
}

/** One argument of ExecStart=: literal, no expansion of `$VAR` or `%x`. */
export function systemdExecArg(value: string): string {
  return quoteWith(value, true);
}

/** One path in a path-list directive (BindPaths=, InaccessiblePaths=, ...); `prefix` is `-` to skip a missing path. */
export function systemdPath(path: string, prefix: '' | '-' = ''): string {
  if (!path.startsWith('/')) throw new UnrepresentableError('a systemd path', path, 'paths must be absolute');
  if (path.includes(':')) throw new UnrepresentableError('a systemd path', path, '":" separates source and destination in bind directives');
  return quoteWith(prefix + path, false);
}

/** One `KEY=value` assignment for Environment=. */
export function systemdEnv(name: string, value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UnrepresentableError('a systemd Environment=', name, 'not a variable name');
  return quoteWith(`${name}=${value}`, false);
}
