/**
 * The host side of the runtimes: what is at a path (the plans' `kind` fact), and the
 * mounts a session makes for a runtime outside the host's mount namespace (container, micro-VM): each writable grant's overlay, assembled on the host for the
 * engine to bind or share, and the way they all come off again, last first.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import type { Overlay, PathKind } from '../box/bwrap.js';

/** What is at a path on the host (following links), for the plans' `kind` fact. */
export function pathKind(p: string): PathKind {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'file';
  } catch {
    return 'missing';
  }
}

/** Mounts each overlay (the session runner made its directories; upper carries the grant's owner and mode); records every mount in `mounted`. */
export function mountOverlays(overlays: readonly Overlay[], mounted: string[]): void {
  for (const o of overlays) {
    execFileSync('mount', ['--bind', o.path, o.lower]);
    mounted.push(o.lower);
    execFileSync('mount', ['-t', 'overlay', 'agentbox', '-o', `lowerdir=${o.lower},upperdir=${o.upper},workdir=${o.work}`, o.merged]);
    mounted.push(o.merged);
    chmodSync(o.merged, statSync(o.path).mode & 0o7777);
  }
}

/** Unmounts what `mountOverlays` (and friends) recorded, last first; a busy mount is detached lazily. */
export function unmountAll(mounted: string[]): void {
  for (const m of mounted.splice(0).reverse()) {
    try {
      execFileSync('umount', [m], { stdio: 'ignore' });
    } catch {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    }
  }
}
