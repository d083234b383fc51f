/**
 * A seccomp filter for the box, as classic BPF bytes for bubblewrap's `--seccomp FD`
 * (and guest-exec in the micro-VM), and the same rules as an OCI profile for the
 * container runtime. Pure. x86_64 only: any other architecture (including the x32 ABI)
 * is refused, so a 32-bit entry point cannot bypass the list.
 *
 * Refused with EPERM: system calls an agent never needs and sandbox escapes use —
 * mounting and the new mount API, pivot_root, namespace creation and joining
 * (`unshare`, `setns`, and `clone` with any CLONE_NEW* flag: a nested user namespace
 * would hand the agent capabilities over nf_tables and other kernel surfaces), io_uring
 * (its IORING_OP_SOCKET makes sockets the socket() rules never see), module and kexec
 * loading, ptrace and cross-process memory access, kernel keyrings, bpf, perf events,
 * userfaultfd, clock and time changes, swap, reboot, accounting, quota, file handles
 * (open_by_handle_at, the "shocker" escape), syslog, iopl/ioperm.
 * `clone3` answers ENOSYS: its flags sit in memory a filter cannot read, and libc then
 * falls back to `clone`, whose flags it can.
 * socket(): no UDP or raw IP sockets (no DNS or UDP of the agent's own, even inside its
 * empty network namespace), no packet sockets, no vsock (a VM's path to its host).
 */

export const DENIED_SYSCALLS_X86_64: Readonly<Record<string, number>> = {
  ptrace: 101, syslog: 103, vhangup: 153, pivot_root: 155, adjtimex: 159, acct: 163, settimeofday: 164,
  mount: 165, umount2: 166, swapon: 167, swapoff: 168, reboot: 169, iopl: 172, ioperm: 173,
  init_module: 175, delete_module: 176, quotactl: 179, lookup_dcookie: 212, clock_settime: 227,
  kexec_load: 246, add_key: 248, request_key: 249, keyctl: 250, unshare: 272, perf_event_open: 298,
  name_to_handle_at: 303, open_by_handle_at: 304, clock_adjtime: 305, setns: 308,
  process_vm_readv: 310, process_vm_writev: 311, finit_module: 313, kexec_file_load: 320, bpf: 321,
  userfaultfd: 323, io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427,
  open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432,
  fspick: 433, mount_setattr: 442,
};

export const NR_SOCKET = 41;
export const NR_CLONE = 56;
export const NR_CLONE3 = 435;

export const CLONE_NEW_FLAGS: Readonly<Record<string, number>> = {
  CLONE_NEWTIME: 0x00000080, CLONE_NEWNS: 0x00020000, CLONE_NEWCGROUP: 0x02000000, CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000, CLONE_NEWUSER: 0x10000000, CLONE_NEWPID: 0x20000000, CLONE_NEWNET: 0x40000000,
};
const CLONE_NEW_MASK = Object.values(CLONE_NEW_FLAGS).reduce((a, b) => a | b, 0);

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_JSET_K = 0x45;
const BPF_RET_K = 0x06;
const BPF_ALU_AND_K = 0x54;
const RET_KILL_PROCESS = 0x80000000;
const EPERM = 1;
const ENOSYS = 38;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const OFFSET_ARG0 = 16;
const OFFSET_ARG1 = 24;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_PACKET = 17;
const AF_VSOCK = 40;
const SOCK_TYPE_MASK = 0xf;
const SOCK_DGRAM = 2;
const SOCK_RAW = 3;

type Insn = [code: number, jt: number, jf: number, k: number];

/** An instruction whose jump targets are labels, resolved by `assemble`. */
type Op = { label: string } | { insn: [number, number] | [number, number, string, string] };

const ld = (k: number): Op => ({ insn: [BPF_LD_W_ABS, k] });
const ret = (k: number): Op => ({ insn: [BPF_RET_K, k] });
const and = (k: number): Op => ({ insn: [BPF_ALU_AND_K, k] });
const jeq = (k: number, t: string, f: string): Op => ({ insn: [BPF_JEQ_K, k, t, f] });
const jset = (k: number, t: string, f: string): Op => ({ insn: [BPF_JSET_K, k, t, f] });
const jge = (k: number, t: string, f: string): Op => ({ insn: [BPF_JGE_K, k, t, f] });
const label = (name: string): Op => ({ label: name });
const NEXT = '';

/** Resolves labels into relative jumps ('' is the next instruction); every jump must go forward, within 255. */
function assemble(ops: Op[]): Insn[] {
  const at = new Map<string, number>();
  let n = 0;
  for (const o of ops) if ('label' in o) at.set(o.label, n);
    else n++;
  const out: Insn[] = [];
  for (const o of ops) {
    if ('label' in o) continue;
    const pc = out.length;
    const rel = (l: string) => {
      if (l === NEXT) return 0;
      const target = at.get(l);
      if (target === undefined || target <= pc || target - pc - 1 > 255) throw new Error(`seccomp: bad jump to ${l}`);
      return target - pc - 1;
    };
    const [code, k, t, f] = o.insn as [number, number, string?, string?];
    out.push(t === undefined ? [code, 0, 0, k] : [code, rel(t), rel(f!), k]);
  }
  return out;
}

/** The filter as instructions (for tests) — see `seccompBytes`. */
export function seccompProgram(denied: readonly number[] = Object.values(DENIED_SYSCALLS_X86_64)): Insn[] {
  const list = [...new Set(denied)].sort((a, b) => a - b);
  return assemble([
    ld(OFFSET_ARCH),
    jeq(AUDIT_ARCH_X86_64, 'native', NEXT),
    ret(RET_KILL_PROCESS),
    label('native'),
    ld(OFFSET_NR),
    jge(X32_SYSCALL_BIT, 'eperm', NEXT),
    jeq(NR_SOCKET, 'socket', NEXT),
    jeq(NR_CLONE, 'clone', NEXT),
    jeq(NR_CLONE3, 'enosys', NEXT),
    ...list.flatMap((nr) => [jeq(nr, 'eperm', NEXT)]),
    ret(RET_ALLOW),
    // socket(domain, type, ...): no packet or vsock sockets, no UDP or raw IP.
    label('socket'),
    ld(OFFSET_ARG0),
    jeq(AF_PACKET, 'eperm', NEXT),
    jeq(AF_VSOCK, 'eperm', NEXT),
    jeq(AF_INET, 'ip', NEXT),
    jeq(AF_INET6, 'ip', 'allow'),
    label('ip'),
    ld(OFFSET_ARG1),
    and(SOCK_TYPE_MASK),
    jeq(SOCK_DGRAM, 'eperm', NEXT),
    jeq(SOCK_RAW, 'eperm', 'allow'),
    // clone(flags, ...): no new namespace of any kind.
    label('clone'),
    ld(OFFSET_ARG0),
    jset(CLONE_NEW_MASK, 'eperm', 'allow'),
    label('allow'),
    ret(RET_ALLOW),
    label('enosys'),
    ret(RET_ERRNO | ENOSYS),
    label('eperm'),
    ret(RET_ERRNO | EPERM),
  ]);
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
    else if (code === BPF_JEQ_K || code === BPF_JGE_K || code === BPF_JSET_K) {
      const a = acc >>> 0;
      const hit = code === BPF_JEQ_K ? a === k >>> 0 : code === BPF_JGE_K ? a >= k >>> 0 : (a & k) !== 0;
      pc += 1 + (hit ? jt : jf);
      continue;
    }
    pc++;
  }
  throw new Error('fell off the end of the filter');
}

/**
 * The same filter as an OCI/Docker seccomp profile (for the container runtime): the
 * denied system calls, clone with any CLONE_NEW* flag (one rule per flag: libseccomp
 * ORs them), clone3 as ENOSYS, and the socket(2) argument checks, everything else
 * allowed, x86_64 only (libseccomp kills a call from any other architecture).
 */
export function dockerSeccompProfile(): Record<string, unknown> {
  const deny = (extra: Record<string, unknown>, errno = EPERM) => ({ action: 'SCMP_ACT_ERRNO', errnoRet: errno, ...extra });
  const socketRules = [
    deny({ names: ['socket'], args: [{ index: 0, value: AF_PACKET, op: 'SCMP_CMP_EQ' }] }),
    deny({ names: ['socket'], args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_EQ' }] }),
    ...[AF_INET, AF_INET6].flatMap((family) =>
      [SOCK_DGRAM, SOCK_RAW].map((type) =>
        deny({ names: ['socket'], args: [{ index: 0, value: family, op: 'SCMP_CMP_EQ' }, { index: 1, value: SOCK_TYPE_MASK, valueTwo: type, op: 'SCMP_CMP_MASKED_EQ' }] }),
      ),
    ),
  ];
  const cloneRules = Object.values(CLONE_NEW_FLAGS).map((flag) => deny({ names: ['clone'], args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }] }));
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [deny({ names: Object.keys(DENIED_SYSCALLS_X86_64).sort() }), deny({ names: ['clone3'] }, ENOSYS), ...cloneRules, ...socketRules],
  };
}
