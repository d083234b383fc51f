/**
 * The box's seccomp filter, run as the kernel would run it. Attacks it must stop (from
 * the attack review): a nested user or network namespace through clone() flags (unshare
 * and setns were refused, clone was not), clone3 whose flags a filter cannot read,
 * io_uring's socket operation, vsock, UDP/raw/packet sockets, and 32-bit entry points.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CLONE_NEW_FLAGS, DENIED_SYSCALLS_X86_64, evaluate, NR_CLONE, NR_CLONE3, seccompBytes, seccompProgram } from '../../src/box/seccomp.js';

const X86_64 = 0xc000003e;
const I386 = 0x40000003;
const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;
const ENOSYS = 0x00050026;
const KILL = 0x80000000;
const prog = seccompProgram();

describe('seccomp filter', () => {
  it('refuses every listed syscall with EPERM', () => {
    for (const [name, nr] of Object.entries(DENIED_SYSCALLS_X86_64)) expect(evaluate(prog, X86_64, nr), name).toBe(EPERM);
  });
  it('allows ordinary syscalls', () => {
    for (const nr of [0, 1, 2, 3, 9, 39, 56, 57, 59, 60, 231, 257]) expect(evaluate(prog, X86_64, nr), String(nr)).toBe(ALLOW);
  });
  it('kills other architectures and refuses the x32 ABI', () => {
    expect(evaluate(prog, I386, 1)).toBe(KILL);
    expect(evaluate(prog, X86_64, 0x40000000 + 1)).toBe(EPERM);
  });
  it('socket(): TCP and unix allowed; UDP, raw and packet refused', () => {
    const sock = (domain: number, type: number) => evaluate(prog, X86_64, 41, [domain, type]);
    expect(sock(2, 1)).toBe(ALLOW); // AF_INET SOCK_STREAM
    expect(sock(10, 1 | 0x80000)).toBe(ALLOW); // AF_INET6 SOCK_STREAM|SOCK_CLOEXEC
    expect(sock(1, 2)).toBe(ALLOW); // AF_UNIX SOCK_DGRAM
    expect(sock(2, 2)).toBe(EPERM); // AF_INET SOCK_DGRAM
    expect(sock(10, 2 | 0x800)).toBe(EPERM); // AF_INET6 SOCK_DGRAM|SOCK_NONBLOCK
    expect(sock(2, 3)).toBe(EPERM); // SOCK_RAW
    expect(sock(17, 3)).toBe(EPERM); // AF_PACKET
  });
  it('clone: threads and plain forks pass; any CLONE_NEW* flag, alone or mixed in, is refused (property)', () => {
    const CLONE_THREAD_FLAGS = 0x00000100 | 0x00000200 | 0x00000400 | 0x00000800 | 0x00010000 | 0x00040000 | 0x00080000 | 0x00100000 | 0x00200000;
    expect(evaluate(prog, X86_64, NR_CLONE, [CLONE_THREAD_FLAGS])).toBe(ALLOW);
    expect(evaluate(prog, X86_64, NR_CLONE, [17])).toBe(ALLOW); // SIGCHLD: fork()
    const anyNew = fc.subarray(Object.values(CLONE_NEW_FLAGS), { minLength: 1 });
    fc.assert(
      fc.property(anyNew, fc.integer({ min: 0, max: 0xffffff }), (news, other) => {
        const flags = (news.reduce((a, b) => a | b, 0) | (other & ~0x7e020080)) >>> 0;
        return evaluate(prog, X86_64, NR_CLONE, [flags]) === EPERM;
      }),
      { numRuns: 2000 },
    );
  });
  it('clone3 answers ENOSYS (libc falls back to clone); io_uring and namespace calls are refused', () => {
    expect(evaluate(prog, X86_64, NR_CLONE3)).toBe(ENOSYS);
    for (const name of ['io_uring_setup', 'io_uring_enter', 'io_uring_register', 'unshare', 'setns']) expect(evaluate(prog, X86_64, DENIED_SYSCALLS_X86_64[name]!), name).toBe(EPERM);
  });
  it('no vsock sockets', () => {
    expect(evaluate(prog, X86_64, 41, [40, 1])).toBe(EPERM);
  });
  it('every jump lands inside the program, and the bytes are 8 per instruction', () => {
    prog.forEach(([code, jt, jf], i) => {
      if (code === 0x15 || code === 0x35) expect(i + 1 + Math.max(jt, jf)).toBeLessThan(prog.length);
    });
    expect(seccompBytes(prog).length).toBe(prog.length * 8);
  });
});
