/**
 * Path normalisation before any decision (SPEC §2). Pure: the file system is reached
 * only through the injected `PathResolver`, which the edge implements with lstat and
 * readlink (src/host/resolver.ts) and tests implement in memory.
 *
 * Rules:
 * - `~` and `~/x` expand against the home directory; `~user` is refused.
 * - Relative paths are refused (a manifest means the same wherever it is read).
 * - A `..` segment is refused: a grant names the folder itself, never a way out of it.
 * - `.` segments and repeated slashes are dropped; a trailing slash is dropped.
 * - Symlinks are resolved; a symlink may only point inside the directory that
 *   contains it, so `~/Documents/link -> /etc` cannot turn a Documents grant into /etc.
 */

import { checkPathAlphabet } from './grammar.js';

/** What the edge reports about one path after walking it component by component. */
export type ResolveResult =
  | { ok: true; real: string }
  | { ok: false; link: string; target: string; container: string };

export interface PathResolver {
  /** Resolves symlinks in an absolute, lexically clean path (missing tails are kept as written). */
  resolve(path: string): ResolveResult;
}

export type NormaliseResult = { ok: true; literal: string; real: string } | { ok: false; message: string };

/** Lexical clean-up of an absolute path; refuses `..`. */
export function lexicalPath(raw: string, home: string): NormaliseResult {
  let path = raw.normalize('NFC');
  if (path === '~') path = home;
  else if (path.startsWith('~/')) path = home + path.slice(1);
  else if (path.startsWith('~')) {
    return { ok: false, message: `"${raw}": ~user is not supported; write ~/ for the agent user's home or an absolute path` };
  }
  if (!path.startsWith('/')) {
    return { ok: false, message: `"${raw}" is relative; write an absolute path (/srv/data) or one under the home directory (~/Documents)` };
  }
  const parts: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      return { ok: false, message: `"${raw}" climbs out of itself with ".."; name the folder you mean directly` };
    }
    if (seg.length > 255) return { ok: false, message: `"${raw}" has a name longer than 255 bytes` };
    parts.push(seg);
  }
  const clean = '/' + parts.join('/');
  if (clean.length > 4000) return { ok: false, message: `"${raw}" is longer than 4000 characters` };
  const bad = checkPathAlphabet(clean);
  if (bad) return { ok: false, message: `"${raw}" expands to "${clean}": ${bad}` };
  return { ok: true, literal: clean, real: clean };
}

/** Full normalisation: lexical rules, then symlink resolution through `resolver`. */
export function normalisePath(raw: string, home: string, resolver: PathResolver): NormaliseResult {
  const lex = lexicalPath(raw, home);
  if (!lex.ok) return lex;
  const r = resolver.resolve(lex.literal);
  if (!r.ok) {
    return {
      ok: false,
      message: `"${raw}" goes through the symlink ${r.link} -> ${r.target}, which points outside ${r.container}; grant the target directly if that is what you mean`,
    };
  }
  const bad = checkPathAlphabet(r.real);
  if (bad) return { ok: false, message: `"${raw}" resolves to "${r.real}": ${bad}` };
  return { ok: true, literal: lex.literal, real: r.real };
}

/** A resolver for pure contexts: no links anywhere. */
export const identityResolver: PathResolver = { resolve: (path) => ({ ok: true, real: path }) };

/** True when `path` is `base` or lies under it. */
export function isWithin(path: string, base: string): boolean {
  if (base === '/') return true;
  return path === base || path.startsWith(base + '/');
}
