/**
 * Session limits through cgroups: v1 controllers (memory, pids, cpu) where mounted,
 * v2 where the unified hierarchy has the controller. A limit the host cannot enforce
 * is reported so the launcher can fail closed (exit 4).
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmdirSync, writeFileSync, writeSync, accessSync, constants } from 'node:fs';
import { join } from 'node:path';

export interface Limits {
  memoryBytes: number | undefined;
  pids: number | undefined;
  cpus: number | undefined;
}

export interface SessionCgroups {
  /** cgroup.procs files the session's first process writes itself into. */
  procs: string[];
  /** pids of every process in the session, for kill and freeze. */
  members(): number[];
  /** Limit hits counted by the kernel (pids refused forks, memory OOM events). */
  hits(): { pids: number; memory: number };
  /** Freezes every process of the session (cgroup v1 freezer); false when there is no freezer. */
  freeze(): boolean;
  thaw(): void;
  /** Removes the session's cgroup directories now (those still holding processes stay). */
  remove(): void;
  /**
   * Waits (at most `ms`) for every process to leave, ending stragglers with `kill`, then
   * removes the directories. A directory that still cannot go is reported.
   */
  removeWhenEmpty(kill: () => void, ms?: number): Promise<string[]>;
}

const V1 = '/sys/fs/cgroup';

/** The session's freezer cgroup among its cgroup directories (v1 freezer, or a v2 directory with cgroup.freeze). */
export function freezerOf(dirs: readonly string[]): string | undefined {
  return dirs.find((d) => d.startsWith(join(V1, 'freezer') + '/') || existsSync(join(d, 'cgroup.freeze')));
}

/**
 * Freezes every process in a cgroup through the kernel and waits (at most 2 s) until the
 * kernel says every one is frozen: v1 `freezer.state` FROZEN, or v2 `cgroup.freeze` with
 * `frozen 1` in cgroup.events. A process forking meanwhile is frozen with its children.
 */
function readText(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

/** Writes a cgroup control file, never through a symlink at its name (cgroupfs files are written in place). */
export function writeControl(path: string, value: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  try {
    writeSync(fd, value);
  } finally {
    closeSync(fd);
  }
}

export function freezeCgroup(dir: string): boolean {
  const v2 = existsSync(join(dir, 'cgroup.freeze'));
  const done = () => (v2 ? /^frozen 1$/m.test(readText(join(dir, 'cgroup.events'))) : readText(join(dir, 'freezer.state')).trim() === 'FROZEN');
  writeControl(join(dir, v2 ? 'cgroup.freeze' : 'freezer.state'), v2 ? '1' : 'FROZEN');
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 4000 && !done(); i++) Atomics.wait(wait, 0, 0, i < 100 ? 0.2 : 1);
  return done();
}

export function thawCgroup(dir: string): void {
  if (existsSync(join(dir, 'cgroup.freeze'))) writeControl(join(dir, 'cgroup.freeze'), '0');
  else writeControl(join(dir, 'freezer.state'), 'THAWED');
}

/** True when this process may write `path` (a cgroup folder or control file; false on a read-only view of it). */
export function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Which requested limits this host cannot enforce, with why. */
export function unenforceable(l: Limits): string[] {
  const out: string[] = [];
  const need: [keyof Limits, string][] = [['memoryBytes', 'memory'], ['pids', 'pids'], ['cpus', 'cpu']];
  for (const [key, ctl] of need) {
    if (l[key] === undefined) continue;
    const dir = join(V1, ctl);
    if (!existsSync(join(dir, 'cgroup.procs'))) out.push(`${ctl}: no cgroup v1 ${ctl} controller mounted at ${dir}`);
    else if (!writable(dir)) out.push(`${ctl}: ${dir} is not writable by this user (run as root)`);
  }
  return out;
}

function writeFileSafe(p: string, v: string): void {
  try {
    writeFileSync(p, v);
  } catch {
    // gone
  }
}

/** Removes cgroup directories left by a session whose launcher died (empty ones only). */
export function removeCgroupDirs(dirs: readonly string[]): string[] {
  const left: string[] = [];
  for (const d of dirs) {
    writeFileSafe(join(d, 'freezer.state'), 'THAWED');
    try {
      rmdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(d);
    }
  }
  return left;
}

export function createCgroups(session: string, l: Limits): SessionCgroups {
  const dirs: { ctl: string; dir: string }[] = [];
  const make = (ctl: string, files: Record<string, string>) => {
    const dir = join(V1, ctl, 'agentbox', session);
    mkdirSync(dir, { recursive: true });
    for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v);
    dirs.push({ ctl, dir });
  };
  // pids is always created when available: kill and ps need the member list.
  if (l.pids !== undefined || (existsSync(join(V1, 'pids', 'cgroup.procs')) && writable(join(V1, 'pids')))) make('pids', l.pids !== undefined ? { 'pids.max': String(l.pids) } : {});
  // The freezer is what quarantine uses: created whenever it is available.
  if (existsSync(join(V1, 'freezer', 'cgroup.procs')) && writable(join(V1, 'freezer'))) make('freezer', {});
  if (l.memoryBytes !== undefined) make('memory', { 'memory.limit_in_bytes': String(l.memoryBytes) });
  if (l.cpus !== undefined) make('cpu', { 'cpu.cfs_period_us': '100000', 'cpu.cfs_quota_us': String(Math.max(1000, Math.round(l.cpus * 100000))) });
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    procs: dirs.map((d) => join(d.dir, 'cgroup.procs')),
    members() {
      const d = dirs.find((x) => x.ctl === 'pids') ?? dirs[0];
      return d ? read(join(d.dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number) : [];
    },
    freeze() {
      const f = dirs.find((x) => x.ctl === 'freezer');
      return f ? freezeCgroup(f.dir) : false;
    },
    thaw() {
      const f = dirs.find((x) => x.ctl === 'freezer');
      if (f) thawCgroup(f.dir);
    },
    hits() {
      const p = dirs.find((x) => x.ctl === 'pids');
      const m = dirs.find((x) => x.ctl === 'memory');
      return {
        pids: p ? Number(/max (\d+)/.exec(read(join(p.dir, 'pids.events')))?.[1] ?? 0) : 0,
        memory: m ? Number(read(join(m.dir, 'memory.failcnt')).trim() || 0) : 0,
      };
    },
    remove() {
      for (const d of dirs) {
        try {
          rmdirSync(d.dir);
        } catch {
          // still has members (they are being killed); left for the next cleanup
        }
      }
    },
    async removeWhenEmpty(kill, ms = 3000) {
      const f = dirs.find((x) => x.ctl === 'freezer');
      if (f) writeFileSafe(join(f.dir, 'freezer.state'), 'THAWED');
      const deadline = Date.now() + ms;
      const empty = () => dirs.every((d) => read(join(d.dir, 'cgroup.procs')).trim() === '');
      while (!empty() && Date.now() < deadline) {
        kill();
        await new Promise((r) => setTimeout(r, 20));
      }
      const left: string[] = [];
      for (const d of dirs) {
        try {
          rmdirSync(d.dir);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(d.dir);
        }
      }
      return left;
    },
  };
}
