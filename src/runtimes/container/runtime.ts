/**
 * The container runtime: the agent in a Docker Engine container (dockerode), runc or
 * gVisor's runsc, built from box/container.ts; the session (proxy, governance, ttl,
 * quarantine as `docker pause`, revert, audit) is session/lifecycle.ts. The grants are
 * bound on the host from the fds the launcher opened (read-only), writable grants are
 * their layers; the container, its writable layer and every host mount are removed
 * when the session ends, and a reaper process does so if the launcher dies.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { posix } from 'node:path';
import type Docker from 'dockerode';
import { AgentboxError } from '../../errors.js';
import type { Model } from '../../model/types.js';
import { denyDir, maskFile } from '../../box/common.js';
import { buildContainerPlan, ctlDir, type ContainerPlan } from '../../box/container.js';
import { BASE_IMAGE } from './image.js';
import type { Box } from '../../session/box.js';
import { placeEgress, type BuildOptions, type Built } from '../build.js';
import { newSessionId } from '../../session/records.js';
import { prepareSession } from '../../session/prepare.js';
import { DEFAULT_DISK_BYTES, unmountBox } from '../../session/layers.js';
import { bindOpened, mountLayers, pathKind } from '../host-mounts.js';
import { packageRoot } from '../../host/files.js';
import { identify } from '../../host/proc.js';
import { demux, relayRaw } from './stream.js';

import { containerLimitHits, containerPreflight, dockerClient, engineProcesses, removeSessionContainer } from './engine.js';

const STATX_COMPAT = posix.join(packageRoot(), 'dist', 'native', 'statx-compat.so');

export async function buildContainerBox(model: Model, opts: BuildOptions): Promise<Built<ContainerPlan>> {
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
  const egress = placeEgress(prep.paths, opts.egress, opts.dryRun);
  const plan = buildContainerPlan(model, opts.command, {
    ...(egress ? { egress } : {}),
    session: prep.paths,
    image,
    runtime: isolation === 'gvisor' ? 'runsc' : 'runc',
    uid,
    gid: uid,
    kind: pathKind,
    cwd: process.cwd(),
    term: process.env.TERM,
    tty: Boolean(opts.pty),
    grants: prep.grants,
    socketMasks: prep.socketMasks,
    tmpBytes: model.limits.diskBytes ?? prep.layers?.limitBytes ?? DEFAULT_DISK_BYTES,
    statxCompat: existsSync(STATX_COMPAT) ? STATX_COMPAT : undefined,
    memfdGate,
  });
  if (opts.dryRun) {
    prep.release();
    return { plan, box: null };
  }

  // The container's cgroup goes when it exits: its limit counters are sampled while it runs.
  let hits = { pids: 0, memory: 0 };
  let sampler: NodeJS.Timeout | undefined;
  let container: Docker.Container | undefined;
  let attached: import('node:stream').Duplex | undefined;
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
    execSpec: { env: plan.create.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)] as [string, string]), cwd: plan.create.WorkingDir, landlock: [] },
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
      const stream = (attached = (await c.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as unknown as NodeJS.ReadWriteStream & import('node:stream').Duplex);
      const ended = plan.create.Tty ? relayRaw(stream, process.stdout) : demux(stream, { stdout: process.stdout, stderr: process.stderr });
      // A terminal: the container's own pty (the Engine's), this one raw and relayed, its size followed.
      const stdin = process.stdin as import('node:tty').ReadStream;
      const raw = plan.create.Tty && stdin.isTTY ? stdin.isRaw : undefined;
      if (raw !== undefined) stdin.setRawMode(true);
      const resize = () => void c.resize({ h: process.stdout.rows ?? 24, w: process.stdout.columns ?? 80 }).catch(() => undefined);
      if (raw !== undefined) process.on('SIGWINCH', resize);
      const restore = () => {
        if (raw === undefined) return;
        process.off('SIGWINCH', resize);
        stdin.setRawMode(raw);
        stdin.pause();
      };
      if (process.stdin.isTTY || !process.stdin.readableEnded) process.stdin.pipe(stream);
      // 'next-exit': the default (not-running) answers at once for a container not started yet.
      const waited = c.wait({ condition: 'next-exit' });
      try {
        await c.start();
      } catch (e) {
        restore();
        const msg = (e as Error).message;
        opts.log(`agentbox: cannot start the container: ${msg.split('\n')[0]}`);
        return { pid: 0, identity: null, container: fullId, exited: Promise.resolve(/not found|no such file/i.test(msg) ? 127 : /permission denied|not executable/i.test(msg) ? 126 : 125) };
      }
      if (raw !== undefined) resize();
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
        restore();
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
      // Whatever the relay did, the attach connection goes with the container.
      attached?.destroy();
      unmountBox(prep.paths);
    },
  };
  return { plan, box };
}

