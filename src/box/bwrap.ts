/**
 * The process runtime's plan: from the model and measured host facts to the exact
 * argv that builds the box. Data only (no I/O), so `--dry-run` prints exactly what
 * would run, and tests check it without running anything.
 *
 * Layers, outermost first:
 * 1. as root: a private mount namespace (`unshare -m`) in which agentbox joins the
 *    session's cgroups and mounts an overlay over each writable grant (bubblewrap 0.8
 *    has no --overlay), then drops to the agent uid with every capability gone and
 *    no_new_privs (`setpriv`);
 * 2. bubblewrap: new user, pid, ipc, uts, cgroup and network namespaces, a fresh root
 *    with the system read-only, /etc secrets masked, a minimal /dev and /proc, a
 *    private /tmp, only the granted paths at their own paths, denies masked, a built
 *    environment, a new terminal session (no TIOCSTI), and the seccomp filter;
 * 3. inside: when the agent has network grants, socat forwards 127.0.0.1:PORT to the
 *    egress proxy's unix socket (the box has no other network);
 * 4. landlock-exec: Landlock restricts reads, writes, execution and TCP connects to
 *    the grants, then execs the agent.
 */
import { posix } from 'node:path';
import { isWithin } from '../manifest/normalise.js';
import { usesProxy, type Model } from '../model/types.js';
import { effectiveFs } from '../plan/plan.js';
import { agentEnvironment } from '../generate/linux/systemd.js';
import { shQuote } from '../generate/escape/shell.js';

export const BOX_PROXY_PORT = 3128;
export const BOX_RUN = '/run/agentbox';
export const BOX_HELPER = '/run/agentbox-helper/landlock-exec';

export type PathKind = 'dir' | 'file' | 'missing';

export interface LaunchFacts {
  /** True when agentbox runs as root: the agent then runs as model.agent.uid. */
  root: boolean;
  /** The uid/gid the agent runs as. */
  uid: number;
  gid: number;
  /** Host top-level links such as /bin -> usr/bin (merged /usr). */
  topLinks: Record<string, string>;
  kind(path: string): PathKind;
  sessionDir: string;
  /** The landlock-exec helper on the host, or undefined when Landlock is not enforced. */
  landlockHelper: string | undefined;
  /** Paths of the cgroups the session joins (created by the runner). */
  cgroupProcs: string[];
  cwd: string;
  term: string | undefined;
  /** Absolute path of socat, when the agent has network grants. */
  socat: string | undefined;
  setpriv: string;
  unshare: string;
  bwrap: string;
}

export interface Overlay {
  /** The granted path (the lower layer). */
  path: string;
  upper: string;
  work: string;
  merged: string;
  /** A bind of the lower path at a safe name, so overlay options never see a comma or colon. */
  lower: string;
}

export interface LaunchPlan {
  argv: string[];
  overlays: Overlay[];
  env: [string, string][];
  proxySocket: string | undefined;
  /** The fd bubblewrap reads the seccomp program from. */
  seccompFd: number;
  landlock: string[];
}

/** Dynamic loaders (landlock-exec skips the ones that do not exist). */
const DYNAMIC_LOADERS = ['/lib64/ld-linux-x86-64.so.2', '/usr/lib64/ld-linux-x86-64.so.2', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'];
const TOP = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
const ETC_FILE_MASKS = ['/etc/shadow', '/etc/shadow-', '/etc/gshadow', '/etc/gshadow-', '/etc/sudoers', '/etc/security/opasswd'];
const ETC_DIR_MASKS = ['/etc/sudoers.d', '/etc/ssh', '/etc/ssl/private', '/etc/docker'];
/** Places bubblewrap builds itself; a grant there would be shadowed or would expose the host. */
export const RESERVED = ['/proc', '/dev', '/tmp', '/var/tmp', '/run/agentbox', '/run/agentbox-helper'];

/**
 * The box's first step when it has network: socat forwards the box's loopback proxy port
 * to the session's proxy socket (bound at BOX_RUN), and the agent starts once it
 * listens (state 0A in /proc/net/tcp). Shared by the process and container runtimes.
 */
export function forwarderInit(socat: string): string {
  const hexPort = BOX_PROXY_PORT.toString(16).toUpperCase().padStart(4, '0');
  return [
    `${socat} TCP-LISTEN:${BOX_PROXY_PORT},bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:${BOX_RUN}/proxy.sock 2>/dev/null &`,
    `i=0; while [ $i -lt 2500 ] && ! grep -q ' 0100007F:${hexPort} 00000000:0000 0A' /proc/net/tcp; do i=$((i+1)); sleep 0.002; done`,
    'exec "$@"',
  ].join('\n');
}

/**
 * Grants that overlap paths a runtime builds itself: a grant on or inside one would be
 * shadowed or expose the host, one above it would replace it. Below the paths in
 * `bindableBelow` (a private /tmp) a grant is fine: it is bound over them.
 */
export function reservedOverlaps(model: Model, reserved: readonly string[], bindableBelow: readonly string[], why: string): string[] {
  const out: string[] = [];
  for (const g of effectiveFs(model).fs) {
    const r = reserved.find((x) => isWithin(x, g.path) || (!bindableBelow.includes(x) && isWithin(g.path, x)));
    if (r) out.push(`grant ${g.source.text} overlaps ${r}, ${why}`);
  }
  return out;
}

export function buildLaunchPlan(model: Model, command: string[], f: LaunchFacts): LaunchPlan {
  const { fs } = effectiveFs(model);
  const hasNet = usesProxy(model);
  const proxyUrl = hasNet ? `http://127.0.0.1:${BOX_PROXY_PORT}` : undefined;
  const env = agentEnvironment(model, proxyUrl);
  if (f.term) env.push(['TERM', f.term]);

  const b: string[] = [f.bwrap, '--unshare-all', '--die-with-parent', '--new-session', '--hostname', 'agentbox', '--cap-drop', 'ALL'];
  // System, read-only.
  b.push('--ro-bind', '/usr', '/usr');
  for (const t of TOP) {
    const link = f.topLinks[t];
    if (link !== undefined) b.push('--symlink', link, t);
    else if (f.kind(t) === 'dir') b.push('--ro-bind', t, t);
  }
  b.push('--ro-bind', '/etc', '/etc');
  for (const m of ETC_FILE_MASKS) if (f.kind(m) === 'file') b.push('--ro-bind', '/dev/null', m);
  for (const m of ETC_DIR_MASKS) if (f.kind(m) === 'dir') b.push('--tmpfs', m, '--remount-ro', m);
  b.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--dir', '/var', '--tmpfs', '/var/tmp', '--dir', '/run');
  b.push('--dir', model.home);

  // Grants at their own paths; writable ones through the session's overlay.
  const overlays: Overlay[] = [];
  for (const g of fs) {
    if (g.access === 'write' && f.kind(g.path) !== 'missing') {
      const n = overlays.length;
      const base = posix.join(f.sessionDir, 'overlay', String(n));
      const o = { path: g.path, upper: `${base}/upper`, work: `${base}/work`, merged: `${base}/merged`, lower: `${base}/lower` };
      overlays.push(o);
      b.push('--bind', o.merged, g.path);
    } else b.push('--ro-bind-try', g.path, g.path);
  }
  const programs = [command[0]!, ...model.grants.exec.map((g) => g.path)];
  for (const p of programs) if (!isWithin(p, '/usr') && !TOP.some((t) => isWithin(p, t))) b.push('--ro-bind-try', p, p);
  // Denies after grants, so they cover them.
  for (const d of model.denies.fs) {
    const visible = fs.some((g) => isWithin(d.path, g.path)) || isWithin(d.path, '/etc');
    if (!visible) continue;
    const kind = f.kind(d.path);
    if (d.access === 'all') {
      // Mode 000: the agent can neither list nor enter a denied directory.
      if (kind === 'dir') b.push('--perms', '0000', '--tmpfs', d.path, '--remount-ro', d.path);
      else if (kind === 'file') b.push('--ro-bind', '/dev/null', d.path);
    } else if (kind !== 'missing') b.push('--ro-bind', d.path, d.path);
  }

  const proxySocket = hasNet ? posix.join(f.sessionDir, 'run', 'proxy.sock') : undefined;
  if (hasNet) b.push('--bind', posix.join(f.sessionDir, 'run'), BOX_RUN);
  if (f.landlockHelper) b.push('--ro-bind', f.landlockHelper, BOX_HELPER);

  b.push('--clearenv');
  for (const [k, v] of env) b.push('--setenv', k, v);
  const cwdGranted = fs.some((g) => isWithin(f.cwd, g.path));
  b.push('--chdir', cwdGranted ? f.cwd : model.home);
  const seccompFd = 3;
  b.push('--seccomp', String(seccompFd), '--');

  // Landlock: what the agent may read, write, execute and connect to.
  const landlock: string[] = [];
  if (f.landlockHelper) {
    landlock.push(BOX_HELPER, '--ro', '/usr', '--ro', '/etc', '--ro', '/proc', '--rw', '/dev', '--rw', '/tmp', '--rw', '/var/tmp');
    for (const t of TOP) if (f.topLinks[t] === undefined && f.kind(t) === 'dir') landlock.push('--ro', t);
    for (const g of fs) landlock.push(g.access === 'write' ? '--rw' : '--ro', g.path);
    for (const p of programs) landlock.push('--x', p);
    // The kernel checks execute on the ELF interpreter too; libraries are only mapped.
    for (const ld of DYNAMIC_LOADERS) landlock.push('--x', ld);
    if (hasNet) landlock.push('--connect', String(BOX_PROXY_PORT));
    landlock.push('--');
  }

  const inner: string[] = [];
  if (hasNet) {
    // socat forwards the box's loopback proxy port to the host-side proxy socket; the
    // agent starts once it listens (state 0A in /proc/net/tcp).
    const init = forwarderInit(shQuote(f.socat!));
    inner.push('/bin/sh', '-c', init, 'agentbox-init');
  }
  inner.push(...landlock, ...command);

  let argv: string[];
  if (f.root) {
    const script = ['set -e'];
    for (const p of f.cgroupProcs) script.push(`echo $$ > ${shQuote(p)}`);
    for (const o of overlays) {
      script.push(`mount --bind ${shQuote(o.path)} ${shQuote(o.lower)}`);
      script.push(`mount -t overlay agentbox -o ${shQuote(`lowerdir=${o.lower},upperdir=${o.upper},workdir=${o.work}`)} ${shQuote(o.merged)}`);
    }
    script.push(`exec ${shQuote(f.setpriv)} --reuid=${f.uid} --regid=${f.gid} --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"`);
    argv = [f.unshare, '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script.join('\n'), 'agentbox-outer', ...b, ...inner];
  } else {
    argv = [...b, ...inner];
  }
  return { argv, overlays, env, proxySocket, seccompFd, landlock };
}
