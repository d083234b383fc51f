/**
 * The forensic snapshot a quarantine takes while the session is frozen, written into
 * STATE/evidence/ID-TIME/ as files (streamed: nothing of the writable layer is held in
 * memory, whatever its size):
 *
 * - processes.json: every process of the session with its command line (from the
 *   session's cgroup, or from the engine where the host cannot see them: gVisor), and
 *   processes.txt: the same as a tree, readable without tools;
 * - connections.json: the box's sockets decoded (addresses, ports, state, owning pid),
 *   and connections.txt: the same decoded as a table above the raw kernel tables;
 * - severed.json: the launcher's connections `agentbox quarantine` shut down from outside;
 * - egress.json: the tunnels the egress proxy had open at the cut (when the launcher
 *   takes the evidence);
 * - writable-layer-N.tar: each writable layer as it stands (GNU tar, to a file);
 * - audit.jsonl: the session's audit entries (and audit.spool-*.json, its entries still
 *   waiting for the audit lock, signed); session.json: its record;
 * - MANIFEST.sha256 (sha256sum format) and manifest.json, which also names each part
 *   that could not be taken and why. One part failing never stops the others.
 */
import { createHash } from 'node:crypto';
import { createReadStream, copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { Session } from './records.js';
import { termSafe } from '../escape/terminal.js';
import { spooledFiles } from '../audit/sink.js';

const read = (p: string) => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
};

export function sessionPids(s: Pick<Session, 'cgroups'>): number[] {
  for (const dir of s.cgroups) {
    const pids = read(join(dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
    if (pids.length > 0) return pids;
  }
  return [];
}

export interface ProcessEntry {
  pid: number;
  ppid: number | null;
  user: string;
  state: string;
  command: string[];
}

/** The processes of pids, from /proc. */
export function procProcesses(pids: readonly number[]): ProcessEntry[] {
  return pids.map((pid) => {
    const status = Object.fromEntries(read(`/proc/${pid}/status`).split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    return { pid, ppid: status.PPid ? Number(status.PPid) : null, user: String(status.Uid ?? '').split(/\s+/)[0] ?? '', state: String(status.State ?? ''), command: read(`/proc/${pid}/cmdline`).split('\0').filter(Boolean) };
  });
}

const TCP_STATES: Record<string, string> = { '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2', '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING' };

/** An address from /proc/net/tcp{,6} (hex, host byte order per 32-bit word). */
export function decodeProcAddress(hex: string): string {
  const [addr, port] = hex.split(':');
  const p = parseInt(port ?? '0', 16);
  if (!addr) return `?:${p}`;
  if (addr.length === 8) return `${[3, 2, 1, 0].map((i) => parseInt(addr.slice(i * 2, i * 2 + 2), 16)).join('.')}:${p}`;
  const words: string[] = [];
  for (let w = 0; w < 4; w++) {
    const le = addr.slice(w * 8, w * 8 + 8);
    const be = [3, 2, 1, 0].map((i) => le.slice(i * 2, i * 2 + 2)).join('');
    words.push(be.slice(0, 4), be.slice(4, 8));
  }
  return `[${words.map((x) => parseInt(x, 16).toString(16)).join(':')}]:${p}`;
}

export interface Connection {
  proto: string;
  local: string;
  remote: string;
  state: string;
  inode: string;
  pids: number[];
}

/** The sockets in one network namespace's tables, with the pids holding each. */
export function decodeConnections(tables: Record<string, string>, owners: Map<string, number[]>): Connection[] {
  const out: Connection[] = [];
  for (const [proto, text] of Object.entries(tables)) {
    const lines = text.split('\n').slice(1).filter((l) => l.trim());
    for (const l of lines) {
      const f = l.trim().split(/\s+/);
      if (proto === 'unix') {
        const inode = f[6] ?? '';
        out.push({ proto, local: f[7] ?? '(unnamed)', remote: '', state: f[5] === '01' ? 'LISTEN' : f[5] === '03' ? 'CONNECTED' : f[5] ?? '', inode, pids: owners.get(inode) ?? [] });
      } else {
        const inode = f[9] ?? '';
        out.push({ proto, local: decodeProcAddress(f[1] ?? ''), remote: decodeProcAddress(f[2] ?? ''), state: proto.startsWith('tcp') ? TCP_STATES[f[3] ?? ''] ?? f[3] ?? '' : f[3] ?? '', inode, pids: owners.get(inode) ?? [] });
      }
    }
  }
  return out;
}

function socketOwners(pids: readonly number[]): Map<string, number[]> {
  const owners = new Map<string, number[]>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) owners.set(m[1]!, [...(owners.get(m[1]!) ?? []), pid]);
      } catch {
        // closed meanwhile
      }
    }
  }
  return owners;
}

export interface EvidenceInput {
  /** Processes the engine reports (gVisor), where the host's cgroup cannot show them. */
  processes?: () => Promise<{ entries: ProcessEntry[]; source: string } | { unavailable: string }>;
  /** The egress proxy's open tunnels at the cut (the launcher's own view). */
  egress?: unknown;
  /** Why the box's own network tables cannot be read here (gVisor, micro-VM). */
  connectionsUnavailable?: string;
  /** Who ran the quarantine (absent for a violation: the launcher itself). */
  operator?: { uid: number; name: string };
  /** The connections cut from outside at the quarantine. */
  severed?: unknown;
}

/** The processes as an indented tree with their command lines (processes.txt). */
export function processTree(entries: readonly ProcessEntry[]): string {
  const pids = new Set(entries.map((e) => e.pid));
  const children = new Map<number, ProcessEntry[]>();
  for (const e of entries) {
    const parent = e.ppid !== null && pids.has(e.ppid) ? e.ppid : 0;
    children.set(parent, [...(children.get(parent) ?? []), e]);
  }
  const lines: string[] = [];
  const walk = (parent: number, depth: number) => {
    for (const e of children.get(parent) ?? []) {
      lines.push(`${'  '.repeat(depth)}${e.pid} [${e.state.split(' ')[0] ?? '?'}] uid ${e.user}  ${JSON.stringify(e.command)}`);
      if (depth < 64) walk(e.pid, depth + 1);
    }
  };
  walk(0, 0);
  return `PID [STATE] USER  COMMAND (as JSON strings: every byte shown as it is)\n${lines.join('\n')}\n`;
}

export interface Evidence {
  dir: string;
  files: { name: string; sha256: string; bytes: number }[];
  notTaken: { part: string; why: string }[];
}

async function hashFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of createReadStream(path)) {
    h.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  return { sha256: h.digest('hex'), bytes };
}

/** Streams the session's lines of the audit log into a file. */
async function sessionAudit(state: string, id: string, to: string): Promise<void> {
  const out = createWriteStream(to, { mode: 0o600 });
  const file = join(state, 'audit.jsonl');
  if (existsSync(file)) {
    const needle = needleOf(id);
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) if (line.includes(needle)) out.write(line + '\n');
  }
  await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
  // Entries still waiting for the audit lock (its holder stopped): copied as signed, with their names.
  const spooled = spooledFiles(state).filter((f) => readFileSync(f, 'utf8').includes(needleOf(id)));
  for (const f of spooled) copyFileSync(f, join(dirname(to), `audit.spool-${basename(f)}`));
}

const needleOf = (id: string): string => `"session":${JSON.stringify(id)}`;

export async function collectEvidence(state: string, s: Session, reason: string, input: EvidenceInput = {}): Promise<Evidence> {
  const dir = join(state, 'evidence', `${s.id}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const notTaken: Evidence['notTaken'] = [];
  const part = async (name: string, fn: () => Promise<void> | void) => {
    try {
      await fn();
    } catch (e) {
      notTaken.push({ part: name, why: (e as Error).message.split('\n')[0] ?? 'failed' });
    }
  };
  const write = (name: string, data: string) => writeFileSync(join(dir, name), data, { mode: 0o600 });

  const pids = sessionPids(s);
  await part('processes.json', async () => {
    const engine = input.processes ? await input.processes() : undefined;
    if (engine && 'unavailable' in engine) notTaken.push({ part: 'processes.json (engine view)', why: engine.unavailable });
    const entries = engine && 'entries' in engine ? engine.entries : procProcesses(pids);
    write('processes.json', JSON.stringify({ source: engine && 'entries' in engine ? engine.source : 'the session cgroup (/proc)', processes: entries }, null, 2) + '\n');
    write('processes.txt', processTree(entries));
  });
  await part('connections', () => {
    if (input.connectionsUnavailable) {
      notTaken.push({ part: 'connections.json', why: input.connectionsUnavailable });
      return;
    }
    // The innermost process sits in the box's network namespace: its tables are the box's.
    const inner = procProcesses(pids).filter((p) => p.command[0] !== undefined).at(-1);
    if (!inner) throw new Error('no process of the session was found to read its network tables from');
    const tables = Object.fromEntries(['tcp', 'tcp6', 'udp', 'udp6', 'unix'].map((t) => [t, read(`/proc/${inner.pid}/net/${t}`)]));
    const decoded = decodeConnections(tables, socketOwners(pids));
    const rows = decoded.map((c) => `${c.proto.padEnd(5)} ${termSafe(c.local).padEnd(46)} ${termSafe(c.remote || '-').padEnd(46)} ${c.state.padEnd(11)} ${c.pids.join(',') || '-'}`);
    const table = `== decoded (the same tables, below them raw)\n${'PROTO'.padEnd(5)} ${'LOCAL'.padEnd(46)} ${'REMOTE'.padEnd(46)} ${'STATE'.padEnd(11)} PIDS\n${rows.join('\n')}\n\n`;
    write('connections.txt', table + Object.entries(tables).map(([t, v]) => `== /proc/net/${t} (as seen by pid ${inner.pid})\n${v}`).join('\n'));
    write('connections.json', JSON.stringify({ namespaceOf: inner.pid, connections: decoded }, null, 2) + '\n');
  });
  if (input.egress !== undefined) await part('egress.json', () => write('egress.json', JSON.stringify(input.egress, null, 2) + '\n'));
  for (const [i, l] of (s.layers?.layers ?? []).entries()) {
    const name = `writable-layer-${i}.tar`;
    await part(name, async () => {
      const src = l.kind === 'dir' ? l.upper : l.copy;
      if (!existsSync(src)) throw new Error(`${src} is not there (the layers are not mounted)`);
      const args = l.kind === 'dir' ? ['-C', src, '.'] : ['-C', dirname(src), '--', basename(src)];
      // GNU tar walks by fd and writes straight to the file; the overlay's xattrs
      // (whiteouts, opaque directories) are kept so the layer can be read as it was.
      const r = await execa('tar', ['--create', '--file', join(dir, name), '--numeric-owner', '--sparse', '--xattrs', '--xattrs-include=trusted.overlay.*', '--one-file-system', ...args], { reject: false, stdin: 'ignore' });
      // 1: some file changed as it was read (not while frozen; reported anyway).
      if (r.exitCode !== 0 && r.exitCode !== 1) throw new Error(`tar exited ${r.exitCode}: ${String(r.stderr).split('\n')[0]}`);
    });
  }
  await part('audit.jsonl', () => sessionAudit(state, s.id, join(dir, 'audit.jsonl')));
  await part('session.json', () => write('session.json', JSON.stringify({ ...s, quarantineReason: reason, ...(input.operator ? { quarantinedBy: input.operator } : {}) }, null, 2) + '\n'));
  if (input.severed !== undefined) await part('severed.json', () => write('severed.json', JSON.stringify(input.severed, null, 2) + '\n'));

  const files: Evidence['files'] = [];
  for (const name of readdirSync(dir).sort()) files.push({ name, ...(await hashFile(join(dir, name))) });
  write('MANIFEST.sha256', files.map((f) => `${f.sha256}  ${f.name}\n`).join(''));
  write('manifest.json', JSON.stringify({ session: s.id, agent: s.agent, runtime: s.runtime, isolation: s.isolation, takenAt: new Date().toISOString(), reason, quarantinedBy: input.operator ?? 'the launcher (a violation under onViolation: quarantine)', layers: (s.layers?.layers ?? []).map((l) => l.path), files, notTaken }, null, 2) + '\n');
  return { dir, files, notTaken };
}
