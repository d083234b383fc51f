/**
 * `launch --env K=V` and `--env-file F`: variables added to the manifest's environment
 * for one session, held to the manifest's own rules (a name, printable values, never a
 * variable agentbox owns). Pure: the file's text arrives from the caller. Values are
 * never audited or printed; names are.
 */
import { CA_ENV, PROXY_ENV } from '../model/environment.js';

export type EnvArgsResult = { ok: true; env: Record<string, string> } | { ok: false; errors: string[] };

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const OWNED = new Set([...PROXY_ENV, ...CA_ENV, 'HOME', 'PATH']);

function entry(text: string, where: string, out: Record<string, string>, errors: string[], brokered: readonly string[]): void {
  const eq = text.indexOf('=');
  const name = eq < 0 ? text : text.slice(0, eq);
  if (eq < 0) return void errors.push(`${where}: "${name.slice(0, 60)}" has no =VALUE; write NAME=VALUE`);
  const value = text.slice(eq + 1);
  if (!NAME.test(name)) errors.push(`${where}: "${name.slice(0, 60)}" is not a variable name (letters, digits and _, not starting with a digit)`);
  else if (OWNED.has(name)) errors.push(`${where}: ${name} is set by agentbox itself (the box's home, PATH, its egress proxy and CA bundle); it cannot be overridden`);
  else if (brokered.includes(name)) errors.push(`${where}: ${name} holds a brokered credential's placeholder (egress.credentials); agentbox injects the real key at the proxy, so the box never gets one`);
  else if (/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(value)) errors.push(`${where}: the value of ${name} contains a control or invisible formatting character; values must be printable text`);
  else out[name] = value;
}

/** `--env` entries in order, then each env file (`NAME=VALUE` lines, `#` comments, blank lines). */
export function parseEnvArgs(entries: readonly string[], files: readonly { file: string; text: string }[], brokered: readonly string[] = []): EnvArgsResult {
  const env: Record<string, string> = {};
  const errors: string[] = [];
  for (const f of files) {
    f.text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '' || line.trimStart().startsWith('#')) return;
      entry(line.replace(/^export\s+/, ''), `${f.file}:${i + 1}`, env, errors, brokered);
    });
  }
  for (const e of entries) entry(e, `--env ${JSON.stringify(e.split('=')[0]!.slice(0, 60))}`, env, errors, brokered);
  return errors.length > 0 ? { ok: false, errors } : { ok: true, env };
}
