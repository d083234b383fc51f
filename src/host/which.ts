/**
 * Finds a program on PATH (plus the sbin directories) without starting a process.
 * Kept free of heavy imports: it is on the launch hot path.
 */
import { accessSync, constants, statSync } from 'node:fs';

/** The first `dir/name` that is an executable regular file, in the order of `dirs`. */
export function findIn(name: string, dirs: readonly string[]): string | undefined {
  for (const d of dirs) {
    if (!d) continue;
    const p = `${d === '/' ? '' : d}/${name}`;
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

export function whichSync(cmd: string): string | undefined {
  return findIn(cmd, [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin']);
}
