/**
 * Finds a program on PATH (plus the sbin directories) without starting a process.
 * Kept free of heavy imports: it is on the launch hot path.
 */
import { accessSync, constants } from 'node:fs';

export function whichSync(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = `${d}/${cmd}`;
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}
