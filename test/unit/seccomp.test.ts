import { describe, expect, it } from 'vitest';
import { DENIED_SYSCALLS_X86_64, evaluate, seccompBytes, seccompProgram } from '../../src/box/seccomp.js';

const X86_64 = 0xc000003e;
const I386 = 0x40000003;
const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;
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
  it('every jump lands inside the program, and the bytes are 8 per instruction', () => {
    prog.forEach(([code, jt, jf], i) => {
      if (code === 0x15 || code === 0x35) expect(i + 1 + Math.max(jt, jf)).toBeLessThan(prog.length);
    });
    expect(seccompBytes(prog).length).toBe(prog.length * 8);
  });
});
