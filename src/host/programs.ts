/**
 * The real ProgramResolver: PATH lookup with access(X_OK), realpath, and the `#!` line
 * (first 256 bytes). Read-only; it runs as whoever loads the manifest.
 */
import { accessSync, closeSync, constants, openSync, readSync, realpathSync, statSync } from 'node:fs';
import type { ProgramResolver } from '../manifest/program.js';

export const hostPrograms: ProgramResolver = {
  find(name, dirs) {
    for (const d of dirs) {
      const p = `${d === '/' ? '' : d}/${name}`;
      try {
        accessSync(p, constants.X_OK);
        if (statSync(p).isFile()) return p;
      } catch {
        // keep looking
      }
    }
    return undefined;
  },
  real(path) {
    try {
      return realpathSync(path);
    } catch {
      return undefined;
    }
  },
  shebang(path) {
    let fd: number | undefined;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      if (!statSync(path).isFile()) return undefined;
      const buf = Buffer.alloc(256);
      const n = readSync(fd, buf, 0, buf.length, 0);
      const text = buf.subarray(0, n).toString('latin1');
      if (!text.startsWith('#!')) return undefined;
      const line = text.slice(2).split('\n')[0]!.trim();
      const m = /^(\S+)(?:\s+(.*))?$/.exec(line);
      if (!m) return undefined;
      return [m[1]!, m[2]?.trim() || undefined];
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  },
};
