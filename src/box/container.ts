/**
 * The container runtime's box, as data (pure): the Docker Engine create options for an
 * agent. The image provides the programs; the host provides only what is granted.
 *
 * - read-only root file system, every capability dropped, no-new-privileges, the
 *   agent's uid/gid (never root), agentbox's seccomp profile (the process runtime's
 *   filter as OCI JSON: no mount, namespaces, ptrace, bpf, keyrings; no UDP, raw or
 *   packet sockets), pids/memory/cpu limits, private IPC, no network at all
 *   (`none`: loopback only);
 * - granted paths bind-mounted at their host paths, read-only unless `fs:write`; a
 *   writable grant is the merged directory of the session's overlay (revert on exit);
 * - denied paths inside grants covered: a directory by an empty mode-000 directory, a
 *   file by /dev/null;
 * - the only way out: the session's proxy socket, bound at /run/agentbox, and socat in
 *   the image forwarding 127.0.0.1:3128 to it (HTTP(S)_PROXY point there);
 * - private /tmp and /var/tmp (tmpfs), the environment only from the manifest.
 */
import { posix } from 'node:path';
import { isWithin } from '../manifest/normalise.js';
import { agentEnvironment } from '../generate/linux/systemd.js';
import { usesProxy, type Model } from '../model/types.js';
import { effectiveFs } from '../plan/plan.js';
import { BOX_PROXY_PORT, BOX_RUN, forwarderInit, type Overlay, type PathKind } from './bwrap.js';
import { dockerSeccompProfile } from './seccomp.js';

export interface ContainerFacts {
  sessionDir: string;
  image: string;
  /** `runsc` for runtime.isolation gvisor. */
  runtime: 'runc' | 'runsc';
  uid: number;
  gid: number;
  kind: (path: string) => PathKind;
  cwd: string;
  term: string | undefined;
  /** native/statx-compat.so, preloaded under runsc (see that file). */
  statxCompat?: string | undefined;
}

export const STATX_COMPAT_TARGET = '/run/agentbox-helper/statx-compat.so';

export interface Mount {
  Type: 'bind';
  Source?: string;
  Target: string;
  ReadOnly?: boolean;
  BindOptions?: { Propagation: 'rprivate' };
}

export interface ContainerPlan {
  overlays: Overlay[];
  proxySocket: string | undefined;
  /** POST /containers/create body (dockerode createContainer options). */
  create: {
    Image: string;
    Cmd: string[];
    Entrypoint: string[];
    User: string;
    Env: string[];
    WorkingDir: string;
    Hostname: string;
    AttachStdin: boolean;
    AttachStdout: boolean;
    AttachStderr: boolean;
    OpenStdin: boolean;
    StdinOnce: boolean;
    Tty: boolean;
    NetworkDisabled: boolean;
    Labels: Record<string, string>;
    HostConfig: {
      Runtime?: string;
      ReadonlyRootfs: boolean;
      CapDrop: string[];
      SecurityOpt: string[];
      NetworkMode: 'none';
      IpcMode: 'private';
      PidsLimit?: number;
      Ulimits?: { Name: string; Soft: number; Hard: number }[];
      Memory?: number;
      MemorySwap?: number;
      NanoCpus?: number;
      Mounts: Mount[];
      Tmpfs: Record<string, string>;
      AutoRemove: boolean;
      Init: boolean;
    };
  };
}

/** Paths the container runtime builds itself; a grant there would be shadowed or expose the host. */
export const CONTAINER_RESERVED = ['/proc', '/dev', '/sys', '/tmp', '/var/tmp', BOX_RUN, '/usr', '/etc', '/bin', '/sbin', '/lib', '/lib64'];

/** The empty, mode-000 directory bound over denied directories. */
export const denyDir = (sessionDir: string) => posix.join(sessionDir, 'denied-dir');

export function buildContainerPlan(model: Model, command: string[], f: ContainerFacts): ContainerPlan {
  const { fs } = effectiveFs(model);
  const hasNet = usesProxy(model);
  const proxyUrl = hasNet ? `http://127.0.0.1:${BOX_PROXY_PORT}` : undefined;
  const env = agentEnvironment(model, proxyUrl);
  if (f.term) env.push(['TERM', f.term]);

  const mounts: Mount[] = [];
  const overlays: Overlay[] = [];
  for (const g of fs) {
    if (f.kind(g.path) === 'missing') continue;
    if (g.access === 'write') {
      const base = posix.join(f.sessionDir, 'overlay', String(overlays.length));
      const o = { path: g.path, upper: `${base}/upper`, work: `${base}/work`, merged: `${base}/merged`, lower: `${base}/lower` };
      overlays.push(o);
      mounts.push({ Type: 'bind', Source: o.merged, Target: g.path, ReadOnly: false, BindOptions: { Propagation: 'rprivate' } });
    } else mounts.push({ Type: 'bind', Source: g.path, Target: g.path, ReadOnly: true, BindOptions: { Propagation: 'rprivate' } });
  }
  // Denies after grants (Docker mounts parents before children), so they cover them.
  for (const d of model.denies.fs) {
    if (!fs.some((g) => isWithin(d.path, g.path) && d.path !== g.path) && !fs.some((g) => g.path === d.path)) continue;
    const kind = f.kind(d.path);
    if (d.access === 'all') {
      // An empty root-owned mode-000 directory of the session (a tmpfs cannot be asked for
      // mode 0 through the Engine API: 0 reads as "unset" and becomes 1777).
      if (kind === 'dir') mounts.push({ Type: 'bind', Source: denyDir(f.sessionDir), Target: d.path, ReadOnly: true, BindOptions: { Propagation: 'rprivate' } });
      else if (kind === 'file') mounts.push({ Type: 'bind', Source: '/dev/null', Target: d.path, ReadOnly: true });
    } else if (kind !== 'missing') mounts.push({ Type: 'bind', Source: d.path, Target: d.path, ReadOnly: true, BindOptions: { Propagation: 'rprivate' } });
  }
  if (f.runtime === 'runsc' && f.statxCompat) {
    mounts.push({ Type: 'bind', Source: f.statxCompat, Target: STATX_COMPAT_TARGET, ReadOnly: true });
    env.push(['LD_PRELOAD', STATX_COMPAT_TARGET]);
  }
  const proxySocket = hasNet ? posix.join(f.sessionDir, 'run', 'proxy.sock') : undefined;
  if (hasNet) mounts.push({ Type: 'bind', Source: posix.join(f.sessionDir, 'run'), Target: BOX_RUN, ReadOnly: true });

  let cmd = [...command];
  if (hasNet) {
    // socat from the image's PATH.
    const init = forwarderInit('socat');
    cmd = ['/bin/sh', '-c', init, 'agentbox-init', ...command];
  }
  const cwdGranted = fs.some((g) => isWithin(f.cwd, g.path));
  const limits = model.limits;
  return {
    overlays,
    proxySocket,
    create: {
      Image: f.image,
      Cmd: cmd,
      Entrypoint: [],
      User: `${f.uid}:${f.gid}`,
      Env: env.map(([k, v]) => `${k}=${v}`),
      WorkingDir: cwdGranted ? f.cwd : fs.some((g) => isWithin(model.home, g.path)) ? model.home : '/',
      Hostname: 'agentbox',
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      OpenStdin: true,
      StdinOnce: true,
      Tty: false,
      NetworkDisabled: false,
      Labels: { 'org.agentbox.agent': model.name, 'org.agentbox.session': posix.basename(f.sessionDir) },
      HostConfig: {
        ...(f.runtime === 'runsc' ? { Runtime: 'runsc' } : {}),
        ReadonlyRootfs: true,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges:true', `seccomp=${JSON.stringify(dockerSeccompProfile())}`],
        NetworkMode: 'none',
        IpcMode: 'private',
        // runc: the pids cgroup counts the agent's processes. gVisor: the host cgroup
        // counts the sandbox's own threads (a tight limit kills the sandbox), so the
        // agent's processes are bounded inside it by RLIMIT_NPROC, which the Sentry
        // enforces, with the host cgroup kept as a loose backstop.
        ...(limits.pids !== undefined
          ? f.runtime === 'runsc'
            ? { PidsLimit: Math.max(1024, limits.pids * 8), Ulimits: [{ Name: 'nproc', Soft: limits.pids, Hard: limits.pids }] }
            : { PidsLimit: limits.pids }
          : {}),
        ...(limits.memoryBytes !== undefined ? { Memory: limits.memoryBytes, MemorySwap: limits.memoryBytes } : {}),
        ...(limits.cpus !== undefined ? { NanoCpus: Math.round(limits.cpus * 1e9) } : {}),
        Mounts: mounts,
        Tmpfs: { '/tmp': 'rw,nosuid,nodev,mode=1777', '/var/tmp': 'rw,nosuid,nodev,mode=1777' },
        AutoRemove: false,
        // docker-init (tini) as PID 1: the agent gets SIGTERM at ttl/kill like any process
        // (PID 1 of a namespace ignores it by default) and zombies are reaped.
        Init: true,
      },
    },
  };
}

/** The plan as `docker run` arguments (the seccomp profile written to `seccompFile`): for --dry-run and the raw-docker benchmark. */
export function dockerRunArgs(p: ContainerPlan, seccompFile: string): string[] {
  const h = p.create.HostConfig;
  const a = ['docker', 'run', '--rm', '-i', '--init', '--read-only', '--cap-drop', 'ALL', '--network', 'none', '--ipc', 'private', '--user', p.create.User, '--hostname', p.create.Hostname, '--workdir', p.create.WorkingDir];
  if (h.Runtime) a.push('--runtime', h.Runtime);
  for (const s of h.SecurityOpt) a.push('--security-opt', s.startsWith('seccomp=') ? `seccomp=${seccompFile}` : s);
  if (h.PidsLimit !== undefined) a.push('--pids-limit', String(h.PidsLimit));
  for (const u of h.Ulimits ?? []) a.push('--ulimit', `${u.Name}=${u.Soft}:${u.Hard}`);
  if (h.Memory !== undefined) a.push('--memory', String(h.Memory), '--memory-swap', String(h.MemorySwap));
  if (h.NanoCpus !== undefined) a.push('--cpus', String(h.NanoCpus / 1e9));
  for (const [t, o] of Object.entries(h.Tmpfs)) a.push('--tmpfs', `${t}:${o}`);
  for (const m of h.Mounts) a.push('--mount', `type=bind,source=${m.Source},target=${m.Target}${m.ReadOnly ? ',readonly' : ''}`);
  for (const e of p.create.Env) a.push('--env', e);
  a.push('--entrypoint', '', p.create.Image, ...p.create.Cmd);
  return a;
}
