/**
 * The container runtime's box, as data (pure): the Docker Engine create options for an
 * agent. The image provides the programs; the host provides only what is granted.
 *
 * - read-only root file system, every capability dropped, no-new-privileges, the
 *   agent's uid/gid (never root), agentbox's seccomp profile (the process runtime's
 *   filter as OCI JSON: no mount, namespaces, ptrace, bpf, keyrings; no UDP, raw or
 *   packet sockets), pids/memory/cpu limits, private IPC, no network at all
 *   (`none`: loopback only);
 * - granted paths bind-mounted at their host paths from the session's read-only binds
 *   of the fds opened at launch (the Engine never looks a grant up by path), read-only
 *   unless `fs:write`; a writable grant is its layer (the overlay's merged directory,
 *   or a file's session copy), noexec unless a program is granted inside it;
 * - denied paths inside grants covered: a directory by an empty mode-000 directory, a
 *   file by /dev/null; so is every unix socket inside a grant that no grant names;
 * - a private cgroup namespace, and mount sources under /run/agentbox/ID, so what the
 *   agent reads of its mounts and cgroup names nothing but the session;
 * - runc: the agent starts only once the launcher has set vm.memfd_noexec=2 in the
 *   container's pid namespace (it waits on /run/agentbox-ctl/go);
 * - the only way out: the session's proxy socket, bound at /run/agentbox, and socat in
 *   the image forwarding 127.0.0.1:3128 to it (HTTP(S)_PROXY point there);
 * - private /tmp and /var/tmp (tmpfs), the environment only from the manifest.
 */
import { posix } from 'node:path';
import { isWithin } from '../model/paths.js';
import { agentEnvironment, BOX_CA_BUNDLE } from '../model/environment.js';
import { type Model } from '../model/types.js';
import { usesProxy } from '../model/grants.js';
import { BOX_PROXY_PORT, BOX_RUN, type BoxEgress, denyDir, forwarderInit, grantBind, layersFor, maskFile, proxyDir, visibleDenies, type GrantFact, type LayerPaths, type PathKind, type SessionPaths } from './common.js';
import { parentsFirst } from './bwrap.js';
import { dockerSeccompProfile } from './seccomp.js';

export interface ContainerFacts {
  session: SessionPaths;
  image: string;
  /** `runsc` for runtime.isolation gvisor. */
  runtime: 'runc' | 'runsc';
  uid: number;
  gid: number;
  /** What is at a denied path. */
  kind: (path: string) => PathKind;
  cwd: string;
  term: string | undefined;
  /** The existing effective grants, as opened and bound under the session's run dir. */
  grants: GrantFact[];
  /** Unix sockets found inside grants that no grant names. */
  socketMasks: string[];
  /** Size of the private /tmp and /var/tmp. */
  tmpBytes: number;
  /** native/statx-compat.so, preloaded under runsc (see that file). */
  statxCompat?: string | undefined;
  /** runc on a kernel with vm.memfd_noexec: the agent waits for the launcher to set it. */
  memfdGate: boolean;
  /** The agent's stdin is a terminal: the container gets one of its own. */
  tty?: boolean;
  /** The session CA bundle and credential placeholders. */
  egress?: BoxEgress;
}

export const STATX_COMPAT_TARGET = '/run/agentbox-helper/statx-compat.so';
/** Bound read-only into the container: the launcher's go-ahead (runc memfd gate). */
export const CTL_TARGET = '/run/agentbox-ctl';
export const ctlDir = (s: SessionPaths) => posix.join(s.run, 'ctl');

export interface Mount {
  Type: 'bind';
  Source?: string;
  Target: string;
  ReadOnly?: boolean;
  BindOptions?: { Propagation: 'rprivate' };
}

export interface ContainerPlan {
  layers: LayerPaths[];
  proxySocket: string | undefined;
  /** The controls this box applies, for the audit log. */
  controls: string[];
  /** Host binds the runner makes before create: grant i (its opened fd) at `at`. */
  binds: { grant: number; at: string; kind: 'dir' | 'file' | 'socket' }[];
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
      CgroupnsMode: 'private';
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
export const CONTAINER_RESERVED = ['/proc', '/dev', '/sys', '/tmp', '/var/tmp', BOX_RUN, CTL_TARGET, '/usr', '/etc', '/bin', '/sbin', '/lib', '/lib64'];

/** The labels that let `ps` and `kill` find a session's container when its launcher is gone. */
export const SESSION_LABEL = 'org.agentbox.session';
export const AGENT_LABEL = 'org.agentbox.agent';

/** The runc gate: the agent starts once the launcher says so (at most 10 s). */
export function memfdGateInit(): string {
  return `i=0; while [ ! -e ${CTL_TARGET}/go ]; do i=$((i+1)); [ $i -lt 2000 ] || exit 125; sleep 0.005; done\nexec "$@"`;
}

export function buildContainerPlan(model: Model, command: string[], f: ContainerFacts): ContainerPlan {
  const hasNet = usesProxy(model);
  const proxyUrl = hasNet ? `http://127.0.0.1:${BOX_PROXY_PORT}` : undefined;
  const env = agentEnvironment(model, proxyUrl, { ...(f.egress?.caBundle ? { caBundle: BOX_CA_BUNDLE } : {}), placeholders: f.egress?.placeholders ?? {} });
  if (f.term) env.push(['TERM', f.term]);
  const layers = layersFor(f.session, f.grants);
  const bind = (Source: string, Target: string, ReadOnly: boolean): Mount => ({ Type: 'bind', Source, Target, ReadOnly, BindOptions: { Propagation: 'rprivate' } });

  const mounts: Mount[] = [];
  const binds: ContainerPlan['binds'] = [];
  for (const { x: g, i } of parentsFirst(f.grants)) {
    const layer = g.layer !== undefined ? layers.find((l) => l.index === g.layer) : undefined;
    if (layer) mounts.push(bind(layer.kind === 'dir' ? layer.merged : layer.file, g.path, false));
    else {
      const at = grantBind(f.session, i);
      binds.push({ grant: i, at, kind: g.kind });
      mounts.push(bind(at, g.path, g.access !== 'write' || g.kind !== 'socket'));
    }
  }
  // Denies after grants (Docker mounts parents before children), so they cover them.
  for (const d of visibleDenies(model, f.grants)) {
    const kind = f.kind(d.path);
    if (d.access === 'all') {
      // An empty root-owned mode-000 directory of the session (a tmpfs cannot be asked for
      // mode 0 through the Engine API: 0 reads as "unset" and becomes 1777).
      if (kind === 'dir') mounts.push(bind(denyDir(f.session), d.path, true));
      else if (kind === 'file') mounts.push({ Type: 'bind', Source: '/dev/null', Target: d.path, ReadOnly: true });
    } else if (kind !== 'missing') mounts.push(bind(d.path, d.path, true));
  }
  for (const sock of f.socketMasks) mounts.push(bind(maskFile(f.session), sock, true));
  // The agent program comes from the host with what it needs to run (its package folder
  // and #! interpreter), read-only at the same paths; a system program comes from the image.
  for (const p of programBinds(model, command, f.grants)) mounts.push({ Type: 'bind', Source: p, Target: p, ReadOnly: true, BindOptions: { Propagation: 'rprivate' } });
  if (f.runtime === 'runsc' && f.statxCompat) {
    mounts.push({ Type: 'bind', Source: f.statxCompat, Target: STATX_COMPAT_TARGET, ReadOnly: true });
    env.push(['LD_PRELOAD', STATX_COMPAT_TARGET]);
  }
  const proxySocket = hasNet ? posix.join(proxyDir(f.session), 'proxy.sock') : undefined;
  if (hasNet) mounts.push(bind(proxyDir(f.session), BOX_RUN, true));
  // The session CA bundle over the image's system bundle (Docker creates the mount point).
  if (f.egress?.caBundle) mounts.push(bind(f.egress.caBundle, BOX_CA_BUNDLE, true));
  if (f.memfdGate) mounts.push(bind(ctlDir(f.session), CTL_TARGET, true));

  let cmd = [...command];
  // socat from the image's PATH.
  if (hasNet) cmd = ['/bin/sh', '-c', forwarderInit('socat'), 'agentbox-init', ...cmd];
  if (f.memfdGate) cmd = ['/bin/sh', '-c', memfdGateInit(), 'agentbox-gate', ...cmd];
  const cwdGranted = f.grants.some((g) => g.kind === 'dir' && isWithin(f.cwd, g.path));
  const limits = model.limits;
  const tmp = `rw,nosuid,nodev,noexec,mode=1777,size=${f.tmpBytes}`;
  const controls = [
    `${f.runtime === 'runsc' ? 'gVisor (runsc)' : 'runc'} container: read-only root, no capabilities, no-new-privileges, private ipc and cgroup namespaces, no network`,
    'seccomp',
    'grants bound from fds opened at launch',
    '/tmp, /var/tmp and writable grants noexec',
  ];
  if (f.memfdGate) controls.push('vm.memfd_noexec=2');
  if (f.socketMasks.length > 0) controls.push(`${f.socketMasks.length} unix sockets inside grants covered`);
  if (limits.pids !== undefined || limits.memoryBytes !== undefined || limits.cpus !== undefined) controls.push('cgroup limits');
  return {
    layers,
    proxySocket,
    controls,
    binds,
    create: {
      Image: f.image,
      Cmd: cmd,
      Entrypoint: [],
      User: `${f.uid}:${f.gid}`,
      Env: env.map(([k, v]) => `${k}=${v}`),
      WorkingDir: cwdGranted ? f.cwd : f.grants.some((g) => g.kind === 'dir' && isWithin(model.home, g.path)) ? model.home : '/',
      Hostname: 'agentbox',
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      OpenStdin: true,
      StdinOnce: true,
      Tty: Boolean(f.tty),
      NetworkDisabled: false,
      Labels: { [AGENT_LABEL]: model.name, [SESSION_LABEL]: posix.basename(f.session.dir) },
      HostConfig: {
        ...(f.runtime === 'runsc' ? { Runtime: 'runsc' } : {}),
        ReadonlyRootfs: true,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges:true', `seccomp=${JSON.stringify(dockerSeccompProfile())}`],
        NetworkMode: 'none',
        IpcMode: 'private',
        CgroupnsMode: 'private',
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
        Tmpfs: { '/tmp': tmp, '/var/tmp': tmp },
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
  const a = ['docker', 'run', '--rm', '-i', ...(p.create.Tty ? ['-t'] : []), '--init', '--read-only', '--cap-drop', 'ALL', '--network', 'none', '--ipc', 'private', '--cgroupns', 'private', '--user', p.create.User, '--hostname', p.create.Hostname, '--workdir', p.create.WorkingDir];
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

const IMAGE_SYSTEM = ['/usr', '/bin', '/sbin', '/lib', '/lib64', '/etc'];

/**
 * Host paths bound read-only for the agent program: the program (or its package folder)
 * when it lies outside the image's system folders, and the interpreter of such a program
 * wherever it is (the image has no node of its own). Nothing already inside a grant.
 */
export function programBinds(model: Model, command: readonly string[], grants: readonly GrantFact[]): string[] {
  // `env` (the #! line's finder) is the image's own.
  const implicit = model.grants.exec.filter((g) => g.implied === 'package' || g.implied === 'interpreter').map((g) => g.path);
  const program = command[0]!;
  const fromHost = !IMAGE_SYSTEM.some((d) => isWithin(program, d));
  const wanted: string[] = [];
  if (fromHost) {
    if (!implicit.some((p) => isWithin(program, p))) wanted.push(program);
    wanted.push(...implicit);
  } else if (implicit.some((p) => isWithin(program, p))) {
    // A package under /usr/local/lib/node_modules: its folder and interpreter.
    wanted.push(...implicit);
  }
  const out: string[] = [];
  for (const p of wanted) {
    if (grants.some((g) => isWithin(p, g.path))) continue;
    if (out.some((q) => isWithin(p, q))) continue;
    out.push(p);
  }
  return out;
}
