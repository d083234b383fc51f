/**
 * The real PathResolver: walks a path component by component with lstat/readlink,
 * refusing any symlink that points outside the directory containing it.
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';
import type { PathResolver, ResolveResult } from '../model/paths.js';
import { isWithin } from '../model/paths.js';

const MAX_LINKS = 40;

export const hostResolver: PathResolver = {
  resolve(path: string): ResolveResult {
    let real = '/';
    const pending = path.split('/').filter((s) => s !== '');
    let hops = 0;
    while (pending.length > 0) {
      const seg = pending.shift()!;
      const candidate = posix.join(real, seg);
      let isLink = false;
      try {
        isLink = lstatSync(candidate).isSymbolicLink();
      } catch {
        // Missing from here on: keep the rest as written.
        return { ok: true, real: posix.join(candidate, ...pending) };
      }
      if (!isLink) {
        real = candidate;
        continue;
      }
      if (++hops > MAX_LINKS) return { ok: false, link: candidate, target: '(too many links)', container: real };
      let target: string;
      try {
        target = readlinkSync(candidate);
      } catch {
        // The link went away between lstat and readlink: resolve the path again as it is now.
        pending.unshift(seg);
        continue;
      }
      const resolvedTarget = posix.resolve(real, target);
      if (!isWithin(resolvedTarget, real)) return { ok: false, link: candidate, target, container: real };
      // Continue resolving the target's own components from the root.
      pending.unshift(...resolvedTarget.split('/').filter((s) => s !== ''));
      real = '/';
    }
    return { ok: true, real };
  },
};
