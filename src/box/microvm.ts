/**
 * The micro-VM runtime's box, as data (pure): the QEMU `-M microvm` command line and
 * the guest's configuration for an agent.
 *
 * - its own kernel (Debian's), TCG unless a KVM boot probe passed, memory and CPUs from
 *   the limits, no default devices, no option ROMs, no reboot;
 * - the host's /usr read-only (the programs), each grant a 9p share of the session's
 *   read-only bind of the fd opened at launch, mounted at its host path, read-only
 *   unless `fs:write` (then its layer: the overlay's merged directory, or a file's
 *   session copy; noexec unless a program is granted inside it); 9p with access=user,
 *   so what the agent creates is owned by the agent's uid; denies inside grants
 *   covered in the guest;
 * - the only network: QEMU user-mode networking with `restrict=on`, whose one exit is
 *   a guestfwd from 10.0.2.100:3128 to the session's proxy socket (HTTP(S)_PROXY);
 * - the agent as the agent uid with no_new_privs, RLIMIT_NPROC = limits.pids and the
 *   process runtime's seccomp filter (guest-exec), stdout and stderr on two virtio
 *   consoles (FIFOs of the session the launcher relays to its own stdout and stderr),
 *   the exit code back through the control share;
 * - QMP on a unix socket of the session, for `stop` (quarantine) and `cont`.
 *
 * Manifest values reach the guest only through /ctl/config, NUL-separated records
 * read by guest-exec (C): never a shell, never the QEMU command line (paths there are
 * the session's own, from a checked alphabet).
 */
import { posix } from 'node:path';
import { isWithin } from '../model/paths.js';
import { agentEnvironment, BOX_CA_BUNDLE } from '../model/environment.js';
import { type Model } from '../model/types.js';
import { usesProxy } from '../model/grants.js';
import { CA_BUNDLE_NAME, type BoxEgress, grantBind, layerNeedsExec, layersFor, proxyDir, visibleDenies, type GrantFact, type LayerPaths, type PathKind, type SessionPaths } from './common.js';

export const GUEST_PROXY = '10.0.2.100:3128';
export const DEFAULT_VM_MEMORY = 512 * 1024 ** 2;
/** How long the guest has to reach the agent (guest-exec writes /ctl/started) before the launcher gives up. */
export const BOOT_DEADLINE_SECONDS = { tcg: 30, kvm: 15 } as const;

export interface MicrovmFacts {
  session: SessionPaths;
  kernel: string;
  initramfs: string;
  accel: 'kvm' | 'tcg';
  uid: number;
  gid: number;
  /** What is at a denied path. */
  kind: (path: string) => PathKind;
  cwd: string;
  term: string | undefined;
  socat: string;
  /** The existing effective grants, as opened. */
  grants: GrantFact[];
  /** The session CA bundle (the runtime copies it into the control share) and credential placeholders. */
  egress?: BoxEgress;
  /** The host's clock (ms since the epoch) the guest starts with. */
  now?: number;
}

export interface MicrovmPlan {
  argv: string[];
  /** /ctl/config: NUL-separated records for guest-exec. */
  config: Buffer;
  ctlDir: string;
  qmpSocket: string;
  layers: LayerPaths[];
  proxySocket: string | undefined;
  /**
   * Host binds the runner makes before boot: grant i (its opened fd, or its layer's copy
   * for a writable file) at `at`; a file goes alone into a directory 9p can share.
   */
  binds: { grant: number; at: string; kind: 'dir' | 'file' | 'socket'; source: 'fd' | 'copy' }[];
  /** The controls this box applies, for the audit log. */
  controls: string[];
}

/** Session paths end up inside QEMU option strings, where ',' separates options. */
export const SAFE_SESSION_PATH = /^\/[A-Za-z0-9._/-]*$/;

export function buildMicrovmPlan(model: Model, command: string[], f: MicrovmFacts): MicrovmPlan {
  const hasNet = usesProxy(model);
  const env = agentEnvironment(model, hasNet ? `http://${GUEST_PROXY}` : undefined, { ...(f.egress?.caBundle ? { caBundle: BOX_CA_BUNDLE } : {}), placeholders: f.egress?.placeholders ?? {} });
  if (f.term) env.push(['TERM', f.term]);
  const ctlDir = posix.join(f.session.dir, 'ctl');
  const qmpSocket = posix.join(f.session.run, 'qmp.sock');
  const proxySocket = hasNet ? posix.join(proxyDir(f.session), 'proxy.sock') : undefined;
  const layers = layersFor(f.session, f.grants);

  const records: string[][] = [];
  const binds: MicrovmPlan['binds'] = [];
  const shares: { tag: string; path: string; readonly: boolean }[] = [];
  f.grants.forEach((g, i) => {
    const tag = `g${shares.length}`;
    const layer = g.layer !== undefined ? layers.find((l) => l.index === g.layer) : undefined;
    const mode = g.access !== 'write' ? 'ro' : layerNeedsExec(model, command, g.path) ? 'rwx' : 'rw';
    if (g.kind === 'socket') return; // 9p cannot carry a host socket: nothing to reach
    if (layer?.kind === 'dir') {
      shares.push({ tag, path: layer.merged, readonly: false });
      records.push(['mount', tag, g.path, mode]);
    } else if (g.kind === 'dir') {
      const at = grantBind(f.session, i);
      binds.push({ grant: i, at, kind: 'dir', source: 'fd' });
      shares.push({ tag, path: at, readonly: true });
      records.push(['mount', tag, g.path, 'ro']);
    } else {
      // 9p shares directories: a granted file (or a writable file's session copy) is
      // bound alone into a directory of the session, shared, and bound at its path.
      const dir = grantBind(f.session, i);
      const name = posix.basename(g.path);
      binds.push({ grant: i, at: posix.join(dir, name), kind: 'file', source: layer ? 'copy' : 'fd' });
      shares.push({ tag, path: dir, readonly: !layer });
      records.push(['mount', tag, `/run/agentbox-files/${tag}`, layer ? 'rw' : 'ro'], ['bind', `/run/agentbox-files/${tag}/${name}`, g.path, mode]);
    }
  });
  for (const d of visibleDenies(model, f.grants)) {
    if (d.access !== 'all') continue;
    const kind = f.kind(d.path);
    if (kind === 'dir') records.push(['deny-dir', d.path]);
    else if (kind === 'file') records.push(['deny-file', d.path]);
  }
  // The session CA bundle, copied into the control share by the runtime, over the guest's system bundle.
  if (f.egress?.caBundle) records.push(['bind', `/ctl/${CA_BUNDLE_NAME}`, BOX_CA_BUNDLE, 'ro']);
  for (const a of command) records.push(['arg', a]);
  for (const [k, v] of env) records.push(['env', `${k}=${v}`]);
  records.push(['uid', String(f.uid)], ['gid', String(f.gid)]);
  // The host's clock: -M microvm has no RTC, and TLS needs the date.
  if (f.now !== undefined) records.push(['time', String(Math.floor(f.now / 1000))]);
  if (model.limits.pids !== undefined) records.push(['nproc', String(model.limits.pids)]);
  const dirGrant = (p: string) => f.grants.some((g) => g.kind === 'dir' && isWithin(p, g.path));
  records.push(['cwd', dirGrant(f.cwd) ? f.cwd : dirGrant(model.home) ? model.home : '/']);
  const config = Buffer.concat(records.flat().map((s) => Buffer.from(`${s}\0`, 'utf8')));
  const memMiB = Math.max(128, Math.floor((model.limits.memoryBytes ?? DEFAULT_VM_MEMORY) / 1024 ** 2));
  const cpus = Math.max(1, Math.ceil(model.limits.cpus ?? 1));
  const argv = [
    'qemu-system-x86_64',
    '-M', 'microvm,x-option-roms=off,rtc=off',
    '-accel', f.accel,
    '-cpu', f.accel === 'kvm' ? 'host' : 'max',
    '-m', `${memMiB}M`,
    '-smp', String(cpus),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-kernel', f.kernel,
    '-initrd', f.initramfs,
    // lpj and tsc=reliable skip the delay-loop and TSC calibration, which are slow (and
    // were seen to stall) under TCG; tsc_early_khz gives the TSC frequency outright:
    // without it Debian's 6.1.192 kernel waits forever for a calibration source that
    // -M microvm does not have (no PIT/HPET), before printing anything.
    '-append', 'console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init lpj=2000000 tsc=reliable tsc_early_khz=2000000 no_timer_check',
    '-device', 'virtio-serial-device,max_ports=4',
    '-chardev', `file,id=out,path=${posix.join(f.session.dir, 'out.fifo')}`, '-device', 'virtconsole,chardev=out,nr=0',
    '-chardev', `file,id=err,path=${posix.join(f.session.dir, 'err.fifo')}`, '-device', 'virtconsole,chardev=err,nr=1',
    '-serial', `file:${posix.join(f.session.dir, 'console.log')}`,
    '-fsdev', 'local,id=usr,path=/usr,security_model=passthrough,readonly=on', '-device', 'virtio-9p-device,fsdev=usr,mount_tag=usr',
    '-fsdev', `local,id=ctl,path=${ctlDir},security_model=passthrough`, '-device', 'virtio-9p-device,fsdev=ctl,mount_tag=ctl',
  ];
  for (const s of shares) argv.push('-fsdev', `local,id=${s.tag},path=${s.path},security_model=passthrough,multidevs=remap${s.readonly ? ',readonly=on' : ''}`, '-device', `virtio-9p-device,fsdev=${s.tag},mount_tag=${s.tag}`);
  if (proxySocket) {
    argv.push('-netdev', `user,id=net0,restrict=on,guestfwd=tcp:${GUEST_PROXY}-cmd:${f.socat} -b 262144 - UNIX-CONNECT:${proxySocket}`, '-device', 'virtio-net-device,netdev=net0');
  }
  argv.push('-qmp', `unix:${qmpSocket},server=on,wait=off`);
  const controls = ['micro-VM: its own kernel, user namespaces off, 9p shares of the grants only', 'seccomp (guest)', 'grants bound from fds opened at launch', 'uid drop, no_new_privs', 'writable grants and /tmp noexec'];
  return { argv, config, ctlDir, qmpSocket, layers, proxySocket, binds, controls };
}
