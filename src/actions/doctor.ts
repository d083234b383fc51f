/**
 * `doctor`: the host's facts, every probe of what it can enforce, and which runtimes
 * are ready here.
 */
import si from 'systeminformation';
import { existsSync } from 'node:fs';
import { imageCache } from '../env.js';
import { allProbes, type Probe } from '../host/probes.js';
import { readMicrovmImage } from '../runtimes/microvm/image.js';

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

export async function doctor(): Promise<HostReport> {
  const [os, cpu, mem, probes] = await Promise.all([si.osInfo(), si.cpu(), si.mem(), allProbes(() => [probeMicrovmImage(), probeDaemon()])]);
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

