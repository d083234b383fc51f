/**
 * Attack: the kernel surface a sandbox escape starts from, tried by a static probe
 * (test/helpers/probe.c) inside the box on every runtime. The attack review found, on
 * the process runtime, that clone() with CLONE_NEW* flags made a nested user and network
 * namespace with full capabilities (and nf_tables over netlink behind it), that
 * io_uring's IORING_OP_SOCKET made sockets the socket() filter never saw, and that a
 * program with no exec grant ran from a memfd (/proc/self/fd/N) or from a writable
 * place; vsock had not been tried.
 * Defence: seccomp refuses clone with any CLONE_NEW* flag, unshare and setns, io_uring
 * and AF_VSOCK, and answers clone3 ENOSYS (so libc falls back to clone, whose flags a
 * filter can read); bubblewrap's --disable-userns; vm.memfd_noexec=2 in the box's pid
 * namespace (process runtime as root; runc through a launch gate); /tmp, /var/tmp,
 * /dev/shm and writable grants mounted noexec.
 * What is not stopped, stated rather than hidden: under gVisor and in the micro-VM a
 * memfd can still be executed (gVisor's Sentry and the guest's 6.1 kernel have no
 * memfd_noexec), and in every runtime the ELF loader can map a readable system program
 * (docs/process-runtime.md).
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-escape-'));
const bin = join(base, 'bin');
const work = join(base, 'home', 'work');
const RUNTIMES = [
  { name: 'process', args: [], memfd: 'no' },
  { name: 'container (runc)', args: ['--runtime', 'container'], memfd: 'no' },
  { name: 'container (gVisor)', args: ['--runtime', 'container', '--isolation', 'gvisor'], memfd: 'yes' },
  { name: 'microvm', args: ['--runtime', 'microvm'], memfd: 'yes' },
];

beforeAll(async () => {
  mkdirSync(bin, { recursive: true });
  mkdirSync(work, { recursive: true });
  for (const d of [base, join(base, 'home'), bin]) chmodSync(d, 0o755);
  chownSync(work, 64000, 64000);
  await execa('cc', ['-static', '-O2', '-o', join(bin, 'probe'), join(import.meta.dirname, '..', 'test', 'helpers', 'probe.c')]);
  writeFileSync(join(base, 'probe.yaml'), `apiVersion: agentbox/v1
kind: Agent
metadata: { name: probe }
extends: [organizer]
agent: { command: [${join(bin, 'probe')}, ${work}] }
capabilities: [fs:read:${bin}, fs:write:${work}, exec:${bin}, exec:/usr/bin, exec:/bin]
`);
}, 60_000);

describe.each(RUNTIMES)('kernel escapes in the $name runtime', (rt) => {
  let out: Record<string, string> = {};
  beforeAll(async () => {
    const r = await execa(process.execPath, [BIN, 'launch', join(base, 'probe.yaml'), '--home', join(base, 'home'), ...rt.args], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')), NO_COLOR: '1' } });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    out = Object.fromEntries(String(r.stdout).split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).split(' ')[0]!]));
  }, 120_000);

  it('cannot create a namespace: clone with CLONE_NEW* flags, clone3 and unshare are refused', () => {
    expect(out).toMatchObject({ clone_newuser: 'no', clone_newnet: 'no', clone3: 'no', unshare: 'no' });
  });
  it('has no io_uring and no vsock', () => {
    expect(out).toMatchObject({ io_uring: 'no', vsock: 'no' });
  });
  it('cannot run a program it copied into /tmp or a writable grant', () => {
    expect(out).toMatchObject({ tmp_exec: 'no', grant_exec: 'no' });
  });
  it(`a program in a memfd: ${rt.memfd === 'no' ? 'refused (vm.memfd_noexec=2)' : 'runs (documented limit of this runtime)'}`, () => {
    expect(out.memfd_exec).toBe(rt.memfd);
  });
});
