/**
 * Facts about processes and mounts, read from /proc: a process's identity (pid plus
 * its start time, so a reused pid is never taken for the process that was recorded),
 * and the mount points below a directory.
 */
import { readFileSync } from 'node:fs';

/** A process as recorded: its pid and its start time (/proc/PID/stat field 22, clock ticks since boot). */
export interface ProcessIdentity {
  pid: number;
  start: string;
}

/** The start time of `pid`, or undefined when there is no such process. */
export function processStart(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself hold ')' or spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 is rest[19].
  return rest[19];
}

/** The scheduler state of `pid` (/proc/PID/stat field 3: R, S, D, T, t, Z…), or undefined. */
export function processState(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** True when `pid` is stopped by a signal or a tracer (it will not go on by itself). */
export function isStopped(pid: number): boolean {
  const st = processState(pid);
  return st === 'T' || st === 't';
}

/** The identity of a live process, or undefined. */
export function identify(pid: number): ProcessIdentity | undefined {
  const start = processStart(pid);
  return start === undefined ? undefined : { pid, start };
}

/** True when some process has this pid (it may be one we may not signal). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when the recorded process is still the one running under that pid (not a zombie). */
export function isRunning(id: ProcessIdentity | null | undefined): boolean {
  if (!id) return false;
  if (processStart(id.pid) !== id.start) return false;
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${id.pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Sends a signal to the recorded process (or, with `group`, its process group) only if
 * the pid still belongs to it. Returns false when it is gone or the pid was reused.
 */
export function signalIdentity(id: ProcessIdentity | null | undefined, signal: NodeJS.Signals, group = false): boolean {
  if (!isRunning(id)) return false;
  try {
    process.kill(group ? -id!.pid : id!.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Decodes the octal escapes mountinfo uses for spaces, tabs, newlines and backslashes. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points at or below `dir` in this process's mount namespace, deepest first. */
export function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const point = unescapeMountPath(f[4]!);
    if (point === dir || point.startsWith(prefix)) out.push(point);
  }
  // Later mounts over earlier ones at the same place come off first, as do deeper ones.
  return out.reverse().sort((a, b) => b.split('/').length - a.split('/').length);
}
