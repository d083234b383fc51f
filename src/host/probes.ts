/**
 * Host probes: what this machine can enforce, measured rather than assumed. Each
 * probe runs the real tool where a version string alone would not prove it works.
 */
import { execa } from 'execa';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { whichSync } from './which.js';


export interface Probe {
  /** Short control name: bubblewrap, iptables, ... */
  name: string;
  /** What it is for, in a few words. */
  purpose: string;
  available: boolean;
  detail: string;
  /** How to get it when it is missing. */
  hint: string | undefined;
}

/** Absolute path of a program on PATH (plus the sbin directories), or undefined. */
export async function which(cmd: string): Promise<string | undefined> {
  return whichSync(cmd);
}

export async function version(cmd: string, args: string[] = ['--version']): Promise<{ ok: boolean; text: string }> {
  const path = await which(cmd);
  if (!path) return { ok: false, text: 'not installed' };
  const r = await execa(path, args, { reject: false, timeout: 10_000, stdin: 'ignore' });
  const text = `${String(r.stdout)}\n${String(r.stderr)}`.trim().split('\n')[0] ?? '';
  return { ok: r.exitCode === 0, text: text || `exit ${r.exitCode}` };
}

const read = (p: string) => {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
};

export async function probeApparmorLsm(): Promise<{ enabled: boolean; detail: string }> {
  const param = read('/sys/module/apparmor/parameters/enabled');
  if (param === undefined) return { enabled: false, detail: 'no apparmor module in this kernel' };
  if (param !== 'Y') return { enabled: false, detail: `apparmor parameter enabled=${param}` };
  const lsm = read('/sys/kernel/security/lsm');
  if (lsm !== undefined && !lsm.split(',').includes('apparmor')) return { enabled: false, detail: `not in the active LSM list (${lsm})` };
  return { enabled: true, detail: 'enabled' };
}

export async function probeSystemd(): Promise<{ running: boolean; detail: string }> {
  if (existsSync('/run/systemd/system')) return { running: true, detail: 'systemd is PID 1' };
  const comm = read('/proc/1/comm') ?? 'unknown';
  return { running: false, detail: `PID 1 is ${comm}` };
}

async function probeBubblewrap(): Promise<Probe> {
  const base = { name: 'bubblewrap', purpose: 'process runtime sandbox', hint: 'apt-get install bubblewrap' };
  const path = await which('bwrap');
  if (!path) return { ...base, available: false, detail: 'bwrap not installed' };
  const v = await version('bwrap');
  const r = await execa(path, ['--unshare-all', '--die-with-parent', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', 'true'], { reject: false, timeout: 10_000, stdin: 'ignore' });
  if (r.exitCode !== 0) {
    const restricted = read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1';
    return {
      ...base,
      available: false,
      detail: `${v.text} installed but cannot create namespaces: ${String(r.stderr).trim()}`,
      hint: restricted ? 'this kernel restricts unprivileged user namespaces (apparmor_restrict_unprivileged_userns=1): install the AppArmor profile agentbox generates for bwrap' : 'check kernel.unprivileged_userns_clone and user.max_user_namespaces',
    };
  }
  return { ...base, available: true, detail: `${v.text}, namespaces work` };
}

async function probeUserns(): Promise<Probe> {
  const restrict = read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns');
  const clone = read('/proc/sys/kernel/unprivileged_userns_clone');
  const max = read('/proc/sys/user/max_user_namespaces');
  const restricted = restrict === '1' || clone === '0' || max === '0';
  return {
    name: 'userns',
    purpose: 'unprivileged user namespaces',
    available: !restricted,
    detail: `apparmor_restrict_unprivileged_userns=${restrict ?? 'absent'}, unprivileged_userns_clone=${clone ?? 'absent'}, max_user_namespaces=${max ?? 'absent'}`,
    hint: restricted ? 'agentbox needs an AppArmor profile granting userns to its bwrap (Ubuntu 24.04 and later)' : undefined,
  };
}

async function probeLandlock(): Promise<Probe> {
  const base = { name: 'landlock', purpose: 'second file-system layer under bubblewrap', hint: 'a kernel 5.13+ with CONFIG_SECURITY_LANDLOCK and landlock in the lsm= list' };
  const lsm = read('/sys/kernel/security/lsm');
  if (lsm !== undefined) return { ...base, available: lsm.split(',').includes('landlock'), detail: `active LSMs: ${lsm}` };
  // securityfs is not mounted: ask the kernel for the ABI version directly.
  const py = await which('python3');
  if (!py) return { ...base, available: false, detail: 'unknown (securityfs not mounted and no python3 to ask the kernel)' };
  const r = await execa(py, ['-c', 'import ctypes;l=ctypes.CDLL(None,use_errno=True);print(l.syscall(444,None,0,1))'], { reject: false, timeout: 10_000, stdin: 'ignore' });
  const abi = Number(String(r.stdout).trim());
  return abi > 0 ? { ...base, available: true, detail: `ABI ${abi}` } : { ...base, available: false, detail: 'landlock_create_ruleset refused' };
}

function probeSeccomp(): Probe {
  const status = read('/proc/self/status') ?? '';
  const ok = /^Seccomp:/m.test(status);
  return { name: 'seccomp', purpose: 'system call filter', available: ok, detail: ok ? 'supported' : 'no Seccomp field in /proc/self/status', hint: ok ? undefined : 'a kernel with CONFIG_SECCOMP_FILTER' };
}

function probeCgroups(): Probe {
  const cg = read('/proc/cgroups') ?? '';
  const v1 = cg
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'))
    .filter((f) => f[3] === '1' && f[1] !== '0')
    .map((f) => f[0]);
  const v2 = read('/sys/fs/cgroup/cgroup.controllers') ?? read('/sys/fs/cgroup/unified/cgroup.controllers');
  const v2root = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : existsSync('/sys/fs/cgroup/unified') ? '/sys/fs/cgroup/unified' : undefined;
  const limits = ['memory', 'pids'].filter((c) => v1.includes(c) || (v2 ?? '').split(' ').includes(c));
  return {
    name: 'cgroups',
    purpose: 'memory, pids and cpu limits; freezing for quarantine',
    available: limits.length === 2,
    detail: `v1 controllers: ${v1.join(' ') || 'none'}; v2${v2root ? ` at ${v2root}` : ' not mounted'}${v2 !== undefined ? ` controllers: ${v2 || 'none (freeze and kill only)'}` : ''}`,
    hint: limits.length === 2 ? undefined : 'mount the memory and pids controllers (cgroup v1) or enable them in cgroup v2 subtree_control',
  };
}

async function probeTool(name: string, purpose: string, cmd: string, hint: string, args?: string[]): Promise<Probe> {
  const v = await version(cmd, args);
  return { name, purpose, available: v.ok, detail: v.text, hint: v.ok ? undefined : hint };
}

/** The Docker Engine at DOCKER_HOST (default /var/run/docker.sock): does it answer, with which runtimes, and is agentbox's base image in it. */
export async function probeDocker(): Promise<Probe[]> {
  const where = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  const engine = { name: 'dockerd', purpose: 'container runtime engine', hint: 'apt-get install docker.io, then start dockerd (or set DOCKER_HOST)' };
  const runsc = { name: 'runsc-runtime', purpose: 'gVisor isolation for containers', hint: 'add runsc to daemon.json "runtimes" with runtimeArgs ["--network=none", "--oci-seccomp", "--host-uds=open"], restart dockerd' };
  const image = { name: 'base-image', purpose: 'the container runtime\'s image', hint: 'agentbox image build' };
  try {
    const { default: Dockerode } = await import('dockerode');
    const d = new Dockerode();
    const info = (await Promise.race([d.info(), new Promise((_, rej) => setTimeout(() => rej(new Error('no answer in 3 s')), 3000))])) as { ServerVersion?: string; Runtimes?: Record<string, unknown> };
    let img: string | undefined;
    try {
      const i = await d.getImage('agentbox/base:1').inspect();
      img = `agentbox/base:1 ${i.Id.slice(7, 19)}`;
    } catch {
      img = undefined;
    }
    return [
      { ...engine, available: true, detail: `Docker Engine ${info.ServerVersion ?? '?'} at ${where}`, hint: undefined },
      info.Runtimes?.runsc ? { ...runsc, available: true, detail: 'runsc is registered with the Engine', hint: undefined } : { ...runsc, available: false, detail: `the Engine has runtimes ${Object.keys(info.Runtimes ?? {}).join(', ')}, not runsc` },
      img ? { ...image, available: true, detail: img, hint: undefined } : { ...image, available: false, detail: 'agentbox/base:1 is not in the Engine' },
    ];
  } catch (e) {
    const why = `no Docker Engine answers at ${where} (${(e as Error).message.split('\n')[0]})`;
    return [
      { ...engine, available: false, detail: why },
      { ...runsc, available: false, detail: 'needs the Engine' },
      { ...image, available: false, detail: 'needs the Engine' },
    ];
  }
}

function probeKvm(): Probe {
  let rw = false;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    rw = true;
  } catch {
    rw = false;
  }
  return {
    name: 'kvm',
    purpose: 'micro-VM acceleration',
    available: rw,
    detail: rw ? '/dev/kvm present (a boot probe decides whether guests use it; TCG otherwise)' : '/dev/kvm absent or not accessible (micro-VMs use TCG emulation)',
    hint: rw ? undefined : 'enable virtualisation, or accept slower TCG boots',
  };
}

/** The Cedar policy engine (WebAssembly) loads and evaluates here. */
export async function probeCedar(): Promise<Probe> {
  const base = { name: 'cedar', purpose: 'organisation policy (policy check, launch --policy)', hint: 'reinstall agentbox (npm ci): @cedar-policy/cedar-wasm is missing or broken' };
  try {
    const { cedarVersion } = await import('./cedar-engine.js');
    return { ...base, available: true, detail: `Cedar ${cedarVersion()} (WebAssembly)`, hint: undefined };
  } catch (e) {
    return { ...base, available: false, detail: (e as Error).message.split('\n')[0]! };
  }
}

/** Every probe `agentbox doctor` reports; the runtimes' own (their images) come from the caller. */
export async function allProbes(runtimeProbes: () => Promise<Probe>[] = () => []): Promise<Probe[]> {
  const lsm = await probeApparmorLsm();
  const sd = await probeSystemd();
  const aaParser = await version('apparmor_parser');
  const docker = probeDocker();
  const list = await Promise.all([
    probeBubblewrap(),
    probeUserns(),
    probeLandlock(),
    Promise.resolve(probeSeccomp()),
    Promise.resolve(probeCgroups()),
    probeTool('iptables', 'owner-match egress rules', 'iptables', 'apt-get install iptables'),
    probeTool('nft', 'nftables egress rules', 'nft', 'apt-get install nftables'),
    Promise.resolve<Probe>({ name: 'apparmor_parser', purpose: 'compile and check AppArmor profiles', available: aaParser.ok, detail: aaParser.text, hint: aaParser.ok ? undefined : 'apt-get install apparmor' }),
    Promise.resolve<Probe>({ name: 'apparmor-lsm', purpose: 'enforce AppArmor profiles', available: lsm.enabled, detail: lsm.detail, hint: lsm.enabled ? undefined : 'boot with apparmor=1 security=apparmor (profiles can still be generated and checked)' }),
    Promise.resolve<Probe>({ name: 'systemd', purpose: 'run agents as hardened services', available: sd.running, detail: sd.detail, hint: sd.running ? undefined : 'units can still be generated, verified and installed into an image with apply --root' }),
    probeTool('systemd-analyze', 'verify units and score their exposure', 'systemd-analyze', 'apt-get install systemd'),
    probeTool('systemd-nspawn', 'boot a real systemd in a container', 'systemd-nspawn', 'apt-get install systemd-container'),
    probeTool('runsc', 'gVisor isolation for containers', 'runsc', 'apt-get install runsc', ['--version']),
    probeTool('qemu', 'micro-VM runtime', 'qemu-system-x86_64', 'apt-get install qemu-system-x86'),
    Promise.resolve(probeKvm()),
    ...runtimeProbes(),
    probeCedar(),
  ]);
  return [...list, ...(await docker)];
}
