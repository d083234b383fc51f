/**
 * The micro-VM runtime's box, as data (pure): the QEMU `-M microvm` command line and
 * the guest's configuration for an agent.
 *
 * - its own kernel (Debian's), TCG unless a KVM boot probe passed, memory and CPUs from
 *   the limits, no default devices, no option ROMs, no reboot;
 * - the host's /usr read-only (the programs), each grant a 9p share mounted at its host
 *   path, read-only unless `fs:write` (then the session overlay's merged directory:
 *   revert on exit); denies inside grants covered in the guest;
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
import { isWithin } from '../manifest/normalise.js';
import { agentEnvironment } from '../generate/linux/systemd.js';
import { usesProxy, type Model } from '../model/types.js';
import { effectiveFs } from '../plan/plan.js';
import type { Overlay, PathKind } from './bwrap.js';

export const GUEST_PROXY = '10.0.2.100:3128';
export const DEFAULT_VM_MEMORY = 512 * 1024 ** 2;
/** How long the guest has to reach the agent (guest-exec writes /ctl/started) before the launcher gives up. */
export const BOOT_DEADLINE_SECONDS = { tcg: 30, kvm: 15 } as const;

export interface MicrovmFacts {
  sessionDir: string;
  kernel: string;
  initramfs: string;
  accel: 'kvm' | 'tcg';
  uid: number;
  gid: number;
  kind: (path: string) => PathKind;
  cwd: string;
  term: string | undefined;
  socat: string;
}

export interface MicrovmPlan {
  argv: string[];
  /** /ctl/config: NUL-separated records for guest-exec. */
  config: Buffer;
  ctlDir: string;
  qmpSocket: string;
  overlays: Overlay[];
  proxySocket: string | undefined;
  /** Granted files to bind (read-only) into a session directory of their own before boot. */
  fileBinds: { file: string; dir: string; name: string }[];
}

/** Session paths end up inside QEMU option strings, where ',' separates options. */
export const SAFE_SESSION_PATH = /^\/[A-Za-z0-9._/-]*$/;

export function buildMicrovmPlan(model: Model, command: string[], f: MicrovmFacts): MicrovmPlan {
  const { fs } = effectiveFs(model);
  const hasNet = usesProxy(model);
  const env = agentEnvironment(model, hasNet ? `http://${GUEST_PROXY}` : undefined);
  if (f.term) env.push(['TERM', f.term]);
  const ctlDir = posix.join(f.sessionDir, 'ctl');
  const qmpSocket = posix.join(f.sessionDir, 'qmp.sock');
  const proxySocket = hasNet ? posix.join(f.sessionDir, 'run', 'proxy.sock') : undefined;

  const records: string[][] = [];
  const overlays: Overlay[] = [];
  const fileBinds: { file: string; dir: string; name: string }[] = [];
  const shares: { tag: string; path: string; readonly: boolean }[] = [];
  for (const g of fs) {
    if (f.kind(g.path) === 'missing') continue;
    const tag = `g${shares.length}`;
    if (g.access === 'write') {
      const base = posix.join(f.sessionDir, 'overlay', String(overlays.length));
      const o = { path: g.path, upper: `${base}/upper`, work: `${base}/work`, merged: `${base}/merged`, lower: `${base}/lower` };
      overlays.push(o);
      shares.push({ tag, path: o.merged, readonly: false });
      records.push(['mount', tag, g.path, 'rw']);
    } else if (f.kind(g.path) === 'dir') {
      shares.push({ tag, path: g.path, readonly: true });
      records.push(['mount', tag, g.path, 'ro']);
    } else {
      // 9p shares directories: a granted file is bind-mounted (by the launcher) alone
      // into a directory of the session, shared, and bound at its path in the guest.
      const dir = posix.join(f.sessionDir, 'files', String(fileBinds.length));
      fileBinds.push({ file: g.path, dir, name: posix.basename(g.path) });
      shares.push({ tag, path: dir, readonly: true });
      records.push(['mount', tag, `/run/agentbox-files/${tag}`, 'ro'], ['bind', `/run/agentbox-files/${tag}/${posix.basename(g.path)}`, g.path]);
    }
  }
  for (const d of model.denies.fs) {
    if (d.access !== 'all' || !fs.some((g) => isWithin(d.path, g.path))) continue;
    const kind = f.kind(d.path);
    if (kind === 'dir') records.push(['deny-dir', d.path]);
    else if (kind === 'file') records.push(['deny-file', d.path]);
  }
  for (const a of command) records.push(['arg', a]);
  for (const [k, v] of env) records.push(['env', `${k}=${v}`]);
  records.push(['uid', String(f.uid)], ['gid', String(f.gid)]);
  if (model.limits.pids !== undefined) records.push(['nproc', String(model.limits.pids)]);
  const cwdGranted = fs.some((g) => isWithin(f.cwd, g.path));
  records.push(['cwd', cwdGranted ? f.cwd : fs.some((g) => isWithin(model.home, g.path)) ? model.home : '/']);
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
    '-chardev', `file,id=out,path=${posix.join(f.sessionDir, 'out.fifo')}`, '-device', 'virtconsole,chardev=out,nr=0',
    '-chardev', `file,id=err,path=${posix.join(f.sessionDir, 'err.fifo')}`, '-device', 'virtconsole,chardev=err,nr=1',
    '-serial', `file:${posix.join(f.sessionDir, 'console.log')}`,
    '-fsdev', 'local,id=usr,path=/usr,security_model=passthrough,readonly=on', '-device', 'virtio-9p-device,fsdev=usr,mount_tag=usr',
    '-fsdev', `local,id=ctl,path=${ctlDir},security_model=passthrough`, '-device', 'virtio-9p-device,fsdev=ctl,mount_tag=ctl',
  ];
  for (const s of shares) argv.push('-fsdev', `local,id=${s.tag},path=${s.path},security_model=passthrough${s.readonly ? ',readonly=on' : ''}`, '-device', `virtio-9p-device,fsdev=${s.tag},mount_tag=${s.tag}`);
  if (proxySocket) {
    argv.push('-netdev', `user,id=net0,restrict=on,guestfwd=tcp:${GUEST_PROXY}-cmd:${f.socat} - UNIX-CONNECT:${proxySocket}`, '-device', 'virtio-net-device,netdev=net0');
  }
  argv.push('-qmp', `unix:${qmpSocket},server=on,wait=off`);
  return { argv, config, ctlDir, qmpSocket, overlays, proxySocket, fileBinds };
}
