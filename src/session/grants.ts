/**
 * The granted paths as the box will see them, opened once before anything is bound:
 *
 * - each grant is opened component by component from `/` with O_PATH|O_NOFOLLOW (each
 *   step relative to the previous fd, through /proc/self/fd), so a symlink swapped in
 *   anywhere on its path fails the launch instead of redirecting it; the runtimes bind
 *   the opened fd, never the path string again;
 * - an ancestor the agent's uid could rename entries in is named, so an administrator
 *   can move the grant somewhere only trusted accounts can write;
 * - unix sockets inside the grants are found (a bounded walk), so the runtimes can
 *   cover them: a host socket reached through a bind mount bypasses the egress proxy.
 */
import { closeSync, constants, fstatSync, openSync, readdirSync } from 'node:fs';
import { posix } from 'node:path';
import { AgentboxError } from '../errors.js';
import type { FsGrant } from '../model/types.js';

export { O_PATH, fdPath, openExact } from '../host/open-exact.js';
import { O_PATH, fdPath, openExact } from '../host/open-exact.js';

export interface OpenedGrant {
  grant: FsGrant;
  /** An O_PATH fd of the granted file or directory; close with closeGrants. */
  fd: number;
  /** A socket is reachable only when a grant names it exactly; it is bound as it is. */
  kind: 'dir' | 'file' | 'socket';
  dev: number;
  ino: number;
  uid: number;
  gid: number;
  mode: number;
}


/** Opens every grant that exists; a missing one is left out (nothing to bind). */
export function openGrants(grants: readonly FsGrant[]): OpenedGrant[] {
  const out: OpenedGrant[] = [];
  try {
    for (const g of grants) {
      const o = openExact(g.path);
      if (!o) continue;
      if (!o.stat.isDirectory() && !o.stat.isFile() && !o.stat.isSocket()) {
        closeSync(o.fd);
        throw new AgentboxError('CONTROL_UNAVAILABLE', `grant ${g.source.text} (${g.source.pointer}) is neither a file, a directory nor a socket; nothing was started`);
      }
      out.push({ grant: g, fd: o.fd, kind: o.stat.isDirectory() ? 'dir' : o.stat.isSocket() ? 'socket' : 'file', dev: o.stat.dev, ino: o.stat.ino, uid: o.stat.uid, gid: o.stat.gid, mode: o.stat.mode & 0o7777 });
    }
    return out;
  } catch (e) {
    closeGrants(out);
    throw e;
  }
}

export function closeGrants(opened: readonly OpenedGrant[]): void {
  for (const o of opened) {
    try {
      closeSync(o.fd);
    } catch {
      // already closed
    }
  }
}

/** May `uid` (no supplementary groups) rename or replace entries in a directory with these attributes? */
export function canReplaceIn(dir: { uid: number; gid: number; mode: number }, child: { uid: number } | undefined, uid: number, gid: number): boolean {
  if (uid === 0) return true;
  const w = dir.uid === uid ? dir.mode & 0o200 : dir.gid === gid ? dir.mode & 0o020 : dir.mode & 0o002;
  const x = dir.uid === uid ? dir.mode & 0o100 : dir.gid === gid ? dir.mode & 0o010 : dir.mode & 0o001;
  if (!w || !x) return false;
  // Sticky (/tmp): only the owner of the entry or of the directory may rename it.
  if (dir.mode & 0o1000) return dir.uid === uid || child?.uid === uid;
  return true;
}

/**
 * The first directory on `path`'s way (from `/`) in which `uid` could rename or replace
 * the next component: another process of that account could swap the grant there.
 */
export function swappableAncestor(path: string, uid: number, gid: number, stat: (p: string) => { uid: number; gid: number; mode: number } | undefined): string | undefined {
  const parts = path.split('/').filter(Boolean);
  for (let i = 0; i < parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const child = `/${parts.slice(0, i + 1).join('/')}`;
    const d = stat(dir);
    if (d && canReplaceIn(d, stat(child), uid, gid)) return dir;
  }
  return undefined;
}

export interface SocketScan {
  sockets: string[];
  /** False when the walk stopped at `limit` entries. */
  complete: boolean;
  scanned: number;
}

/**
 * Unix sockets below the granted directories (by fd, never following links, skipping
 * what `skip` says is masked anyway), at most `limit` entries in all. A folder the agent's
 * uid cannot enter is not walked: it is not the agent's owner's and gives group and others
 * nothing (with an ACL, the group bits are its mask, so 0 there holds for every named
 * entry too), so nothing below it is reachable, and the box could not mask it anyway.
 */
export function findSockets(opened: readonly OpenedGrant[], skip: (path: string) => boolean, limit: number, uid?: number): SocketScan {
  const sockets: string[] = [];
  let scanned = 0;
  const walk = (dirFd: number, path: string): boolean => {
    let entries;
    try {
      entries = readdirSync(fdPath(dirFd), { withFileTypes: true });
    } catch {
      return true; // unreadable by root too (a FUSE mount): nothing the box could reach either
    }
    for (const e of entries) {
      if (++scanned > limit) return false;
      const child = posix.join(path, e.name);
      if (skip(child)) continue;
      if (e.isSocket()) sockets.push(child);
      else if (e.isDirectory()) {
        let fd: number;
        try {
          fd = openSync(`${fdPath(dirFd)}/${e.name}`, O_PATH | constants.O_NOFOLLOW | constants.O_DIRECTORY);
        } catch {
          continue;
        }
        try {
          const st = fstatSync(fd);
          if (uid !== undefined && uid !== 0 && st.uid !== uid && (st.mode & 0o077) === 0) continue;
          if (!walk(fd, child)) return false;
        } finally {
          closeSync(fd);
        }
      }
    }
    return true;
  };
  for (const o of opened) {
    if (o.kind !== 'dir') continue;
    if (!walk(o.fd, o.grant.path)) return { sockets, complete: false, scanned };
  }
  return { sockets, complete: true, scanned };
}
