/**
 * The kernel's view of a box, through two small native helpers run as root:
 * `file-watch` (fanotify on the box's own grant mounts: opens, executions, writes) and
 * `audit-read` (the audit subsystem's read-only multicast group: Landlock and seccomp
 * denials, and the box uid's failed file calls through one keyed exit rule). Each
 * prints one line per event; this module starts them, waits until they are ready and
 * hands the lines on. Parsing is session/kernel-records.ts; deciding what a line means
 * is session/observe.ts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { packageRoot } from './files.js';

export const FILE_WATCH = () => join(packageRoot(), 'dist', 'native', 'file-watch');
export const AUDIT_READ = () => join(packageRoot(), 'dist', 'native', 'audit-read');

/** The audit record types agentbox reads: SYSCALL, PATH, CWD, EOE, SECCOMP, LANDLOCK_ACCESS, LANDLOCK_DOMAIN. */
export const AUDIT_TYPES = [1300, 1302, 1307, 1320, 1326, 1423, 1424] as const;

export interface Watcher {
  /** Stops the helper (it removes what it added to the kernel) and waits for it. */
  stop(): Promise<void>;
  /** Resolves once every event the kernel queued before now has been handed on (at most `ms`). */
  fence(ms?: number): Promise<void>;
  /** The helper's own stop, when it was not asked for (its last stderr line). */
  failed(): string | undefined;
}

/** Starts `argv`, resolves once it printed `ready` (with the rest of that line), rejects with its stderr otherwise. */
function startHelper(argv: string[], onLine: (line: string) => void, timeoutMs = 10_000): Promise<{ watcher: Watcher; ready: string }> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      reject(e);
      return;
    }
    let stderr = '';
    let ready = false;
    let stopping = false;
    let failure: string | undefined;
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-2000);
    });
    const exited = new Promise<void>((r) => child.on('close', () => r()));
    const timer = setTimeout(() => {
      if (!ready) {
        child.kill('SIGKILL');
        reject(new Error(`${argv[0]} did not start within ${timeoutMs / 1000}s`));
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      if (!ready) reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const why = stderr.trim().split('\n').pop() || `exited ${code ?? signal}`;
      if (!ready) reject(new Error(why));
      else if (!stopping) failure = why;
    });
    const fences: (() => void)[] = [];
    const rl = createInterface({ input: child.stdout!, crlfDelay: Infinity });
    rl.on('line', (line) => {
      if (ready && line === 'fence') {
        fences.shift()?.();
        return;
      }
      if (!ready) {
        if (!line.startsWith('ready')) return;
        ready = true;
        clearTimeout(timer);
        resolve({
          ready: line.slice(5).trim(),
          watcher: {
            stop: async () => {
              stopping = true;
              child.stdin!.end();
              const kill = setTimeout(() => child.kill('SIGTERM'), 2000);
              await exited;
              clearTimeout(kill);
            },
            failed: () => failure,
            fence: (ms = 1000) =>
              new Promise<void>((resolve) => {
                if (child.exitCode !== null || child.signalCode !== null) return resolve();
                const t = setTimeout(() => {
                  const i = fences.indexOf(done);
                  if (i >= 0) fences.splice(i, 1);
                  resolve();
                }, ms);
                const done = () => {
                  clearTimeout(t);
                  resolve();
                };
                fences.push(done);
                child.stdin!.write('f');
              }),
          },
        });
        return;
      }
      onLine(line);
    });
  });
}

/**
 * Marks the mounts of `paths` as process `pid` sees them and calls `onLine` with each
 * event line (`KIND\tPID\tSIZE\tPATH`). `exclude`: pids whose events are dropped.
 */
export async function startFileWatch(pid: number, paths: readonly string[], exclude: readonly number[], onLine: (line: string) => void): Promise<Watcher> {
  const argv = [FILE_WATCH(), '--pid', String(pid), ...exclude.flatMap((p) => ['--exclude', String(p)]), ...paths];
  return (await startHelper(argv, onLine)).watcher;
}

/**
 * Reads the audit records of AUDIT_TYPES (turning the kernel's auditing on if it is
 * off) and, with `uid`, adds the exit rule for that uid's failed file calls, keyed
 * `agentbox:LAUNCHER_PID:SESSION`, removed again when the reader stops.
 */
export async function startAuditReader(opts: { uid: number; session: string }, onLine: (line: string) => void): Promise<{ watcher: Watcher; enabled: number }> {
  const key = `agentbox:${process.pid}:${opts.session}`.slice(0, 200);
  const argv = [AUDIT_READ(), '--enable', '--uid', String(opts.uid), '--key', key, ...AUDIT_TYPES.map(String)];
  const { watcher, ready } = await startHelper(argv, onLine);
  return { watcher, enabled: Number(/enabled=(-?\d+)/.exec(ready)?.[1] ?? -1) };
}

export interface KernelObservation {
  /** Both helpers are built and this process is root. */
  available: boolean;
  /** Why not, when not. */
  missing: string[];
}

/** Whether the box's file activity and denials can be observed here (doctor, launch). */
export function observationAvailable(): KernelObservation {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('agentbox is not running as root (fanotify and the audit socket need CAP_SYS_ADMIN and CAP_AUDIT_READ)');
  if (!existsSync(FILE_WATCH())) missing.push(`the file-watch helper is not built (${FILE_WATCH()}; npm run build)`);
  if (!existsSync(AUDIT_READ())) missing.push(`the audit-read helper is not built (${AUDIT_READ()}; npm run build)`);
  return { available: missing.length === 0, missing };
}

/** `audit-read --status`: the kernel's audit state (enabled 0/1/2, -1 unknown) and whether records can be read. */
export function auditStatus(): { enabled: number; readable: boolean; detail: string } {
  if (!existsSync(AUDIT_READ())) return { enabled: -1, readable: false, detail: 'the audit-read helper is not built' };
  const r = spawnSync(AUDIT_READ(), ['--status'], { encoding: 'utf8', timeout: 5000 });
  const out = (r.stdout ?? '').trim();
  return { enabled: Number(/enabled=(-?\d+)/.exec(out)?.[1] ?? -1), readable: r.status === 0, detail: /readlog=(.*)/.exec(out)?.[1] ?? (r.error?.message ?? 'no answer') };
}

/** The actions the kernel logs for seccomp (kernel.seccomp.actions_logged), or undefined when unreadable. */
export function seccompActionsLogged(): string[] | undefined {
  try {
    return readFileSync('/proc/sys/kernel/seccomp/actions_logged', 'utf8').trim().split(/\s+/);
  } catch {
    return undefined;
  }
}

/** The pid namespace of `pid` (its /proc link text), or undefined when the process is gone. */
export function pidNamespace(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** The pids among `candidates` whose comm is `comm` (the box's landlock-exec, waiting on its hold). */
export function findByComm(candidates: readonly number[], comm: string): number[] {
  const out: number[] = [];
  for (const pid of candidates) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) out.push(pid);
    } catch {
      // gone
    }
  }
  return out;
}

/** The processes descended from `root` (for finding a box process when no cgroup lists them). */
export function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      // The comm field may hold spaces and parentheses: the ppid follows the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(n));
      children.set(ppid, list);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const p = todo.pop()!;
    for (const c of children.get(p) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}
