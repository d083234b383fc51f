/**
 * A seccomp filter for the box, as classic BPF bytes for bubblewrap's `--seccomp FD`.
 * Pure. x86_64 only: any other architecture (including the x32 ABI) is refused,
 * so a 32-bit entry point cannot bypass the list.
 *
 * Refused with EPERM: system calls an agent never needs and sandbox escapes use —
 * mounting and the new mount API, pivot_root, namespace creation and joining, module
 * and kexec loading, ptrace and cross-process memory access, kernel keyrings, bpf,
 * perf events, userfaultfd, clock and time changes, swap, reboot, accounting, quota,
 * file handles (open_by_handle_at, the "shocker" escape), syslog, iopl/ioperm.
 */

export const DENIED_SYSCALLS_X86_64: Readonly<Record<string, number>> = {
  ptrace: 101, syslog: 103, vhangup: 153, pivot_root: 155, adjtimex: 159, acct: 163, settimeofday: 164,
  mount: 165, umount2: 166, swapon: 167, swapoff: 168, reboot: 169, iopl: 172, ioperm: 173,
  init_module: 175, delete_module: 176, quotactl: 179, lookup_dcookie: 212, clock_settime: 227,
  kexec_load: 246, add_key: 248, request_key: 249, keyctl: 250, unshare: 272, perf_event_open: 298,
  name_to_handle_at: 303, open_by_handle_at: 304, clock_adjtime: 305, setns: 308,
  process_vm_readv: 310, process_vm_writev: 311, finit_module: 313, kexec_file_load: 320, bpf: 321,
  userfaultfd: 323, open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432,
  fspick: 433, mount_setattr: 442,
};

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_RET_K = 0x06;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO_EPERM = 0x00050000 | 1;
const RET_ALLOW = 0x7fff0000;
const BPF_ALU_AND_K = 0x54;
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const OFFSET_ARG0 = 16;
const OFFSET_ARG1 = 24;
const NR_SOCKET = 41;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_PACKET = 17;
const SOCK_TYPE_MASK = 0xf;
const SOCK_DGRAM = 2;
const SOCK_RAW = 3;

type Insn = [code: number, jt: number, jf: number, k: number];

/**
 * socket(2) argument checks: no UDP or raw IP sockets (so no DNS or UDP of the agent's
 * own, even inside its empty network namespace) and no packet sockets. Jumps are
 * relative; every path ends in a return.
 */
function socketFilter(): Insn[] {
  return [
    [BPF_JEQ_K, 0, 10, NR_SOCKET], //  not socket(): skip to the syscall list
    [BPF_LD_W_ABS, 0, 0, OFFSET_ARG0],
    [BPF_JEQ_K, 7, 0, AF_PACKET], // -> deny
    [BPF_JEQ_K, 1, 0, AF_INET],
    [BPF_JEQ_K, 0, 4, AF_INET6], // neither: allow
    [BPF_LD_W_ABS, 0, 0, OFFSET_ARG1],
    [BPF_ALU_AND_K, 0, 0, SOCK_TYPE_MASK],
    [BPF_JEQ_K, 2, 0, SOCK_DGRAM], // -> deny
    [BPF_JEQ_K, 1, 0, SOCK_RAW], // -> deny
    [BPF_RET_K, 0, 0, RET_ALLOW],
    [BPF_RET_K, 0, 0, RET_ERRNO_EPERM],
  ];
}

/** The filter as instructions (for tests) — see `seccompBytes`. */
export function seccompProgram(denied: readonly number[] = Object.values(DENIED_SYSCALLS_X86_64)): Insn[] {
  const prog: Insn[] = [
    [BPF_LD_W_ABS, 0, 0, OFFSET_ARCH],
    [BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64],
    [BPF_RET_K, 0, 0, RET_KILL_PROCESS],
    [BPF_LD_W_ABS, 0, 0, OFFSET_NR],
    [BPF_JGE_K, 0, 1, X32_SYSCALL_BIT],
    [BPF_RET_K, 0, 0, RET_ERRNO_EPERM],
    ...socketFilter(),
  ];
  // socketFilter falls through with the syscall number no longer in the accumulator.
  prog.push([BPF_LD_W_ABS, 0, 0, OFFSET_NR]);
  for (const nr of [...new Set(denied)].sort((a, b) => a - b)) {
    prog.push([BPF_JEQ_K, 0, 1, nr], [BPF_RET_K, 0, 0, RET_ERRNO_EPERM]);
  }
  prog.push([BPF_RET_K, 0, 0, RET_ALLOW]);
  return prog;
}

/** struct sock_filter[] in native (little-endian) layout. */
export function seccompBytes(prog: Insn[] = seccompProgram()): Buffer {
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, jt, jf, k], i) => {
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return buf;
}

/** Runs the filter over (arch, nr, args) as the kernel would: for tests. */
export function evaluate(prog: Insn[], arch: number, nr: number, args: number[] = []): number {
  let acc = 0;
  for (let pc = 0; pc < prog.length; ) {
    const [code, jt, jf, k] = prog[pc]!;
    if (code === BPF_LD_W_ABS) acc = k === OFFSET_ARCH ? arch : k === OFFSET_NR ? nr : (args[(k - OFFSET_ARG0) / 8] ?? 0);
    else if (code === BPF_ALU_AND_K) acc = acc & k;
    else if (code === BPF_RET_K) return k >>> 0;
    else if (code === BPF_JEQ_K) {
      pc += 1 + ((acc >>> 0) === (k >>> 0) ? jt : jf);
      continue;
    } else if (code === BPF_JGE_K) {
      pc += 1 + ((acc >>> 0) >= (k >>> 0) ? jt : jf);
      continue;
    }
    pc++;
  }
  throw new Error('fell off the end of the filter');
}

/**
 * The same filter as an OCI/Docker seccomp profile (for the container runtime): the
 * denied system calls and the socket(2) argument checks, EPERM, everything else
 * allowed, x86_64 only (libseccomp kills a call from any other architecture).
 */
export function dockerSeccompProfile(): Record<string, unknown> {
  const deny = (extra: Record<string, unknown>) => ({ action: 'SCMP_ACT_ERRNO', errnoRet: 1, ...extra });
  const socketRules = [
    deny({ names: ['socket'], args: [{ index: 0, value: AF_PACKET, op: 'SCMP_CMP_EQ' }] }),
    ...[AF_INET, AF_INET6].flatMap((family) =>
      [SOCK_DGRAM, SOCK_RAW].map((type) =>
        deny({ names: ['socket'], args: [{ index: 0, value: family, op: 'SCMP_CMP_EQ' }, { index: 1, value: SOCK_TYPE_MASK, valueTwo: type, op: 'SCMP_CMP_MASKED_EQ' }] }),
      ),
    ),
  ];
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [deny({ names: Object.keys(DENIED_SYSCALLS_X86_64).sort() }), ...socketRules],
  };
}
