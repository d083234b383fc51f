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
import { accessSync, closeSync, constants, statSync } from 'node:fs';
import { openExact } from './open-exact.js';
import { posix } from 'node:path';
import type { Model } from '../model/types.js';
import { effectiveFs } from '../model/grants.js';
import { isWithin } from '../model/paths.js';
import { AgentboxError } from '../errors.js';

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
// the launcher opened, which the box binds without walking the folders above it. The
// checker is /bin/sh's `test` (access(2)) so it runs wherever the agent's uid can run
// /bin/sh, whatever account node was installed under; a path is only ever an argument.
const CHECKER = 'for a in "$@"; do m=${a%%:*}; p=${a#*:}; l=; case $m in *r*) [ -r "$p" ] || l=${l}r;; esac; case $m in *w*) [ -w "$p" ] || l=${l}w;; esac; case $m in *x*) [ -x "$p" ] || l=${l}x;; esac; printf "%s\\n" "$l"; done';

/** Runs access(2) as `uid` (a child when that is not us) for every want; returns the letters each lacks. */
function lacking(wants: Want[], uid: number): string[] {
  const self = process.getuid?.() ?? uid;
  if (uid === self) {
    const M = { r: constants.R_OK, w: constants.W_OK, x: constants.X_OK } as Record<string, number>;
    return wants.map((w) => [...w.mode].filter((ch) => { try { accessSync(w.path, M[ch]); return false; } catch { return true; } }).join(''));
  }
  if (wants.length === 0) return [];
  // Grants and the program are opened here (as root) and handed over as fds 3..; parents go by path.
  const fds: number[] = [];
  const args = wants.map((w) => {
    if (w.what !== 'parent') {
      // O_PATH, no symlink anywhere on the path (the agent may shape what is under a grant).
      const o = openExact(w.path);
      if (!o) return `${w.mode}:/nonexistent/agentbox-missing`;
      fds.push(o.fd);
      return `${w.mode}:/proc/self/fd/${2 + fds.length}`;
    }
    return `${w.mode}:${w.path}`;
  });
  try {
    const r = spawnSync('/bin/sh', ['-c', CHECKER, 'agentbox-access', ...args], { uid, gid: uid, cwd: '/', encoding: 'utf8', env: {}, timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe', ...fds] });
    const lines = String(r.stdout ?? '').split('\n').slice(0, wants.length);
    if (r.status !== 0 || lines.length !== wants.length) throw new AgentboxError('CONTROL_UNAVAILABLE', `could not check the grants as uid ${uid}: ${(r.stderr || r.error?.message || `exit ${r.status}`).split('\n')[0]}`);
    return lines;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/**
 * The agent program, its package folder and its #! interpreter must be out of the agent's
 * reach: not inside a write grant (a change would be committed and widen the next
 * session's implicit grants) and not writable by the agent's uid on the host. The
 * interpreter must be a regular executable file.
 */
export function programReach(model: Model, command: readonly string[], uid: number): string[] {
  const problems: string[] = [];
  const implied = model.grants.exec.filter((g) => g.implied !== undefined);
  const targets = [...(command[0] ? [{ path: command[0], what: 'the agent program' }] : []), ...implied.map((g) => ({ path: g.path, what: g.implied === 'package' ? 'its package folder' : g.implied === 'interpreter' ? 'its #! interpreter' : 'the program its #! line runs' }))];
  const writes = effectiveFs(model).fs.filter((g) => g.access === 'write');
  for (const t of targets) {
    const w = writes.find((g) => isWithin(t.path, g.path));
    if (w) problems.push(`${t.what} ${t.path} is inside ${w.source.text} (${w.source.pointer}): the agent could change what it runs next time; install it outside the agent's writable folders`);
  }
  for (const g of implied.filter((x) => x.implied !== 'package')) {
    try {
      const st = statSync(g.path);
      if (!st.isFile() || (st.mode & 0o111) === 0) problems.push(`${g.source.text}: ${g.path} is not an executable file`);
    } catch {
      problems.push(`${g.source.text}: ${g.path} does not exist`);
    }
  }
  const existing = targets.filter((t) => { try { statSync(t.path); return true; } catch { return false; } });
  const lacks = lacking(existing.map((t) => ({ grant: t.what, path: t.path, mode: 'w', what: 'grant', dir: false })), uid);
  existing.forEach((t, i) => {
    if (lacks[i] === '') problems.push(`${t.what} ${t.path} is writable by uid ${uid} (${describeOwner(t.path)}): the agent could change what it runs; fix: chown root ${t.path} && chmod go-w ${t.path}`);
  });
  return problems;
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
    let st: ReturnType<typeof openExact>;
    try {
      st = openExact(g.path);
    } catch {
      continue; // a symlink on the path: refused at launch with its own message (grants are opened exactly)
    }
    if (st) {
      closeSync(st.fd);
      // Sockets and anything but a file or folder: the launch decides (masks or refuses them).
      if (!st.stat.isDirectory() && !st.stat.isFile()) continue;
      dir = st.stat.isDirectory();
    } else {
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
