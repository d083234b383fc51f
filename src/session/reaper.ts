/**
 * The reaper: a small agentbox process, started detached for a session whose box would
 * outlive its launcher (the container runtime's container), that finishes the session
 * if the launcher dies. It holds the read end of a pipe whose write end only the
 * launcher has: end of file means the launcher is gone (kill -9 included), at once and
 * without polling. It also ends a box still running 10 s past its ttl (a hung launcher).
 */
import { spawn } from 'node:child_process';
import { posix } from 'node:path';
import type { Socket } from 'node:net';
import { packageRoot } from '../host/files.js';
import { EnvVar } from '../env.js';
import { identify, type ProcessIdentity } from '../host/proc.js';

/** The hidden command the reaper runs as. */
export const REAPER_COMMAND = '__reap';

export function spawnReaper(state: string, session: string): ProcessIdentity | null {
  const c = spawn(process.execPath, [posix.join(packageRoot(), 'bin', 'agentbox.js'), REAPER_COMMAND, session], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    env: { ...process.env, [EnvVar.stateDir]: state },
  });
  c.on('error', () => undefined);
  // The launcher never writes: the pipe only tells the reaper when the launcher is gone.
  (c.stdin as unknown as Socket).unref?.();
  c.unref();
  return c.pid ? identify(c.pid) ?? { pid: c.pid, start: '' } : null;
}

/** Resolves when the launcher's end of stdin closes. */
export function launcherGone(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.on('data', () => undefined);
    process.stdin.on('end', () => resolve());
    process.stdin.on('close', () => resolve());
    process.stdin.on('error', () => resolve());
    process.stdin.resume();
  });
}
