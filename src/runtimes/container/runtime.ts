/**
 * The container runtime: the agent in a Docker Engine container (dockerode), runc or
 * gVisor's runsc, built from container-plan.ts; the session (proxy, governance, ttl,
 * quarantine as `docker pause`, revert, audit) is session.ts. Writable grants are
 * overlays mounted on the host for the session and bound into the container; the
 * container and its writable layer are removed when the session ends.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { posix } from 'node:path';
import type Docker from 'dockerode';
import { AgentboxError } from '../../errors.js';
import type { Model } from '../../model/types.js';
import { reservedOverlaps } from '../../box/bwrap.js';
import { buildContainerPlan, CONTAINER_RESERVED, denyDir, type ContainerPlan } from '../../box/container.js';
import { BASE_IMAGE } from './image.js';
import { runSession, type Box, type LaunchOptions, type LaunchResult } from '../../session/lifecycle.js';
import { newSessionId } from '../../session/records.js';
import { mountOverlays, pathKind, unmountAll } from '../host-mounts.js';
import { packageRoot } from '../../host/files.js';

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

export async function launchContainer(model: Model, opts: LaunchOptions & { isolation?: 'runc' | 'gvisor' }): Promise<LaunchResult | ContainerPlan> {
  const isolation = opts.isolation ?? model.runtime.isolation ?? 'runc';
  const image = model.agent.image ?? BASE_IMAGE;
  const docker = await dockerClient();
  const id = newSessionId(model.name);
  const sessionDir = posix.join(opts.state, 'sessions', id);
  const plan = buildContainerPlan(model, opts.command, {
    sessionDir,
    image,
    runtime: isolation === 'gvisor' ? 'runsc' : 'runc',
    uid: model.agent.uid,
    gid: model.agent.uid,
    kind: pathKind,
    cwd: process.cwd(),
    term: process.env.TERM,
    statxCompat: existsSync(STATX_COMPAT) ? STATX_COMPAT : undefined,
  });
  if (opts.dryRun) return plan;
  const gaps = await containerPreflight(docker, model, image, isolation);
  if (gaps.length > 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot build the ${isolation === 'gvisor' ? 'gVisor ' : ''}container for ${model.name} on this host; nothing was started`, { details: gaps });

  const mounted: string[] = [];
  // The container's cgroup goes when it exits: its limit counters are sampled while it runs.
  let hits = { pids: 0, memory: 0 };
  let sampler: NodeJS.Timeout | undefined;
  const sample = () => {
    if (!fullId) return;
    const h = containerLimitHits(fullId);
    hits = { pids: Math.max(hits.pids, h.pids), memory: Math.max(hits.memory, h.memory) };
  };
  let container: Docker.Container | undefined;
  let fullId = '';
  const box: Box = {
    runtime: 'container',
    id,
    sessionDir,
    overlays: plan.overlays,
    proxySocket: plan.proxySocket,
    uid: model.agent.uid,
    gid: model.agent.uid,
    cgroupDirs: [],
    start: async () => {
      // The session's overlays, on the host, for the engine to bind or share.
      mountOverlays(plan.overlays, mounted);
      if (plan.proxySocket && !existsSync(posix.dirname(plan.proxySocket))) mkdirSync(posix.dirname(plan.proxySocket), { recursive: true });
      mkdirSync(denyDir(sessionDir), { mode: 0o000 });
      chmodSync(denyDir(sessionDir), 0o000);
      const c = await docker.createContainer({ ...plan.create, name: id } as unknown as Docker.ContainerCreateOptions);
      container = c;
      fullId = c.id;
      const stream = await c.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true });
      docker.modem.demuxStream(stream, process.stdout, process.stderr);
      if (process.stdin.isTTY || !process.stdin.readableEnded) process.stdin.pipe(stream as unknown as NodeJS.WritableStream);
      const ended = new Promise<void>((r) => stream.on('end', () => r()));
      // 'next-exit': the default (not-running) answers at once for a container not started yet.
      const waited = c.wait({ condition: 'next-exit' });
      try {
        await c.start();
      } catch (e) {
        const msg = (e as Error).message;
        opts.log(`agentbox: cannot start the container: ${msg.split('\n')[0]}`);
        return { pid: 0, exited: Promise.resolve(/not found|no such file/i.test(msg) ? 127 : /permission denied|not executable/i.test(msg) ? 126 : 125) };
      }
      const info = await c.inspect();
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
        process.stdin.unpipe(stream as unknown as NodeJS.WritableStream);
        return r.StatusCode;
      })();
      return { pid: info.State.Pid, exited };
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
    cleanup: async () => {
      clearInterval(sampler);
      // The container and its writable layer go; then the overlays come off the host.
      try {
        await container?.remove({ force: true, v: true });
      } catch {
        // already gone
      }
      unmountAll(mounted);
      rmSync(posix.join(sessionDir, 'run'), { recursive: true, force: true });
    },
  };
  return runSession(model, opts, box);
}
