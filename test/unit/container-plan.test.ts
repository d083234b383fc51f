/**
 * The container runtime's box as data: every hardening option present, grants bound at
 * their paths (read-only unless fs:write, writes through the session overlay), denies
 * covering them, no host socket, the proxy socket the only way out, and the runsc
 * differences (pids as RLIMIT_NPROC, the statx shim). The seccomp profile is the
 * process runtime's filter, rule for rule.
 */
import { describe, expect, it } from 'vitest';
import { buildContainerPlan, dockerRunArgs, memfdGateInit, STATX_COMPAT_TARGET, type ContainerFacts } from '../../src/box/container.js';
import { CLONE_NEW_FLAGS, DENIED_SYSCALLS_X86_64, dockerSeccompProfile } from '../../src/box/seccomp.js';
import { model } from '../helpers/load.js';

const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: c }
extends: [organizer]
agent: { command: [/usr/bin/python3, /home/user/agent.py], env: { MODE: fast } }
capabilities:
  - fs:read:~/Documents
  - fs:write:~/Documents/out
  - net:connect:api.example.com:443
limits: { pids: 64, memory: 512MiB, cpus: 1.5 }
`);
const session = { dir: '/var/lib/agentbox/sessions/c-1', run: '/run/agentbox/c-1' };
const facts = (over: Partial<ContainerFacts> = {}): ContainerFacts => ({
  session,
  image: 'agentbox/base:1',
  runtime: 'runc',
  uid: 64000,
  gid: 64000,
  kind: (p) => (p.endsWith('.ssh') || p.endsWith('Documents') || p.endsWith('out') ? 'dir' : p.endsWith('.netrc') ? 'file' : 'missing'),
  cwd: '/',
  term: undefined,
  grants: [
    { path: '/home/user/Documents', access: 'read', kind: 'dir' },
    { path: '/home/user/Documents/out', access: 'write', kind: 'dir', layer: 0 },
  ],
  socketMasks: [],
  tmpBytes: 1024 ** 3,
  memfdGate: false,
  ...over,
});

describe('container plan', () => {
  const p = buildContainerPlan(m, m.agent.command, facts());
  const h = p.create.HostConfig;

  it('is hardened: read-only root, no capabilities, no-new-privileges, seccomp, non-root, no network, limits', () => {
    expect(h).toMatchObject({ ReadonlyRootfs: true, CapDrop: ['ALL'], NetworkMode: 'none', IpcMode: 'private', CgroupnsMode: 'private', PidsLimit: 64, Memory: 512 * 1024 ** 2, MemorySwap: 512 * 1024 ** 2, NanoCpus: 1.5e9, Init: true });
    expect(h.SecurityOpt[0]).toBe('no-new-privileges:true');
    expect(JSON.parse(h.SecurityOpt[1]!.slice('seccomp='.length))).toEqual(dockerSeccompProfile());
    expect(p.create.User).toBe('64000:64000');
    expect(h.Runtime).toBeUndefined();
    // Writable places are noexec and bounded (finding: exec from /tmp without a grant).
    expect(h.Tmpfs).toEqual({ '/tmp': `rw,nosuid,nodev,noexec,mode=1777,size=${1024 ** 3}`, '/var/tmp': `rw,nosuid,nodev,noexec,mode=1777,size=${1024 ** 3}` });
  });

  it('binds grants at their paths from the session\'s binds of the opened fds, writes through the layer, denies over them, and the proxy socket; nothing else of the host', () => {
    expect(h.Mounts.map((x) => [x.Source, x.Target, x.ReadOnly])).toEqual([
      ['/run/agentbox/c-1/binds/0', '/home/user/Documents', true],
      ['/run/agentbox/c-1/mnt/0/merged', '/home/user/Documents/out', false],
      ['/run/agentbox/c-1/proxy', '/run/agentbox', true],
    ]);
    expect(p.binds).toEqual([{ grant: 0, at: '/run/agentbox/c-1/binds/0', kind: 'dir' }]);
    expect(p.layers).toEqual([
      {
        index: 0,
        kind: 'dir',
        path: '/home/user/Documents/out',
        upper: '/run/agentbox/c-1/layers/upper/0',
        work: '/run/agentbox/c-1/layers/work/0',
        copy: '/run/agentbox/c-1/layers/files/0',
        lower: '/run/agentbox/c-1/mnt/0/lower',
        merged: '/run/agentbox/c-1/mnt/0/merged',
        file: '/run/agentbox/c-1/mnt/0/file',
      },
    ]);
    // No mount source names the state directory: what the agent reads of its mounts names the session only.
    expect(h.Mounts.filter((x) => x.Source?.includes('/var/lib/agentbox'))).toEqual([]);
    expect(JSON.stringify(p.create)).not.toMatch(/docker\.sock/);
    expect(p.proxySocket).toBe('/run/agentbox/c-1/proxy/proxy.sock');
  });

  it('covers unix sockets found inside grants with /dev/null, and gates the agent on the memfd sysctl under runc', () => {
    const q = buildContainerPlan(m, m.agent.command, facts({ socketMasks: ['/home/user/Documents/.s.agent'], memfdGate: true }));
    expect(q.create.HostConfig.Mounts).toContainEqual(expect.objectContaining({ Source: '/run/agentbox/c-1/masked', Target: '/home/user/Documents/.s.agent', ReadOnly: true }));
    expect(q.create.HostConfig.Mounts).toContainEqual(expect.objectContaining({ Source: '/run/agentbox/c-1/ctl', Target: '/run/agentbox-ctl', ReadOnly: true }));
    expect(q.create.Cmd.slice(0, 4)).toEqual(['/bin/sh', '-c', memfdGateInit(), 'agentbox-gate']);
    expect(q.controls).toContain('vm.memfd_noexec=2');
  });

  it('covers a denied directory inside a grant with an empty mode-000 directory and a denied file with /dev/null', () => {
    const home = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: c }
extends: [viewer]
agent: { command: [/bin/true] }
capabilities: [fs:read:~/]
`);
    const q = buildContainerPlan(home, ['/bin/true'], facts({ grants: [{ path: '/home/user', access: 'read', kind: 'dir' }], kind: (x) => (x === '/home/user' || x.endsWith('.ssh') ? 'dir' : x.endsWith('.netrc') ? 'file' : 'missing') }));
    expect(q.create.HostConfig.Mounts).toContainEqual(expect.objectContaining({ Source: '/run/agentbox/c-1/denied-dir', Target: '/home/user/.ssh', ReadOnly: true }));
    expect(q.create.HostConfig.Mounts).toContainEqual(expect.objectContaining({ Source: '/dev/null', Target: '/home/user/.netrc', ReadOnly: true }));
    // No network grant: no proxy socket, no proxy variables.
    expect(q.proxySocket).toBeUndefined();
    expect(q.create.Env.some((e) => e.startsWith('HTTP_PROXY='))).toBe(false);
  });

  it('the environment is the manifest only, with the proxy; the command waits for the forwarder', () => {
    expect(p.create.Env).toEqual(expect.arrayContaining(['MODE=fast', 'HTTPS_PROXY=http://127.0.0.1:3128', 'HOME=/home/user']));
    expect(p.create.Cmd.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    expect(p.create.Cmd.slice(3)).toEqual(['agentbox-init', '/usr/bin/python3', '/home/user/agent.py']);
  });

  it('under runsc: pids as RLIMIT_NPROC with a loose host backstop, and the statx shim preloaded', () => {
    const g = buildContainerPlan(m, m.agent.command, facts({ runtime: 'runsc', statxCompat: '/opt/agentbox/dist/native/statx-compat.so' }));
    expect(g.create.HostConfig).toMatchObject({ Runtime: 'runsc', PidsLimit: 1024, Ulimits: [{ Name: 'nproc', Soft: 64, Hard: 64 }] });
    expect(g.create.HostConfig.Mounts).toContainEqual(expect.objectContaining({ Source: '/opt/agentbox/dist/native/statx-compat.so', Target: STATX_COMPAT_TARGET, ReadOnly: true }));
    expect(g.create.Env).toContain(`LD_PRELOAD=${STATX_COMPAT_TARGET}`);
  });

  it('the docker run form carries the same options', () => {
    const a = dockerRunArgs(p, '/tmp/s.json');
    for (const x of ['--read-only', '--init', 'ALL', 'none', '--pids-limit', 'seccomp=/tmp/s.json', 'no-new-privileges:true', '64000:64000', '--cgroupns']) expect(a).toContain(x);
  });
});

describe('seccomp as OCI JSON', () => {
  it('denies every system call the BPF filter denies, clone with any CLONE_NEW* flag, clone3 as ENOSYS, and UDP/raw/packet/vsock sockets', () => {
    const p = dockerSeccompProfile() as { defaultAction: string; architectures: string[]; syscalls: { names: string[]; action: string; errnoRet: number; args?: { index: number; value: number; valueTwo?: number; op: string }[] }[] };
    expect(p.defaultAction).toBe('SCMP_ACT_ALLOW');
    expect(p.architectures).toEqual(['SCMP_ARCH_X86_64']);
    expect(p.syscalls[0]!.names).toEqual(Object.keys(DENIED_SYSCALLS_X86_64).sort());
    expect(p.syscalls[0]!.names).toEqual(expect.arrayContaining(['io_uring_setup', 'io_uring_enter', 'io_uring_register', 'unshare', 'setns']));
    expect(p.syscalls.every((s) => s.action === 'SCMP_ACT_ERRNO' && s.errnoRet === (s.names[0] === 'clone3' ? 38 : 1))).toBe(true);
    expect(p.syscalls.find((s) => s.names[0] === 'clone3')).toEqual({ action: 'SCMP_ACT_ERRNO', errnoRet: 38, names: ['clone3'] });
    const clone = p.syscalls.filter((s) => s.names[0] === 'clone').map((s) => s.args![0]!);
    expect(clone.map((a) => a.value).sort((x, y) => x - y)).toEqual(Object.values(CLONE_NEW_FLAGS).sort((x, y) => x - y));
    expect(clone.every((a) => a.index === 0 && a.op === 'SCMP_CMP_MASKED_EQ' && a.valueTwo === a.value)).toBe(true);
    const sock = p.syscalls.filter((s) => s.names[0] === 'socket').map((s) => s.args!.map((a) => `${a.index}:${a.op}:${a.value}:${a.valueTwo ?? ''}`).join(' '));
    expect(sock).toEqual([
      '0:SCMP_CMP_EQ:17:',
      '0:SCMP_CMP_EQ:40:',
      '0:SCMP_CMP_EQ:2: 1:SCMP_CMP_MASKED_EQ:15:2',
      '0:SCMP_CMP_EQ:2: 1:SCMP_CMP_MASKED_EQ:15:3',
      '0:SCMP_CMP_EQ:10: 1:SCMP_CMP_MASKED_EQ:15:2',
      '0:SCMP_CMP_EQ:10: 1:SCMP_CMP_MASKED_EQ:15:3',
    ]);
  });
});
