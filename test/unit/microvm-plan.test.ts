/**
 * The micro-VM's box as data: manifest values reach the guest only as NUL-separated
 * config records (never a shell, never the QEMU command line), grants become 9p
 * shares (read-only unless fs:write, writes through the session overlay, files bound
 * alone), denies are covered, the network is restrict=on with one guestfwd to the
 * proxy socket, and limits set memory, CPUs and RLIMIT_NPROC.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildMicrovmPlan, GUEST_PROXY, type MicrovmFacts } from '../../src/box/microvm.js';
import { model } from '../helpers/load.js';

const session = { dir: '/var/lib/agentbox/sessions/v-1', run: '/run/agentbox/v-1' };
const grants: MicrovmFacts['grants'] = [
  { path: '/home/user/Documents', access: 'read', kind: 'dir' },
  { path: '/home/user/notes.txt', access: 'read', kind: 'file' },
  { path: '/home/user/Documents/out', access: 'write', kind: 'dir', layer: 0 },
];
const facts = (over: Partial<MicrovmFacts> = {}): MicrovmFacts => ({
  session,
  grants,
  kernel: '/cache/vmlinuz',
  initramfs: '/cache/initramfs.gz',
  accel: 'tcg',
  uid: 64000,
  gid: 64000,
  kind: (p) => (p.endsWith('.ssh') || p.endsWith('Documents') || p.endsWith('out') || p === '/home/user' ? 'dir' : p.endsWith('notes.txt') || p.endsWith('.netrc') ? 'file' : 'missing'),
  cwd: '/',
  term: undefined,
  socat: '/usr/bin/socat',
  ...over,
});

const records = (b: Buffer) => b.toString('utf8').split('\0').slice(0, -1);

describe('micro-VM plan', () => {
  const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: v }
extends: [organizer]
agent: { command: [/usr/bin/python3, "a b", "$(id)", "'; reboot"], env: { MODE: "x y" } }
capabilities:
  - fs:read:~/Documents
  - fs:read:~/notes.txt
  - fs:write:~/Documents/out
  - net:connect:api.example.com:443
limits: { pids: 64, memory: 1GiB, cpus: 1.5 }
`);
  const p = buildMicrovmPlan(m, m.agent.command, facts());

  it('shares grants over 9p from the session\'s binds of the opened fds: read-only, the layer for writes (noexec), a granted file bound alone', () => {
    const fsdevs = p.argv.filter((a) => a.startsWith('local,'));
    expect(fsdevs).toEqual([
      'local,id=usr,path=/usr,security_model=passthrough,readonly=on',
      'local,id=ctl,path=/var/lib/agentbox/sessions/v-1/ctl,security_model=passthrough',
      'local,id=g0,path=/run/agentbox/v-1/binds/0,security_model=passthrough,multidevs=remap,readonly=on',
      'local,id=g1,path=/run/agentbox/v-1/binds/1,security_model=passthrough,multidevs=remap,readonly=on',
      'local,id=g2,path=/run/agentbox/v-1/mnt/0/merged,security_model=passthrough,multidevs=remap',
    ]);
    expect(p.binds).toEqual([
      { grant: 0, at: '/run/agentbox/v-1/binds/0', kind: 'dir', source: 'fd' },
      { grant: 1, at: '/run/agentbox/v-1/binds/1/notes.txt', kind: 'file', source: 'fd' },
    ]);
    const r = records(p.config);
    expect(r.slice(0, 12)).toEqual(['mount', 'g0', '/home/user/Documents', 'ro', 'mount', 'g1', '/run/agentbox-files/g1', 'ro', 'bind', '/run/agentbox-files/g1/notes.txt', '/home/user/notes.txt', 'ro']);
    expect(r).toEqual(expect.arrayContaining(['mount', 'g2', '/home/user/Documents/out', 'rw']));
  });

  it('a writable grant that holds a granted program stays executable (rwx); a writable file is its session copy', () => {
    const x = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: v }
extends: [editor]
agent: { command: [/home/user/tools/run.sh] }
capabilities: [fs:write:~/tools, fs:write:~/notes.txt]
`);
    const q = buildMicrovmPlan(x, x.agent.command, facts({ grants: [{ path: '/home/user/tools', access: 'write', kind: 'dir', layer: 0 }, { path: '/home/user/notes.txt', access: 'write', kind: 'file', layer: 1 }] }));
    const r = records(q.config);
    expect(r).toEqual(expect.arrayContaining(['mount', 'g0', '/home/user/tools', 'rwx']));
    expect(r).toEqual(expect.arrayContaining(['bind', '/run/agentbox-files/g1/notes.txt', '/home/user/notes.txt', 'rw']));
    expect(q.binds).toEqual([{ grant: 1, at: '/run/agentbox/v-1/binds/1/notes.txt', kind: 'file', source: 'copy' }]);
  });

  it('argv and environment go to the guest as records, exactly as written', () => {
    const r = records(p.config);
    const args = r.flatMap((x, i) => (x === 'arg' ? [r[i + 1]] : []));
    expect(args).toEqual(['/usr/bin/python3', 'a b', '$(id)', "'; reboot"]);
    expect(r).toEqual(expect.arrayContaining(['env', 'MODE=x y', 'env', `HTTPS_PROXY=http://${GUEST_PROXY}`, 'uid', '64000', 'gid', '64000', 'nproc', '64']));
    for (const a of p.argv) expect(a).not.toMatch(/'; reboot|\$\(id\)|MODE=/);
  });

  it('one way out: restrict=on user networking whose only exit is the proxy socket', () => {
    const net = p.argv[p.argv.indexOf('-netdev') + 1]!;
    expect(net).toBe(`user,id=net0,restrict=on,guestfwd=tcp:${GUEST_PROXY}-cmd:/usr/bin/socat -b 262144 - UNIX-CONNECT:/run/agentbox/v-1/proxy/proxy.sock`);
    expect(p.argv.filter((a) => a === '-netdev')).toHaveLength(1);
    expect(p.argv).toEqual(expect.arrayContaining(['-m', '1024M', '-smp', '2', '-accel', 'tcg', '-nodefaults', '-no-user-config', '-no-reboot']));
    expect(p.argv).toContain(`unix:/run/agentbox/v-1/qmp.sock,server=on,wait=off`);
  });

  it('covers denied paths inside grants, and has no network at all without network grants', () => {
    const home = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: v }
extends: [viewer]
agent: { command: [/bin/true] }
capabilities: [fs:read:~/]
`);
    const q = buildMicrovmPlan(home, ['/bin/true'], facts({ grants: [{ path: '/home/user', access: 'read', kind: 'dir' }] }));
    const r = records(q.config);
    expect(r).toEqual(expect.arrayContaining(['deny-dir', '/home/user/.ssh', 'deny-file', '/home/user/.netrc']));
    expect(q.argv).not.toContain('-netdev');
    expect(q.proxySocket).toBeUndefined();
  });

  it('no argument value can add, split or end a config record (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 30 }).filter((s) => !s.includes('\0')), { minLength: 1, maxLength: 6 }), (args) => {
        const q = buildMicrovmPlan(m, ['/usr/bin/python3', ...args], facts());
        const r = records(q.config);
        // Walk the records as guest-exec does (type, then its fixed fields).
        const arity: Record<string, number> = { mount: 3, bind: 3, 'deny-dir': 1, 'deny-file': 1, arg: 1, env: 1, uid: 1, gid: 1, nproc: 1, cwd: 1 };
        const parsedArgs: string[] = [];
        for (let i = 0; i < r.length; ) {
          const n = arity[r[i]!];
          if (n === undefined) return false;
          if (r[i] === 'arg') parsedArgs.push(r[i + 1]!);
          i += n + 1;
        }
        return JSON.stringify(parsedArgs) === JSON.stringify(['/usr/bin/python3', ...args]);
      }),
      { numRuns: 300 },
    );
  });
});
