/**
 * The Docker Engine as the container runtime sees it: the client, what stops a launch
 * here (exit 4), a container's limit counters, its process list (under gVisor, from
 * runsc itself), and the removal of a session's container.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type Docker from 'dockerode';
import type { Model } from '../../model/types.js';
import { reservedOverlaps } from '../../box/common.js';
import { CONTAINER_RESERVED, SESSION_LABEL } from '../../box/container.js';
import type { ProcessEntry } from '../../session/evidence.js';
import { BASE_IMAGE } from './image.js';

/** A client for the Engine at DOCKER_HOST (default /var/run/docker.sock). */
export async function dockerClient(): Promise<Docker> {
  const { default: Dockerode } = await import('dockerode');
  return new Dockerode();
}

/** What stops the container runtime here, or nothing: exit 4 names every gap. */
export async function containerPreflight(docker: Docker, model: Model, image: string, isolation: 'runc' | 'gvisor'): Promise<string[]> {
  const gaps: string[] = [];
  if (process.getuid?.() !== 0) gaps.push('the container runtime needs root (the Docker Engine and the session overlays)');
  let info: { Runtimes?: Record<string, unknown> } | undefined;
  try {
    info = (await docker.info()) as { Runtimes?: Record<string, unknown> };
  } catch (e) {
    gaps.push(`the Docker Engine does not answer at ${process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'} (${(e as Error).message.split('\n')[0]}): start dockerd, or set DOCKER_HOST`);
    return gaps;
  }
  try {
    await docker.getImage(image).inspect();
  } catch {
    gaps.push(`image ${image} is not in the Engine: ${image === BASE_IMAGE ? 'agentbox image build' : `load it, or agentbox image build --tag ${image}`}`);
  }
  if (isolation === 'gvisor' && !info?.Runtimes?.runsc) {
    gaps.push('runtime.isolation is gvisor but the Engine has no runsc runtime: apt-get install runsc, and add it to daemon.json "runtimes" with runtimeArgs ["--network=none", "--oci-seccomp"]');
  }
  gaps.push(...reservedOverlaps(model, CONTAINER_RESERVED, ['/tmp', '/var/tmp'], "which the container's image or runtime provides"));
  return gaps;
}

/** pids.events / memory.failcnt of the container's cgroup v1 (cgroupfs driver), when readable. */
export function containerLimitHits(fullId: string): { pids: number; memory: number } {
  const read = (p: string, re: RegExp) => {
    try {
      const m = re.exec(readFileSync(p, 'utf8'));
      return m ? Number(m[1]) : 0;
    } catch {
      return 0;
    }
  };
  return {
    pids: read(`/sys/fs/cgroup/pids/docker/${fullId}/pids.events`, /max (\d+)/),
    memory: read(`/sys/fs/cgroup/memory/docker/${fullId}/memory.failcnt`, /(\d+)/),
  };
}

/** Where runsc keeps a container's state: under the Engine's exec root (found from running dockerd processes). */
function runscRoots(): string[] {
  const roots = new Set(['/run/docker/runtime-runc/moby', '/var/run/docker/runtime-runc/moby']);
  try {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let argv: string[];
      try {
        argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      } catch {
        continue;
      }
      if (!argv[0]?.endsWith('dockerd')) continue;
      const i = argv.findIndex((a) => a === '--exec-root' || a.startsWith('--exec-root='));
      if (i >= 0) roots.add(posix.join(argv[i]!.includes('=') ? argv[i]!.split('=')[1]! : argv[i + 1]!, 'runtime-runc', 'moby'));
    }
  } catch {
    // no /proc
  }
  return [...roots];
}

/** gVisor's own process table for a sandbox (`runsc ps`, which answers while it is paused). */
async function runscProcesses(id: string): Promise<{ entries: ProcessEntry[]; source: string } | { unavailable: string }> {
  const root = runscRoots().find((r) => existsSync(r) && readdirSync(r).some((f) => f.includes(id)));
  if (!root) return { unavailable: `runsc's state for container ${id.slice(0, 12)} was not found under the Engine's exec root` };
  const { execa } = await import('execa');
  const r = await execa('runsc', ['--root', root, 'ps', id], { reject: false, timeout: 5000 });
  if (r.exitCode !== 0) return { unavailable: `runsc ps failed: ${String(r.stderr).split('\n')[0]}` };
  const lines = String(r.stdout).trim().split('\n').slice(1);
  const entries = lines.map((l) => {
    const f = l.trim().split(/\s+/);
    return { pid: Number(f[1]), ppid: Number(f[2]), user: f[0] ?? '', state: '', command: f.slice(7) };
  });
  return { entries, source: 'runsc ps (the gVisor sandbox\'s own process table)' };
}

/** The processes the Engine reports for a container (under gVisor: the sandbox's own, from runsc). */
export async function engineProcesses(docker: Docker, id: string, isolation: 'runc' | 'gvisor' = 'runc'): Promise<{ entries: ProcessEntry[]; source: string } | { unavailable: string }> {
  // The Engine's `top` maps runsc's sandbox pids onto host pids, which names host
  // processes that are not the agent's: ask gVisor itself.
  if (isolation === 'gvisor') return runscProcesses(id);
  try {
    const top = (await docker.getContainer(id).top({ ps_args: '-eo pid,ppid,user,stat,args' })) as { Titles: string[]; Processes: string[][] };
    const col = (name: string) => top.Titles.findIndex((t) => t.toUpperCase() === name);
    const [pid, ppid, user, stat, cmd] = ['PID', 'PPID', 'USER', 'STAT', 'CMD'].map(col);
    const entries = top.Processes.map((p) => ({
      pid: Number(p[pid!] ?? 0),
      ppid: ppid! >= 0 ? Number(p[ppid!]) : null,
      user: user! >= 0 ? String(p[user!]) : '',
      state: stat! >= 0 ? String(p[stat!]) : '',
      command: String(p[cmd! >= 0 ? cmd! : p.length - 1] ?? '').split(' ').filter(Boolean),
    }));
    return { entries, source: 'the Docker Engine (container top)' };
  } catch (e) {
    return { unavailable: `the Engine could not list the container's processes: ${(e as Error).message.split('\n')[0]}` };
  }
}

/** Removes a session's container (found by id or by its session label); true if one was there. */
export async function removeSessionContainer(docker: Docker, session: string, id: string | null): Promise<boolean> {
  const ids = new Set<string>(id ? [id] : []);
  try {
    for (const c of await docker.listContainers({ all: true, filters: { label: [`${SESSION_LABEL}=${session}`] } })) ids.add(c.Id);
  } catch {
    // the Engine is down: nothing to remove through it
  }
  let removed = false;
  for (const c of ids) {
    try {
      // A paused (quarantined) container cannot be removed under gVisor: thaw it first.
      await docker.getContainer(c).unpause().catch(() => undefined);
      await docker.getContainer(c).remove({ force: true, v: true });
      removed = true;
    } catch {
      // already gone
    }
  }
  return removed;
}

