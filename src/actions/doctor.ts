/**
 * `doctor`: the host's facts, every probe of what it can enforce, and which runtimes
 * are ready here.
 */
import si from 'systeminformation';
import { existsSync } from 'node:fs';
import { imageCache } from '../env.js';
import { allProbes, type Probe } from '../host/probes.js';
import { readMicrovmImage } from '../runtimes/microvm/image.js';
import { auditStatus, FILE_WATCH, observationAvailable, seccompActionsLogged } from '../host/watchers.js';
import { landlockHelper } from './launch.js';
import { spawnSync } from 'node:child_process';

export type { Probe } from '../host/probes.js';

export interface HostReport {
  host: { os: string; kernel: string; arch: string; cpus: number; memoryBytes: number; root: boolean };
  probes: Probe[];
  runtimes: { name: string; ready: boolean; why: string }[];
}

/** The micro-VM kernel and initramfs built by `agentbox image build --microvm`, and the accelerator its boot probe chose. */
async function probeMicrovmImage(): Promise<Probe> {
  const cache = imageCache();
  const img = readMicrovmImage(cache);
  const base = { name: 'microvm-image', purpose: 'the micro-VM runtime\'s kernel and initramfs', hint: 'agentbox image build --microvm' };
  return img && existsSync(img.kernel) && existsSync(img.initramfs)
    ? { ...base, available: true, detail: `kernel ${img.version}, ${img.accel === 'kvm' ? 'KVM (boot probe passed)' : 'TCG (the KVM boot probe failed or there is no /dev/kvm)'}`, hint: undefined }
    : { ...base, available: false, detail: `not built in ${cache}` };
}

/** agentboxd's health (`agentbox daemon status`): the egress proxy of system-service agents. */
async function probeDaemon(): Promise<Probe> {
  const base = { name: 'agentboxd', purpose: 'the egress proxy and control socket of agents installed by apply' };
  if (process.getuid?.() !== 0) return { ...base, available: false, detail: 'its state is root\'s (/var/lib/agentbox): run agentbox doctor as root to see it', hint: undefined };
  const { daemonHealth } = await import('./daemon.js');
  const h = await daemonHealth().catch((e: Error) => e);
  if (h instanceof Error) return { ...base, available: false, detail: `cannot read its state: ${h.message.split('\n')[0]}`, hint: undefined };
  if (!h.running) return { ...base, available: false, detail: h.problem ?? 'not running', hint: 'systemctl enable --now agentboxd (apply installs it with any agent that has network grants)' };
  return { ...base, available: h.problem === null, detail: `pid ${h.pid}, ${h.agents.length} agent${h.agents.length === 1 ? '' : 's'}${h.problem ? `; ${h.problem}` : `: ${h.agents.map((a) => `${a.agent} on ${a.listen}`).join(', ')}`}`, hint: h.problem ? 'agentbox daemon status; journalctl -u agentboxd' : undefined };
}

/**
 * What the kernel can tell about a box (launch's file activity and denials): fanotify,
 * the audit subsystem, and whether Landlock and seccomp log their refusals there.
 */
export async function probeObservation(): Promise<Probe[]> {
  const root = process.getuid?.() === 0;
  const avail = observationAvailable();
  const out: Probe[] = [];
  const fan = { name: 'fanotify', purpose: 'file activity of the box (reads, writes, runs per path, in the audit log)', hint: root ? 'a kernel with CONFIG_FANOTIFY; npm run build for the file-watch helper' : 'run agentbox as root' };
  if (!avail.available) out.push({ ...fan, available: false, detail: avail.missing.join('; ') });
  else {
    // file-watch marks its own mount namespace's / through /proc/self: that it can mark at all.
    const r = spawnSync(FILE_WATCH(), ['--pid', String(process.pid), '/'], { input: '', encoding: 'utf8', timeout: 5000 });
    out.push({ ...fan, available: r.status === 0 && r.stdout.startsWith('ready'), detail: r.status === 0 ? 'mount marks work (FAN_OPEN, FAN_OPEN_EXEC, FAN_CLOSE_WRITE, FAN_CLOSE_NOWRITE, FAN_MODIFY)' : (r.stderr || 'file-watch failed').trim().split('\n').pop()! });
  }
  const audit = { name: 'kernel-audit', purpose: 'Landlock, seccomp and file-call denials of the box (audit netlink, read-only group)', hint: 'a kernel with CONFIG_AUDIT and CONFIG_AUDITSYSCALL; agentbox needs root (CAP_AUDIT_READ, CAP_AUDIT_CONTROL for its one rule)' };
  if (!root) out.push({ ...audit, available: false, detail: 'not root: the audit socket is root\'s' });
  else {
    const a = auditStatus();
    const state = a.enabled === 0 ? 'auditing is off: launch turns it on (the kernel logs nothing while it is off)' : a.enabled === 2 ? 'auditing is locked on' : a.enabled === 1 ? 'auditing is on' : 'the audit state is unknown';
    out.push({ ...audit, available: a.readable && a.enabled !== -1, detail: a.readable ? state : `records cannot be read: ${a.detail}` });
  }
  const helper = landlockHelper();
  const abi = helper ? Number(spawnSync(helper, ['--abi'], { encoding: 'utf8' }).stdout.trim()) : 0;
  out.push({ name: 'landlock-audit', purpose: 'Landlock denials logged by the kernel', available: abi >= 7, detail: abi >= 7 ? `ABI ${abi}: denials after the agent's exec are logged (LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON)` : abi > 0 ? `ABI ${abi}: this kernel's Landlock does not log (ABI 7, Linux 6.15+); failed file calls are still read from the audit rule` : 'no Landlock', hint: abi >= 7 ? undefined : 'Linux 6.15 or later' });
  const logged = seccompActionsLogged();
  out.push({ name: 'seccomp-audit', purpose: 'the box\'s seccomp refusals logged by the kernel', available: logged?.includes('errno') ?? false, detail: logged ? `kernel.seccomp.actions_logged: ${logged.join(' ')}` : 'kernel.seccomp.actions_logged cannot be read', hint: logged?.includes('errno') ? undefined : 'add errno to /proc/sys/kernel/seccomp/actions_logged (the box\'s filter refuses with EPERM and asks for logging)' });
  return out;
}

export async function doctor(): Promise<HostReport> {
  const [os, cpu, mem, probes] = await Promise.all([si.osInfo(), si.cpu(), si.mem(), allProbes(() => [probeMicrovmImage(), probeDaemon()]).then(async (p) => [...p, ...(await probeObservation())])]);
  const host = {
    os: `${os.distro} ${os.release}`.trim(),
    kernel: os.kernel,
    arch: os.arch,
    cpus: cpu.cores,
    memoryBytes: mem.total,
    root: process.getuid?.() === 0,
  };
  return { host, probes, runtimes: runtimeReadiness(probes) };
}

/** Which runtimes can run here, derived from the probes. */
export function runtimeReadiness(probes: Probe[]): { name: string; ready: boolean; why: string }[] {
  const ok = (n: string) => probes.find((p) => p.name === n)?.available ?? false;
  return [
    {
      name: 'process runtime',
      ready: ok('bubblewrap') && ok('landlock') && ok('seccomp'),
      why: !ok('bubblewrap')
        ? ok('userns') ? 'needs bubblewrap' : 'user namespaces are restricted: install the profile from `agentbox userns-profile`'
        : `bubblewrap, ${ok('landlock') ? 'Landlock' : 'no Landlock (launch fails closed)'}, seccomp${ok('cgroups') ? ', cgroup limits (as root)' : ', no cgroup limits (manifests with limits fail closed)'}`,
    },
    {
      name: 'container runtime (runc)',
      ready: ok('dockerd') && ok('base-image') && process.getuid?.() === 0,
      why: !ok('dockerd') ? 'needs a Docker Engine (apt-get install docker.io; start dockerd or set DOCKER_HOST)' : !ok('base-image') ? 'the Engine answers; build the image: agentbox image build' : process.getuid?.() !== 0 ? 'needs root (the Engine and the session overlays)' : 'Docker Engine, agentbox/base:1, read-only root, no capabilities, seccomp, no network but the proxy',
    },
    {
      name: 'container runtime (gVisor)',
      ready: ok('dockerd') && ok('base-image') && ok('runsc-runtime') && process.getuid?.() === 0,
      why: !ok('runsc') ? 'needs gVisor: apt-get install runsc, and register it with the Engine' : !ok('dockerd') || !ok('base-image') ? 'needs the Engine and the base image, as for runc' : !ok('runsc-runtime') ? 'runsc is installed but not registered with the Engine (daemon.json "runtimes")' : 'runsc registered; the agent runs on gVisor\'s kernel',
    },
    {
      name: 'micro-VM runtime',
      ready: ok('qemu') && ok('microvm-image') && process.getuid?.() === 0,
      why: !ok('qemu') ? 'needs QEMU: apt-get install qemu-system-x86' : !ok('microvm-image') ? 'QEMU is installed; build the kernel and initramfs: agentbox image build --microvm' : process.getuid?.() !== 0 ? 'needs root (9p passthrough, session overlays)' : `QEMU -M microvm, ${probes.find((p) => p.name === 'microvm-image')?.detail}`,
    },
    { name: 'system service (apply)', ready: ok('systemd') && ok('iptables'), why: ok('systemd') ? 'systemd is PID 1' : 'systemd is not PID 1 here: use apply --root DIR to install into an image' },
  ];
}

