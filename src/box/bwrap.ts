/**
 * The process runtime's plan: from the model and measured host facts to the exact
 * argv that builds the box. Data only (no I/O), so `--dry-run` prints exactly what
 * would run, and tests check it without running anything.
 *
 * Layers, outermost first:
 * 0. before it: the launcher binds each grant it opened, by fd and read-only, under the
 *    session's root-owned run directory, and mounts each writable grant's layer there
 *    (an overlay over that bind, or a file's session copy); the box binds only those
 *    paths, so a grant is never looked up by its own path again;
 * 1. as root: `setpriv --pdeathsig` (the box dies with the launcher), then a private
 *    mount namespace and a pid namespace (`unshare`), in which agentbox joins the
 *    session's cgroups, sets vm.memfd_noexec=2 for every pid namespace below (no
 *    program runs from a memfd), mounts the private /tmp, /var/tmp and /dev/shm as
 *    noexec tmpfs, then drops to the agent uid with every capability gone and
 *    no_new_privs (`setpriv`);
 * 2. bubblewrap: new user (with further user namespaces disabled), pid, ipc, uts, cgroup
 *    and network namespaces, a fresh root with the system read-only, /etc secrets
 *    masked, a minimal /dev and /proc, only the granted paths at their own paths,
 *    denies and unix sockets inside grants masked, a built environment, a new terminal
 *    session (no TIOCSTI), and the seccomp filter;
 * 3. inside: when the agent has network grants, socat forwards 127.0.0.1:PORT to the
 *    egress proxy's unix socket (the box has no other network);
 * 4. landlock-exec: Landlock restricts reads, writes, execution and TCP connects to
 *    the grants, closes every inherited fd above 2, then execs the agent.
 */
import { ETC_DIR_MASKS, ETC_FILE_MASKS, SYSTEM_TOP } from '../model/system-view.js';
import { posix } from 'node:path';
import { isWithin } from '../model/paths.js';
import { type Model } from '../model/types.js';
import { usesProxy } from '../model/grants.js';
import { agentEnvironment, BOX_CA_BUNDLE } from '../model/environment.js';
import { shQuote } from '../escape/shell.js';
import { BOX_PROXY_PORT, BOX_RUN, CA_BUNDLE_NAME, forwarderInit, type BoxEgress, grantBind, layersFor, proxyDir, visibleDenies, type GrantFact, type LayerPaths, type PathKind, type SessionPaths } from './common.js';

export const BOX_HELPER = '/run/agentbox-helper/landlock-exec';
/** The fd bubblewrap reads the seccomp program from. */
export const SECCOMP_FD = 3;
/** Without root, grant i reaches bubblewrap as fd FIRST_GRANT_FD + i (`--ro-bind-fd`). */
export const FIRST_GRANT_FD = 4;

export interface LaunchFacts {
  /** True when agentbox runs as root: the agent then runs as model.agent.uid. */
  root: boolean;
  /** The uid/gid the agent runs as. */
  uid: number;
  gid: number;
  /** Host top-level links such as /bin -> usr/bin (merged /usr). */
  topLinks: Record<string, string>;
  /** What is at a system path (/etc masks, denies); grants come in `grants`. */
  kind(path: string): PathKind;
  session: SessionPaths;
  /** The landlock-exec helper on the host, or undefined when Landlock is not enforced. */
  landlockHelper: string | undefined;
  /** Paths of the cgroups the session joins (created by the runner). */
  cgroupProcs: string[];
  cwd: string;
  term: string | undefined;
  /** setsid(1), when the agent runs on its own pseudo-terminal: `setsid --ctty` makes it the controlling terminal. */
  setsid?: string;
  /** Absolute path of socat, when the agent has network grants. */
  socat: string | undefined;
  setpriv: string;
  unshare: string;
  bwrap: string;
  /** The existing effective grants, as opened (the runner binds grant i at grantBind(session, i)). */
  grants: GrantFact[];
  /** Unix sockets found inside grants: covered unless a grant names one exactly. */
  socketMasks: string[];
  /** Size of each private tmpfs (/tmp, /var/tmp, /dev/shm) built as root. */
  tmpBytes: number;
  /** The kernel has vm.memfd_noexec (6.3+) and agentbox runs as root. */
  memfdNoexec: boolean;
  /** The session CA bundle and credential placeholders (egress with inspection or brokering). */
  egress?: BoxEgress;
  /**
   * Kernel observation (as root): landlock-exec waits on `holdFd` until the launcher's
   * watchers are ready (file-activity marks on the box's mounts, the audit reader), and
   * installs the seccomp program from `seccompLogFd` again with SECCOMP_FILTER_FLAG_LOG so
   * that its refusals are audited.
   */
  observe?: { holdFd: number; seccompLogFd: number };
}

export interface LaunchPlan {
  argv: string[];
  /** Writable grants and where their layers live. */
  layers: LayerPaths[];
  env: [string, string][];
  proxySocket: string | undefined;
  /** The fd bubblewrap reads the seccomp program from. */
  seccompFd: number;
  /** As root, host binds the runner makes before the box starts: grant i (its opened fd) at `at`, read-only. Without root, the grants' fds are passed to bubblewrap instead. */
  binds: { grant: number; at: string; kind: 'dir' | 'file' | 'socket' }[];
  landlock: string[];
  /** The controls this box applies, for the audit log. */
  controls: string[];
  /** The agent runs on a pseudo-terminal of its own (argv starts with `setsid --ctty`). */
  usesPty: boolean;
  /** The box-view paths the file-activity watcher marks (the grants' mounts). */
  watchPaths: string[];
  /** Mount points the runner creates before the box starts (directories, then files). */
  mountPoints: { dirs: string[]; files: string[] };
}

/** Dynamic loaders (landlock-exec skips the ones that do not exist). */
const DYNAMIC_LOADERS = ['/lib64/ld-linux-x86-64.so.2', '/usr/lib64/ld-linux-x86-64.so.2', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'];
const TOP = SYSTEM_TOP;
/** Places bubblewrap builds itself; a grant there would be shadowed or would expose the host. */
export const RESERVED = ['/proc', '/dev', '/tmp', '/var/tmp', '/run/agentbox', '/run/agentbox-helper'];
/** The private writable places (noexec tmpfs as root). */
const TMPS: [string, string][] = [['/tmp', 'tmp'], ['/var/tmp', 'var-tmp'], ['/dev/shm', 'shm']];

/** Parents before children, so a grant inside another is bound over it. */
const depth = (p: string) => (p === '/' ? 0 : p.split('/').length);
export const parentsFirst = (g: readonly GrantFact[]) => g.map((x, i) => ({ x, i })).sort((a, b) => depth(a.x.path) - depth(b.x.path) || a.i - b.i);

export function buildLaunchPlan(model: Model, command: string[], f: LaunchFacts): LaunchPlan {
  const hasNet = usesProxy(model);
  const proxyUrl = hasNet ? `http://127.0.0.1:${BOX_PROXY_PORT}` : undefined;
  // The bundle goes over the system bundle where the host has one; else the variables
  // name it where the box sees the proxy dir.
  const bundleOverSystem = f.egress?.caBundle !== undefined && f.kind(BOX_CA_BUNDLE) === 'file';
  const boxBundle = f.egress?.caBundle === undefined ? undefined : bundleOverSystem ? BOX_CA_BUNDLE : `${BOX_RUN}/${CA_BUNDLE_NAME}`;
  const env = agentEnvironment(model, proxyUrl, { ...(boxBundle ? { caBundle: boxBundle } : {}), placeholders: f.egress?.placeholders ?? {} });
  if (f.term) env.push(['TERM', f.term]);
  const layers = layersFor(f.session, f.grants);
  const tmpDir = (name: string) => posix.join(f.session.run, 'mnt', name);

  // A box with its own pseudo-terminal keeps it as its controlling terminal (job control);
  // without one, a new session keeps the agent away from the launcher's terminal (TIOCSTI).
  const b: string[] = [f.bwrap, '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', ...(f.setsid ? [] : ['--new-session']), '--hostname', 'agentbox', '--cap-drop', 'ALL'];
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
  if (bundleOverSystem) b.push('--ro-bind', f.egress!.caBundle!, BOX_CA_BUNDLE);
  b.push('--proc', '/proc', '--dev', '/dev');
  // The private writable places: noexec tmpfs built as root, else bubblewrap's own.
  if (f.root) b.push('--dir', '/var', ...TMPS.flatMap(([at, name]) => ['--bind', tmpDir(name), at]));
  else b.push('--tmpfs', '/tmp', '--dir', '/var', '--tmpfs', '/var/tmp');
  b.push('--dir', '/run', '--dir', model.home);

  // Grants at their own paths, from the runner's binds of the fds opened at launch;
  // writable ones through their layer.
  const binds: LaunchPlan['binds'] = [];
  for (const { x: g, i } of parentsFirst(f.grants)) {
    const layer = g.layer !== undefined ? layers.find((l) => l.index === g.layer) : undefined;
    if (layer?.kind === 'dir') b.push('--bind', layer.merged, g.path);
    else if (layer?.kind === 'file') b.push('--bind', layer.file, g.path);
    else if (f.root) {
      const at = grantBind(f.session, i);
      binds.push({ grant: i, at, kind: g.kind });
      b.push(g.kind === 'socket' ? '--bind' : '--ro-bind', at, g.path);
    } else b.push('--ro-bind-fd', String(FIRST_GRANT_FD + i), g.path);
  }
  const programs = [command[0]!, ...model.grants.exec.map((g) => g.path)];
  for (const p of programs) if (!isWithin(p, '/usr') && !TOP.some((t) => isWithin(p, t)) && !f.grants.some((g) => isWithin(p, g.path))) b.push('--ro-bind-try', p, p);
  // Denies after grants, so they cover them; then sockets a grant does not name.
  const maskedFiles: string[] = [];
  for (const d of [...visibleDenies(model, f.grants), ...model.denies.fs.filter((x) => isWithin(x.path, '/etc'))]) {
    const kind = f.kind(d.path);
    if (d.access === 'all') {
      // Mode 000: the agent can neither list nor enter a denied directory.
      if (kind === 'dir') b.push('--perms', '0000', '--tmpfs', d.path, '--remount-ro', d.path);
      else if (kind === 'file') {
        b.push('--ro-bind', '/dev/null', d.path);
        maskedFiles.push(d.path);
      }
    } else if (kind !== 'missing') b.push('--ro-bind', d.path, d.path);
  }
  for (const s of f.socketMasks) b.push('--ro-bind', '/dev/null', s);

  const proxySocket = hasNet ? posix.join(proxyDir(f.session), 'proxy.sock') : undefined;
  if (hasNet) b.push('--bind', proxyDir(f.session), BOX_RUN);
  if (f.landlockHelper) b.push('--ro-bind', f.landlockHelper, BOX_HELPER);

  b.push('--clearenv');
  for (const [k, v] of env) b.push('--setenv', k, v);
  const cwdGranted = f.grants.some((g) => g.kind === 'dir' && isWithin(f.cwd, g.path));
  b.push('--chdir', cwdGranted ? f.cwd : model.home);
  b.push('--seccomp', String(SECCOMP_FD), '--');

  // Landlock: what the agent may read, write, execute and connect to.
  const landlock: string[] = [];
  if (f.landlockHelper) {
    landlock.push(BOX_HELPER, '--ro', '/usr', '--ro', '/etc', '--ro', '/proc', '--rw', '/dev', '--rw', '/tmp', '--rw', '/var/tmp');
    for (const t of TOP) if (f.topLinks[t] === undefined && f.kind(t) === 'dir') landlock.push('--ro', t);
    for (const g of f.grants) landlock.push(g.access === 'write' ? '--rw' : '--ro', g.path);
    for (const p of programs) landlock.push('--x', p);
    // The kernel checks execute on the ELF interpreter too; libraries are only mapped.
    for (const ld of DYNAMIC_LOADERS) landlock.push('--x', ld);
    if (hasNet) landlock.push('--connect', String(BOX_PROXY_PORT));
    if (boxBundle && !bundleOverSystem) landlock.push('--ro', boxBundle);
    landlock.push('--');
  }

  const inner: string[] = [];
  if (hasNet) {
    // socat forwards the box's loopback proxy port to the host-side proxy socket; the
    // agent starts once it listens (state 0A in /proc/net/tcp).
    inner.push('/bin/sh', '-c', forwarderInit(shQuote(f.socat!)), 'agentbox-init');
  }
  // In the box (never in `landlock`, which `agentbox exec` reuses): the hold and the logged filter.
  const boxLandlock = f.observe && landlock.length > 0 ? [landlock[0]!, '--hold-fd', String(f.observe.holdFd), ...landlock.slice(1, -1), '--seccomp-fd', String(f.observe.seccompLogFd), '--'] : landlock;
  inner.push(...boxLandlock, ...command);

  let argv: string[];
  const controls = ['bubblewrap: user, pid, ipc, uts, cgroup and network namespaces; no nested user namespaces', 'seccomp', 'grants bound from the fds opened at launch'];
  if (boxBundle) controls.push(`session CA trusted (${boxBundle})`);
  if (f.landlockHelper) controls.push('landlock');
  if (f.observe && f.landlockHelper) controls.push('file activity watched (fanotify on the grant mounts); Landlock, seccomp and file-call denials read from the kernel audit');
  if (f.socketMasks.length > 0) controls.push(`${f.socketMasks.length} unix sockets inside grants covered`);
  if (f.root) {
    const script = ['set -e'];
    for (const p of f.cgroupProcs) script.push(`echo $$ > ${shQuote(p)}`);
    if (f.memfdNoexec) script.push('echo 2 > /proc/sys/vm/memfd_noexec');
    for (const [, name] of TMPS) script.push(`mount -t tmpfs -o size=${f.tmpBytes},mode=1777,nosuid,nodev,noexec agentbox ${shQuote(tmpDir(name))}`);
    script.push(`exec ${shQuote(f.setpriv)} --reuid=${f.uid} --regid=${f.gid} --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"`);
    argv = [f.setpriv, '--pdeathsig', 'SIGKILL', '--', f.unshare, '--mount', '--pid', '--fork', '--kill-child=SIGKILL', '--propagation', 'private', '--', '/bin/sh', '-c', script.join('\n'), 'agentbox-outer', ...b, ...inner];
    controls.push('uid drop, no capabilities, no_new_privs', 'cgroup limits', '/tmp, /var/tmp, /dev/shm and writable grants noexec');
    if (f.memfdNoexec) controls.push('vm.memfd_noexec=2');
  } else {
    argv = [...b, ...inner];
  }
  if (f.setsid) {
    argv = [f.setsid, '--ctty', ...argv];
    controls.push('its own pseudo-terminal (never the launcher\'s)');
  }
  const mountPoints = { dirs: f.root ? TMPS.map(([, name]) => tmpDir(name)) : [], files: [] };
  // The grants' mounts, and the /dev/null masks over denied files (an open there is a denied read).
  const watchPaths = [...f.grants.filter((g) => g.kind !== 'socket').map((g) => g.path), ...maskedFiles, ...(model.learn?.programDirs ?? [])];
  return { argv, layers, env, proxySocket, seccompFd: SECCOMP_FD, binds, landlock, controls, mountPoints, usesPty: Boolean(f.setsid), watchPaths };
}
