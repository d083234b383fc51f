/**
 * The container runtime: the agent in a Docker Engine container (dockerode), runc or
 * gVisor's runsc, built from box/container.ts; the session (proxy, governance, ttl,
 * quarantine as `docker pause`, revert, audit) is session/lifecycle.ts. The grants are
 * bound on the host from the fds the launcher opened (read-only), writable grants are
 * their layers; the container, its writable layer and every host mount are removed
 * when the session ends, and a reaper process does so if the launcher dies.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type Docker from 'dockerode';
import { AgentboxError } from '../../errors.js';
import type { Model } from '../../model/types.js';
import { denyDir, maskFile, reservedOverlaps } from '../../box/common.js';
import { buildContainerPlan, CONTAINER_RESERVED, ctlDir, SESSION_LABEL, type ContainerPlan } from '../../box/container.js';
import { BASE_IMAGE } from './image.js';
import { runSession, type Box, type LaunchOptions, type LaunchResult } from '../../session/lifecycle.js';
import { newSessionId } from '../../session/records.js';
import { prepareSession } from '../../session/prepare.js';
import { DEFAULT_DISK_BYTES, unmountBox } from '../../session/layers.js';
import { bindOpened, mountLayers, pathKind } from '../host-mounts.js';
import { packageRoot } from '../../host/files.js';
import { identify } from '../../host/proc.js';
import { demux, relayRaw } from './stream.js';
import type { ProcessEntry } from '../../session/evidence.js';

const STATX_COMPAT = posix.join(packageRoot(), 'dist', 'native', 'statx-compat.so');

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
function containerLimitHits(fullId: string): { pids: number; memory: number } {
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

export async function launchContainer(model: Model, opts: LaunchOptions & { isolation?: 'runc' | 'gvisor' }): Promise<LaunchResult | ContainerPlan> {
  const isolation = opts.isolation ?? model.runtime.isolation ?? 'runc';
  const image = model.agent.image ?? BASE_IMAGE;
  const docker = await dockerClient();
  const id = newSessionId(model.name);
  const uid = model.agent.uid;
  if (!opts.dryRun) {
    const gaps = await containerPreflight(docker, model, image, isolation);
    if (gaps.length > 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot build the ${isolation === 'gvisor' ? 'gVisor ' : ''}container for ${model.name} on this host; nothing was started`, { details: gaps });
  }
  const prep = prepareSession(model, { state: opts.state, id, root: true, uid, gid: uid, dryRun: opts.dryRun, log: opts.log, socketsReachable: true });
  // gVisor's gofer (Debian's 2022 runsc) cannot mount anything over a socket, and its
  // --host-uds=open (the proxy needs it) would let the agent connect to one: refuse.
  if (isolation === 'gvisor' && prep.socketMasks.length > 0) {
    prep.undo();
    throw new AgentboxError('CONTROL_UNAVAILABLE', `the grants hold unix sockets that gVisor cannot cover (a host service behind one would bypass the egress proxy); nothing was started`, {
      details: [...prep.socketMasks.slice(0, 10).map((s) => `socket ${s}`), 'grant narrower folders, grant a socket explicitly if the agent needs it, or use --isolation runc, which covers them'],
    });
  }
  const memfdGate = isolation === 'runc' && existsSync('/proc/sys/vm/memfd_noexec');
  const plan = buildContainerPlan(model, opts.command, {
    session: prep.paths,
    image,
    runtime: isolation === 'gvisor' ? 'runsc' : 'runc',
    uid,
    gid: uid,
    kind: pathKind,
    cwd: process.cwd(),
    term: process.env.TERM,
    grants: prep.grants,
    socketMasks: prep.socketMasks,
    tmpBytes: model.limits.diskBytes ?? prep.layers?.limitBytes ?? DEFAULT_DISK_BYTES,
    statxCompat: existsSync(STATX_COMPAT) ? STATX_COMPAT : undefined,
    memfdGate,
  });
  if (opts.dryRun) {
    prep.release();
    return plan;
  }

  // The container's cgroup goes when it exits: its limit counters are sampled while it runs.
  let hits = { pids: 0, memory: 0 };
  let sampler: NodeJS.Timeout | undefined;
  let container: Docker.Container | undefined;
  let fullId = '';
  const sample = () => {
    if (!fullId) return;
    const h = containerLimitHits(fullId);
    hits = { pids: Math.max(hits.pids, h.pids), memory: Math.max(hits.memory, h.memory) };
  };
  let imageFacts: Record<string, unknown> = { image };
  try {
    const info = await docker.getImage(image).inspect();
    imageFacts = { image, imageId: info.Id, ...(info.RepoDigests?.length ? { imageDigests: info.RepoDigests } : {}) };
  } catch {
    // preflight found it; a race only loses the digest in the audit entry
  }
  const box: Box = {
    runtime: 'container',
    isolation,
    id,
    paths: prep.paths,
    layers: prep.layers,
    proxySocket: plan.proxySocket,
    uid,
    gid: uid,
    cgroupDirs: [],
    controls: plan.controls,
    facts: imageFacts,
    needsReaper: true,
    start: async () => {
      try {
        // The grants as opened, bound read-only; the writable ones' layers.
        mountLayers(model, opts.command, plan.layers, (i) => prep.opened[prep.grants.findIndex((g) => g.layer === i)]!);
        for (const b of plan.binds) bindOpened(prep.opened[b.grant]!, b.at, true);
      } finally {
        prep.release();
      }
      if (plan.proxySocket) mkdirSync(posix.dirname(plan.proxySocket), { recursive: true });
      mkdirSync(denyDir(prep.paths), { mode: 0o000 });
      chmodSync(denyDir(prep.paths), 0o000);
      closeSync(openSync(maskFile(prep.paths), 'w', 0o000));
      if (memfdGate) mkdirSync(ctlDir(prep.paths), { recursive: true, mode: 0o755 });
      const c = await docker.createContainer({ ...plan.create, name: id } as unknown as Docker.ContainerCreateOptions);
      container = c;
      fullId = c.id;
      const stream = (await c.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as unknown as NodeJS.ReadWriteStream & import('node:stream').Duplex;
      const ended = plan.create.Tty ? relayRaw(stream, process.stdout) : demux(stream, { stdout: process.stdout, stderr: process.stderr });
      if (process.stdin.isTTY || !process.stdin.readableEnded) process.stdin.pipe(stream);
      // 'next-exit': the default (not-running) answers at once for a container not started yet.
      const waited = c.wait({ condition: 'next-exit' });
      try {
        await c.start();
      } catch (e) {
        const msg = (e as Error).message;
        opts.log(`agentbox: cannot start the container: ${msg.split('\n')[0]}`);
        return { pid: 0, identity: null, container: fullId, exited: Promise.resolve(/not found|no such file/i.test(msg) ? 127 : /permission denied|not executable/i.test(msg) ? 126 : 125) };
      }
      const info = await c.inspect();
      if (memfdGate) {
        // vm.memfd_noexec=2 in the container's pid namespace, then the agent may start.
        execFileSync('nsenter', ['--target', String(info.State.Pid), '--pid', '--', '/bin/sh', '-c', 'echo 2 > /proc/sys/vm/memfd_noexec'], { stdio: ['ignore', 'ignore', 'pipe'] });
        closeSync(openSync(posix.join(ctlDir(prep.paths), 'go'), 'w', 0o644));
      }
      // Where the container's processes are (evidence lists them from here).
      box.cgroupDirs.push(`/sys/fs/cgroup/pids/docker/${fullId}`);
      sampler = setInterval(sample, 100);
      const exited = (async () => {
        const r = (await waited) as { StatusCode: number };
        clearInterval(sampler);
        // Output still in flight when the container exits: wait for the stream's end, at most 500 ms.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([ended, new Promise((x) => (timer = setTimeout(x, 500)))]);
        clearTimeout(timer);
        process.stdin.unpipe(stream);
        return r.StatusCode;
      })();
      return { pid: info.State.Pid, identity: identify(info.State.Pid) ?? null, container: fullId, exited };
    },
    signal: async (sig) => {
      if (!container || sig === 'SIGCONT') return;
      try {
        await container.kill({ signal: sig });
      } catch {
        // already stopped
      }
    },
    freeze: async () => {
      await container?.pause();
      return `docker pause${plan.create.HostConfig.Runtime === 'runsc' ? ' (gVisor sandbox)' : ''}: every process of the container is frozen`;
    },
    thaw: async () => {
      try {
        const st = await container?.inspect();
        if (st?.State.Paused) await container?.unpause();
      } catch {
        // gone
      }
    },
    limitHits: () => {
      sample();
      return hits;
    },
    evidence: () => ({
      processes: () => engineProcesses(docker, fullId, isolation),
      ...(isolation === 'gvisor' ? { connectionsUnavailable: "under gVisor the sandbox's sockets live in its own network stack (the Sentry), not in any host table; egress.json lists what it had open through the proxy" } : {}),
    }),
    cleanup: async () => {
      clearInterval(sampler);
      // The container and its writable layer go; then every host mount of the session.
      await removeSessionContainer(docker, id, fullId || null);
      unmountBox(prep.paths);
    },
  };
  return runSession(model, opts, box);
}

