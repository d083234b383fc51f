/**
 * The real ProgramResolver: PATH lookup (host/which.ts), realpath, and the `#!` line
 * (first 256 bytes). Read-only; it runs as whoever loads the manifest.
 */
import { closeSync, constants, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { findIn } from './which.js';
import type { ProgramResolver } from '../manifest/program.js';

export const hostPrograms: ProgramResolver = {
  find: findIn,
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
