/**
 * `capabilities` and `deny` of one document turned into normalised rules (grammar,
 * paths, symlinks), each bad entry reported where it stands. Pure.
 */
import { isWithin, normalisePath } from '../model/paths.js';
import { parseDeny, parseGrant } from '../model/grammar.js';
import type { ExecDeny, ExecGrant, FsDeny, FsGrant, NetDeny, NetGrant, RuleSource } from '../model/types.js';
import type { ParsedDocument } from './parse.js';
import type { RawManifest } from './schema.js';
import { diag, type Collector, type LoadContext } from './document.js';

/** System directories no grant may make writable: it would defeat the sandbox. */
export const SYSTEM_DIRS = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/sbin', '/sys', '/usr', '/var/lib', '/var/log', '/run'];

export interface Scoped {
  fs: FsGrant[];
  net: NetGrant[];
  exec: ExecGrant[];
  denyFs: FsDeny[];
  denyNet: NetDeny[];
  denyExec: ExecDeny[];
}

/** Turns `capabilities` and `deny` into normalised rules, reporting each bad entry where it stands. */
export function scopes(doc: ParsedDocument, raw: RawManifest, origin: 'manifest' | 'preset', ctx: LoadContext, out: Collector): Scoped {
  const s: Scoped = { fs: [], net: [], exec: [], denyFs: [], denyNet: [], denyExec: [] };
  const preset = origin === 'preset' ? raw.metadata.name : undefined;
  const source = (pointer: string, text: string): RuleSource => ({ origin, file: doc.file, pointer, text, ...(preset ? { preset } : {}) });

  (raw.capabilities ?? []).forEach((text, i) => {
    const pointer = `capabilities[${i}]`;
    const fail = (message: string) => out.errors.push(diag(doc, 'error', ['capabilities', i], pointer, message));
    const g = parseGrant(text);
    if (!g.ok) return fail(g.message);
    const v = g.value;
    if (v.type === 'net') {
      s.net.push({ host: v.host, hostKind: v.hostKind, port: v.port, source: source(pointer, text) });
      return;
    }
    const n = normalisePath(v.path, ctx.home, ctx.resolver);
    if (!n.ok) return fail(n.message);
    if (n.real === '/') return fail(`"${text}" grants the whole file system; overly broad grants are not allowed for security reasons. Name the folders the agent needs`);
    if (v.type === 'fs') {
      if (v.access === 'write') {
        const sys = SYSTEM_DIRS.find((d) => isWithin(n.real, d) || isWithin(d, n.real));
        if (sys) return fail(`"${text}" would make the system directory ${sys} writable, which defeats the sandbox; grant a folder of the user's instead`);
        if (isWithin(ctx.home, n.real)) {
          return fail(`"${text}" would make the whole home directory ${ctx.home} writable, so the agent could plant ~/.bashrc, ~/.profile or other startup files that run outside the box; grant a folder inside it, such as ~/work`);
        }
      }
      s.fs.push({ path: n.real, access: v.access, source: source(pointer, text) });
    } else {
      s.exec.push({ path: n.real, source: source(pointer, text) });
    }
  });

  (raw.deny ?? []).forEach((text, i) => {
    const pointer = `deny[${i}]`;
    const fail = (message: string) => out.errors.push(diag(doc, 'error', ['deny', i], pointer, message));
    const d = parseDeny(text);
    if (!d.ok) return fail(d.message);
    const v = d.value;
    if (v.type === 'net') {
      s.denyNet.push({ host: v.host, hostKind: v.hostKind, port: v.port, source: source(pointer, text) });
      return;
    }
    // A deny is never refused for a symlink: it covers both the written and the resolved path.
    const n = normalisePath(v.path, ctx.home, ctx.resolver);
    let paths: string[];
    if (n.ok) paths = n.literal === n.real ? [n.real] : [n.literal, n.real];
    else {
      const lexical = normalisePath(v.path, ctx.home, { resolve: (p) => ({ ok: true, real: p }) });
      if (!lexical.ok) return fail(lexical.message);
      paths = [lexical.literal];
    }
    for (const path of paths) {
      if (v.type === 'fs') s.denyFs.push({ path, access: v.access, source: source(pointer, text) });
      else s.denyExec.push({ path, source: source(pointer, text) });
    }
  });
  return s;
}

