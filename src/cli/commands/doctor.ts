/**
 * `agentbox doctor`: what this host can enforce, what is missing, how to install it.
 */
import type { Command } from 'commander';
import si from 'systeminformation';
import { allProbes, type Probe } from '../../host/probes.js';
import type { Io } from '../io.js';

export async function doctorCommand(io: Io): Promise<number> {
  const [os, cpu, mem, probes] = await Promise.all([si.osInfo(), si.cpu(), si.mem(), allProbes()]);
  const host = {
    os: `${os.distro} ${os.release}`.trim(),
    kernel: os.kernel,
    arch: os.arch,
    cpus: cpu.cores,
    memoryBytes: mem.total,
    root: process.getuid?.() === 0,
  };
  const runtimes = runtimeReadiness(probes);
  if (io.json) {
    io.data({ host, probes, runtimes });
    return 0;
  }
  io.out(`${host.os}, kernel ${host.kernel} (${host.arch}), ${host.cpus} cores, ${(host.memoryBytes / 1024 ** 3).toFixed(1)} GiB${host.root ? ', running as root' : ''}`);
  io.out('');
  const width = Math.max(...probes.map((p) => p.name.length));
  for (const p of probes) {
    const mark = p.available ? io.style.green('ok     ') : io.style.yellow('missing');
    io.out(`${mark}  ${p.name.padEnd(width)}  ${p.detail}`);
    if (!p.available && p.hint) io.out(`         ${' '.repeat(width)}  ${io.style.dim(`→ ${p.hint}`)}`);
  }
  io.out('');
  for (const r of runtimes) io.out(`${r.ready ? io.style.green('ready  ') : io.style.yellow('not yet')}  ${r.name}: ${r.why}`);
  return 0;
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

export function registerDoctor(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('doctor')
    .description('report what this host can enforce, what is missing and how to install it')
    .addHelpText('after', `
Examples:
  agentbox doctor
  agentbox doctor --json | jq '.probes[] | select(.available | not) | .name'`)
    .action(() => run((io) => doctorCommand(io)));
}
