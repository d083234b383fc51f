/**
 * Can the agent's uid use its grants? Checked before anything starts, by the kernel
 * itself: a child process running as that uid (and its gid, no supplementary groups,
 * as the box runs it) calls access(2) on each path, so owners, modes and POSIX ACLs all
 * count. Each problem comes back with the fix.
 *
 * What is checked:
 * - read grants: read (and enter, for a folder); write grants: read, write (and enter);
 * - the agent program: execute;
 * - with `parents` (the generated systemd unit runs the agent on the host's own paths):
 *   entering every folder above each grant. The boxes bind each grant from an fd opened
 *   by the launcher, so inside a box the folders above a grant are the box's own.
 * A grant that does not exist is reported apart (nothing can be bound for it).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, lstatSync, openSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import type { Model } from '../model/types.js';
import { effectiveFs } from '../model/grants.js';

export interface AccessProblem {
  /** The grant as written and where (`fs:write:~/work (capabilities[0])`). */
  grant: string;
  path: string;
  /** What the uid lacks: read, write, enter, execute. */
  missing: string;
  /** One line: what is wrong and how to fix it. */
  message: string;
}

export interface AccessReport {
  uid: number;
  problems: AccessProblem[];
  /** Grants whose path does not exist (left out of the box). */
  missing: { grant: string; path: string; message: string }[];
}

interface Want {
  grant: string;
  path: string;
  /** r, w, x letters. */
  mode: string;
  what: 'grant' | 'parent' | 'program';
  dir: boolean;
}

// Each want is checked by path, or (`fd`) through /proc/self/fd/N: a grant or program
// the launcher opened, which the box binds without walking the folders above it.
const CHECKER = `
const fs = require('fs');
const wants = JSON.parse(fs.readFileSync(0, 'utf8'));
const M = { r: fs.constants.R_OK, w: fs.constants.W_OK, x: fs.constants.X_OK };
const out = wants.map((w) => {
  const at = w.fd === undefined ? w.path : '/proc/self/fd/' + w.fd;
  const lacks = [];
  for (const ch of w.mode) { try { fs.accessSync(at, M[ch]); } catch (e) { lacks.push(ch); } }
  return lacks.join('');
});
process.stdout.write(JSON.stringify(out));
`;

/** Runs access(2) as `uid` (a child when that is not us) for every want; returns the letters each lacks. */
function lacking(wants: Want[], uid: number): string[] {
  const self = process.getuid?.() ?? uid;
  if (uid === self) {
    const M = { r: constants.R_OK, w: constants.W_OK, x: constants.X_OK } as Record<string, number>;
    return wants.map((w) => [...w.mode].filter((ch) => { try { accessSync(w.path, M[ch]); return false; } catch { return true; } }).join(''));
  }
  // Grants and the program are opened here (as root) and handed over as fds 3..; parents go by path.
  const fds: number[] = [];
  const sent = wants.map((w) => {
    if (w.what === 'parent') return { path: w.path, mode: w.mode };
    try {
      const fd = openSync(w.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
      fds.push(fd);
      return { path: w.path, mode: w.mode, fd: 2 + fds.length };
    } catch {
      return { path: w.path, mode: w.mode };
    }
  });
  try {
    const r = spawnSync(process.execPath, ['-e', CHECKER], { uid, gid: uid, cwd: '/', input: JSON.stringify(sent), encoding: 'utf8', env: {}, timeout: 20_000, stdio: ['pipe', 'pipe', 'pipe', ...fds] });
    if (r.status !== 0) throw new Error(`could not check access as uid ${uid}: ${(r.stderr || r.error?.message || 'no answer').split('\n')[0]}`);
    return JSON.parse(r.stdout) as string[];
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

const WORD: Record<string, string> = { r: 'read', w: 'write', x: 'enter' };

function describeOwner(path: string): string {
  try {
    const s = statSync(path);
    return `owner ${s.uid}, group ${s.gid}, mode ${(s.mode & 0o7777).toString(8).padStart(4, '0')}`;
  } catch {
    return 'unreadable';
  }
}

/** Every grant and the agent program, checked as `uid`; `parents` adds the folders above each grant. */
export function checkAccess(model: Model, command: readonly string[], uid: number, opts: { parents: boolean }): AccessReport {
  const wants: Want[] = [];
  const missing: AccessReport['missing'] = [];
  const seenParents = new Set<string>();
  for (const g of effectiveFs(model).fs) {
    const grant = `${g.source.text} (${g.source.pointer})`;
    let dir: boolean;
    try {
      const st = lstatSync(g.path);
      if (st.isSymbolicLink()) continue; // refused at launch with its own message (grants are opened O_NOFOLLOW)
      dir = st.isDirectory();
    } catch {
      const fix = g.access === 'write' ? `create it (mkdir -p ${g.path} for a folder, touch ${g.path} for a file), then chown ${uid} ${g.path}` : `create it, or remove the grant`;
      missing.push({ grant, path: g.path, message: `${grant}: ${g.path} does not exist, so the agent cannot use it; ${fix}` });
      continue;
    }
    const mode = (g.access === 'write' ? 'rw' : 'r') + (dir ? 'x' : '');
    wants.push({ grant, path: g.path, mode, what: 'grant', dir });
    if (opts.parents) {
      for (let p = posix.dirname(g.path); ; p = posix.dirname(p)) {
        if (!seenParents.has(p)) {
          seenParents.add(p);
          wants.push({ grant, path: p, mode: 'x', what: 'parent', dir: true });
        }
        if (p === '/') break;
      }
    }
  }
  const program = command[0];
  if (program) {
    try {
      statSync(program);
      wants.push({ grant: 'agent.command[0]', path: program, mode: 'x', what: 'program', dir: false });
    } catch {
      // not installed: the launch says "cannot run" with exit 127
    }
  }
  const lacks = lacking(wants, uid);
  const problems: AccessProblem[] = [];
  wants.forEach((w, i) => {
    const l = lacks[i] ?? '';
    if (!l) return;
    const words = [...l].map((ch) => (w.what === 'program' && ch === 'x' ? 'execute' : WORD[ch]!)).join(' and ');
    const acl = w.what === 'parent' ? 'x' : w.what === 'program' ? 'rx' : w.mode;
    const fixes = w.what === 'grant' && w.mode.includes('w') ? [`chown ${uid} ${w.path}`, `setfacl -m u:${uid}:${acl} ${w.path}`] : [`setfacl -m u:${uid}:${acl} ${w.path}`];
    const whose = w.what === 'parent' ? `the folder ${w.path} above ${w.grant}` : w.what === 'program' ? `the agent program ${w.path}` : `${w.grant}: ${w.path}`;
    problems.push({
      grant: w.grant,
      path: w.path,
      missing: words,
      message: `${whose}: uid ${uid} cannot ${words} it (${describeOwner(w.path)}); fix: ${fixes.join(', or ')}, or run the agent as an account that can (agent.uid and agent.user)`,
    });
  });
  return { uid, problems, missing };
}
