/**
 * Finding the agent program at load time (pure: the file system arrives through a
 * `ProgramResolver`). `agent.command[0]` may be
 * - an absolute path, possibly a symlink (every `npm i -g` CLI is one);
 * - `~/…`;
 * - a bare name, looked up on PATH the same way for every runtime.
 *
 * The result records the real file (what the plans and artifacts name), the package
 * folder it lives in (an npm package: the outermost `node_modules/[@scope/]name`), and a
 * `#!` interpreter, resolved through `/usr/bin/env` when the line uses it.
 */
import { posix } from 'node:path';
import type { AgentProgram } from '../model/types.js';
import { lexicalPath } from '../model/paths.js';
import { checkPathAlphabet } from '../model/grammar.js';

/** The PATH a box gives its agent, and the one a bare name is looked up on. */
export const BOX_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export interface ProgramResolver {
  /** The first `dir/name` that is an executable file, in order; undefined when none is. */
  find(name: string, dirs: readonly string[]): string | undefined;
  /** The path with every symlink resolved, or undefined when it does not exist. */
  real(path: string): string | undefined;
  /** The `#!` line of a file as [interpreter, optional argument], or undefined. */
  shebang(path: string): [string, string | undefined] | undefined;
}

/** Resolves nothing: for pure contexts where programs are taken as written. */
export const literalPrograms: ProgramResolver = { find: () => undefined, real: (p) => p, shebang: () => undefined };

export type ProgramResult = { ok: true; program: AgentProgram } | { ok: false; message: string };

/** The outermost `…/node_modules/NAME` or `…/node_modules/@SCOPE/NAME` folder holding `path`. */
export function packageDirOf(path: string): string | undefined {
  const parts = path.split('/');
  const i = parts.indexOf('node_modules');
  if (i < 0 || i + 1 >= parts.length - 1) return undefined;
  const scoped = parts[i + 1]!.startsWith('@');
  const end = i + (scoped ? 3 : 2);
  if (end >= parts.length) return undefined;
  return parts.slice(0, end).join('/');
}

const BARE = /^[A-Za-z0-9._+-]+$/;

export function resolveProgram(written: string, home: string, path: readonly string[], r: ProgramResolver): ProgramResult {
  let found: string;
  let viaPath = false;
  if (!written.includes('/') && !written.startsWith('~')) {
    if (!BARE.test(written)) return { ok: false, message: `"${written}" is neither an absolute path nor a program name; write /usr/bin/NAME or NAME` };
    const hit = r.find(written, path);
    if (!hit) return { ok: false, message: `"${written}" was not found on PATH (${path.join(':')}); install it or write its absolute path` };
    found = hit;
    viaPath = true;
  } else {
    const lex = lexicalPath(written, home);
    if (!lex.ok) return { ok: false, message: lex.message };
    found = lex.literal;
  }
  const real = r.real(found) ?? found;
  const bad = checkPathAlphabet(real);
  if (bad) return { ok: false, message: `"${written}" resolves to "${real}": ${bad}` };
  // systemd refuses quotes in an executable's path (string_is_safe), unlike in path directives.
  if (real.includes("'")) return { ok: false, message: `"${written}" resolves to "${real}": systemd refuses a program path containing ' ; move or link the program to a path without it` };

  let interpreter: string | undefined;
  let shebangVia: string | undefined;
  const bang = r.shebang(real);
  if (bang) {
    let [interp, arg] = bang;
    if (posix.basename(interp) === 'env' && arg !== undefined) {
      shebangVia = r.real(interp) ?? interp;
      const name = arg.replace(/^-S\s*/, '').split(/\s+/)[0] ?? '';
      const hit = BARE.test(name) ? r.find(name, path) : undefined;
      if (!hit) return { ok: false, message: `"${written}" starts with "#!${interp} ${arg}", but "${name}" was not found on PATH (${path.join(':')}); install it or change agent.command to [INTERPRETER, ${real}]` };
      interp = hit;
    }
    interpreter = r.real(interp) ?? interp;
    const badInterp = checkPathAlphabet(interpreter);
    if (badInterp) return { ok: false, message: `"${written}" runs the interpreter "${interpreter}": ${badInterp}` };
  }
  return {
    ok: true,
    program: { asWritten: written, path: real, link: real !== found ? found : undefined, viaPath, packageDir: packageDirOf(real), interpreter, shebangVia },
  };
}
