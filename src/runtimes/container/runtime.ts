/**
 * The container runtime: the agent in a Docker Engine container (dockerode), runc or
 * gVisor's runsc, built from box/container.ts; the session (proxy, governance, ttl,
 * quarantine as `docker pause`, revert, audit) is session/lifecycle.ts. The grants are
 * bound on the host from the fds the launcher opened (read-only), writable grants are
 * their layers; the container, its writable layer and every host mount are removed
 * when the session ends, and a reaper process does so if the launcher dies.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type Docker from 'dockerode';
import { AgentboxError } from '../../errors.js';
import type { Model } from '../../model/types.js';
import { denyDir, reservedOverlaps } from '../../box/common.js';
import { buildContainerPlan, CONTAINER_RESERVED, ctlDir, SESSION_LABEL, type ContainerPlan } from '../../box/container.js';
import { BASE_IMAGE } from './image.js';
import { runSession, type Box, type LaunchOptions, type LaunchResult } from '../../session/lifecycle.js';
import { newSessionId } from '../../session/records.js';
import { prepareSession } from '../../session/prepare.js';
import { DEFAULT_DISK_BYTES, unmountUnder } from '../../session/layers.js';
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

/** The processes the Engine reports for a container (under gVisor: the sandbox's own, from runsc). */
export async function engineProcesses(docker: Docker, id: string): Promise<{ entries: ProcessEntry[]; source: string } | { unavailable: string }> {
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
      processes: () => engineProcesses(docker, fullId),
      ...(isolation === 'gvisor' ? { connectionsUnavailable: "under gVisor the sandbox's sockets live in its own network stack (the Sentry), not in any host table; egress.json lists what it had open through the proxy" } : {}),
    }),
    cleanup: async () => {
      clearInterval(sampler);
      // The container and its writable layer go; then every host mount of the session.
      await removeSessionContainer(docker, id, fullId || null);
      unmountUnder(prep.paths.run);
    },
  };
  return runSession(model, opts, box);
}

