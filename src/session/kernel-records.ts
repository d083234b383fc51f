/**
 * The lines the native watchers print, as data. Pure.
 *
 * file-watch: `KIND\tPID\tSIZE\tPATH`, the path with bytes outside 0x21..0x7e and `\`
 * written as `\xNN` (so the box's file names cannot split or forge a line).
 *
 * audit-read: `TYPE\tTEXT`, TEXT the kernel's `audit(SECONDS.MS:SERIAL): key=value ...`.
 * The records of one event share a serial and end with EOE (1320); an event is read as
 * a group. Untrusted strings (path, name, comm, exe, cwd, key) are either quoted without
 * any special character, or hex when they had one: both are decoded here.
 */

export type FileEventKind = 'open' | 'exec' | 'modify' | 'write' | 'read';

export interface FileEvent {
  kind: FileEventKind;
  pid: number;
  /** The file's size at the event (-1 unknown). */
  size: number;
  /** As the box sees it. */
  path: string;
}

const FILE_KINDS: Record<string, FileEventKind> = { o: 'open', x: 'exec', m: 'modify', w: 'write', r: 'read' };

/** Decodes `\xNN` escapes (as file-watch writes them) back to the path's bytes, read as UTF-8. */
export function unescapePath(s: string): string {
  if (!s.includes('\\x')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === 'x' && /^[0-9a-f]{2}$/i.test(s.slice(i + 2, i + 4))) {
      bytes.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else bytes.push(...Buffer.from(s[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** One file-watch line, or undefined for anything else (`overflow` is its own answer). */
export function parseFileLine(line: string): FileEvent | 'overflow' | undefined {
  if (line === 'overflow') return 'overflow';
  const parts = line.split('\t');
  if (parts.length !== 4) return undefined;
  const kind = FILE_KINDS[parts[0]!];
  const pid = Number(parts[1]);
  const size = Number(parts[2]);
  if (!kind || !Number.isInteger(pid) || !Number.isFinite(size) || !parts[3]!.startsWith('/')) return undefined;
  return { kind, pid, size, path: unescapePath(parts[3]!) };
}

export interface AuditRecord {
  type: number;
  /** Milliseconds since the epoch. */
  time: number;
  serial: number;
  fields: Record<string, string>;
}

const UNTRUSTED = new Set(['path', 'name', 'comm', 'exe', 'cwd', 'key', 'proctitle']);

function decodeValue(key: string, raw: string): string {
  if (raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2) return raw.slice(1, -1);
  if (UNTRUSTED.has(key) && /^([0-9A-F]{2})+$/.test(raw)) return Buffer.from(raw, 'hex').toString('utf8');
  return raw;
}

/** One audit-read line. */
export function parseAuditLine(line: string): AuditRecord | undefined {
  const tab = line.indexOf('\t');
  if (tab < 0) return undefined;
  const type = Number(line.slice(0, tab));
  const m = /^audit\((\d+)\.(\d+):(\d+)\):\s?(.*)$/.exec(line.slice(tab + 1));
  if (!Number.isInteger(type) || !m) return undefined;
  const fields: Record<string, string> = {};
  // key=value, key="value" (quoted values hold no quote: the kernel hex-encodes those).
  for (const f of m[4]!.matchAll(/([A-Za-z0-9_-]+)=("[^"]*"|\S*)/g)) {
    const k = f[1]!;
    if (!(k in fields)) fields[k] = decodeValue(k, f[2]!);
  }
  return { type, time: Number(m[1]) * 1000 + Number(m[2]), serial: Number(m[3]), fields };
}

export const AUDIT = { SYSCALL: 1300, PATH: 1302, CWD: 1307, EOE: 1320, SECCOMP: 1326, LANDLOCK_ACCESS: 1423, LANDLOCK_DOMAIN: 1424 } as const;

/** Collects records by serial; a group is complete at its EOE, or once it has waited `maxAgeMs`. */
export class AuditGroups {
  private open = new Map<number, { records: AuditRecord[]; seen: number }>();
  constructor(private readonly maxAgeMs = 300) {}

  push(r: AuditRecord, now: number): AuditRecord[][] {
    const done: AuditRecord[][] = [];
    if (r.type === AUDIT.EOE) {
      const g = this.open.get(r.serial);
      this.open.delete(r.serial);
      if (g) done.push(g.records);
    } else {
      const g = this.open.get(r.serial) ?? { records: [], seen: now };
      g.records.push(r);
      this.open.set(r.serial, g);
      // A bound on what an event can hold: a flood of records of one serial cannot grow without end.
      if (g.records.length > 64) {
        this.open.delete(r.serial);
        done.push(g.records);
      }
    }
    return [...done, ...this.expire(now)];
  }

  /** Groups that waited longer than maxAgeMs (records without an EOE: seccomp, a lost one). */
  expire(now: number, all = false): AuditRecord[][] {
    const done: AuditRecord[][] = [];
    for (const [serial, g] of this.open) {
      if (all || now - g.seen >= this.maxAgeMs) {
        this.open.delete(serial);
        done.push(g.records);
      }
    }
    return done;
  }
}

export type DeniedAccess = 'read' | 'list' | 'write' | 'exec' | 'connect' | 'signal' | 'syscall';

export interface KernelDenial {
  /** Which layer refused: Landlock, seccomp, or a file call that failed (the box's view, a mask, file permissions). */
  source: 'landlock' | 'seccomp' | 'file-call';
  pid: number;
  uid: number;
  comm: string;
  access: DeniedAccess;
  /** As the box sees it (absolute), when the event names one. */
  path?: string;
  /** The call's error number (positive), when it failed with one. */
  errno?: number;
  syscall: number;
  /** Landlock's blockers (fs.read_file, net.connect_tcp, ...). */
  blockers?: string[];
  domain?: string;
  time: number;
}

/** A Landlock domain's first denial names the process that created it. */
export interface DomainRecord {
  domain: string;
  pid: number;
}

const AT_FDCWD_HEX = 'ffffff9c';
const O_ACCMODE = 3;
const O_CREAT = 0x40;
const O_TRUNC = 0x200;

/** File calls the exit rule records (x86_64 numbers), with what they ask for. */
const FILE_CALLS: Record<number, { name: string; access: DeniedAccess | 'open'; flagsArg?: 'a1' | 'a2'; at?: boolean }> = {
  2: { name: 'open', access: 'open', flagsArg: 'a1' },
  257: { name: 'openat', access: 'open', flagsArg: 'a2', at: true },
  437: { name: 'openat2', access: 'open', at: true },
  85: { name: 'creat', access: 'write' },
  59: { name: 'execve', access: 'exec' },
  322: { name: 'execveat', access: 'exec', at: true },
  83: { name: 'mkdir', access: 'write' },
  258: { name: 'mkdirat', access: 'write', at: true },
  87: { name: 'unlink', access: 'write' },
  263: { name: 'unlinkat', access: 'write', at: true },
  82: { name: 'rename', access: 'write' },
  264: { name: 'renameat', access: 'write', at: true },
  316: { name: 'renameat2', access: 'write', at: true },
  76: { name: 'truncate', access: 'write' },
};

function blockerAccess(blockers: string[]): DeniedAccess {
  if (blockers.some((b) => b === 'fs.execute')) return 'exec';
  if (blockers.some((b) => b.startsWith('fs.') && b !== 'fs.read_file' && b !== 'fs.read_dir')) return 'write';
  if (blockers.includes('fs.read_file')) return 'read';
  if (blockers.includes('fs.read_dir')) return 'list';
  if (blockers.some((b) => b.startsWith('net.'))) return 'connect';
  if (blockers.some((b) => b.startsWith('scope.'))) return 'signal';
  return 'syscall';
}

function join(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

/**
 * What one event's records say: the denials in it (a Landlock denial and the failed call
 * it caused are one denial, Landlock's), and a Landlock domain's creator.
 */
export function interpretGroup(records: readonly AuditRecord[]): { denials: KernelDenial[]; domains: DomainRecord[] } {
  const denials: KernelDenial[] = [];
  const domains: DomainRecord[] = [];
  const sys = records.find((r) => r.type === AUDIT.SYSCALL);
  const pid = Number(sys?.fields.pid ?? NaN);
  const uid = Number(sys?.fields.uid ?? NaN);
  const comm = sys?.fields.comm ?? '';
  const syscall = Number(sys?.fields.syscall ?? -1);
  const exit = Number(sys?.fields.exit ?? 0);
  for (const r of records) {
    if (r.type === AUDIT.LANDLOCK_DOMAIN && r.fields.status === 'allocated' && r.fields.domain && r.fields.pid) {
      domains.push({ domain: r.fields.domain, pid: Number(r.fields.pid) });
    }
  }
  const landlock = records.filter((r) => r.type === AUDIT.LANDLOCK_ACCESS);
  for (const r of landlock) {
    const blockers = (r.fields.blockers ?? '').split(',').filter(Boolean);
    const path = r.fields.path;
    denials.push({
      source: 'landlock',
      pid,
      uid,
      comm,
      access: blockerAccess(blockers),
      ...(path && path.startsWith('/') ? { path } : {}),
      ...(exit < 0 ? { errno: -exit } : {}),
      syscall,
      blockers,
      ...(r.fields.domain ? { domain: r.fields.domain } : {}),
      time: r.time,
    });
  }
  for (const r of records) {
    if (r.type !== AUDIT.SECCOMP) continue;
    const code = parseInt(r.fields.code ?? '0', 16);
    denials.push({
      source: 'seccomp',
      pid: Number(r.fields.pid ?? pid),
      uid: Number(r.fields.uid ?? uid),
      comm: r.fields.comm ?? comm,
      access: 'syscall',
      syscall: Number(r.fields.syscall ?? -1),
      ...((code & 0xffff0000) === 0x00050000 ? { errno: code & 0xffff } : {}),
      time: r.time,
    });
  }
  if (landlock.length === 0 && sys && sys.fields.success === 'no' && sys.fields.key?.startsWith('agentbox:')) {
    const call = FILE_CALLS[syscall];
    const item = records.find((r) => r.type === AUDIT.PATH && r.fields.item === '0' && r.fields.name && r.fields.name !== '(null)');
    const cwd = records.find((r) => r.type === AUDIT.CWD)?.fields.cwd;
    if (call && item) {
      let path = item.fields.name!;
      // A name relative to a directory fd other than the cwd cannot be placed: left out.
      const relativeOk = !call.at || (sys.fields.a0 ?? '').toLowerCase() === AT_FDCWD_HEX;
      if (!path.startsWith('/')) path = relativeOk && cwd?.startsWith('/') ? join(cwd, path) : '';
      let access: DeniedAccess = call.access === 'open' ? 'read' : call.access;
      if (call.access === 'open' && call.flagsArg) {
        const flags = parseInt(sys.fields[call.flagsArg] ?? '0', 16);
        if ((flags & O_ACCMODE) !== 0 || flags & (O_CREAT | O_TRUNC)) access = 'write';
      }
      if (path) denials.push({ source: 'file-call', pid, uid, comm, access, path, errno: -exit, syscall, time: sys.time });
    }
  }
  return { denials, domains };
}

/** x86_64 system call names for the ones a box refuses or audits, for people reading a denial. */
export const SYSCALL_NAMES: Readonly<Record<number, string>> = Object.fromEntries([
  ...Object.entries(FILE_CALLS).map(([n, c]) => [Number(n), c.name]),
  [101, 'ptrace'], [103, 'syslog'], [155, 'pivot_root'], [165, 'mount'], [166, 'umount2'], [169, 'reboot'], [175, 'init_module'],
  [246, 'kexec_load'], [248, 'add_key'], [250, 'keyctl'], [272, 'unshare'], [298, 'perf_event_open'], [304, 'open_by_handle_at'],
  [308, 'setns'], [310, 'process_vm_readv'], [311, 'process_vm_writev'], [313, 'finit_module'], [321, 'bpf'], [323, 'userfaultfd'],
  [41, 'socket'], [56, 'clone'], [435, 'clone3'], [425, 'io_uring_setup'], [426, 'io_uring_enter'], [427, 'io_uring_register'],
  [428, 'open_tree'], [429, 'move_mount'], [430, 'fsopen'], [442, 'mount_setattr'],
]);

export const ERRNO_NAMES: Readonly<Record<number, string>> = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 30: 'EROFS', 38: 'ENOSYS', 20: 'ENOTDIR', 40: 'ELOOP', 97: 'EAFNOSUPPORT' };
