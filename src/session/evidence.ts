/**
 * The forensic snapshot `agentbox quarantine` takes while the session is frozen: the
 * writable layers as tar, the process list, the box's open connections (its own
 * network namespace's kernel tables), the session's audit entries and record, each
 * with its sha256 in MANIFEST.sha256 (sha256sum format) and manifest.json.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Session } from './records.js';
import { sha256Hex } from '../hash.js';

const read = (p: string) => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
};

export function sessionPids(s: Session): number[] {
  for (const dir of s.cgroups) {
    const pids = read(join(dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
    if (pids.length > 0) return pids;
  }
  return [];
}

export interface Evidence {
  dir: string;
  files: { name: string; sha256: string; bytes: number }[];
}

export function collectEvidence(state: string, s: Session, reason: string): Evidence {
  const dir = join(state, 'evidence', `${s.id}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const write = (name: string, data: string | Buffer) => writeFileSync(join(dir, name), data, { mode: 0o600 });

  const pids = sessionPids(s);
  const processes = pids.map((pid) => {
    const status = Object.fromEntries(read(`/proc/${pid}/status`).split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    return { pid, ppid: Number(status.PPid), name: status.Name, state: status.State, uid: status.Uid, cmdline: read(`/proc/${pid}/cmdline`).split('\0').filter(Boolean) };
  });
  write('processes.json', JSON.stringify(processes, null, 2) + '\n');

  // The innermost process sits in the box's network namespace: its tables are the box's.
  const inner = processes.filter((p) => p.cmdline[0] !== undefined).at(-1);
  const tables = inner ? ['tcp', 'tcp6', 'udp', 'udp6', 'unix'].map((t) => `== /proc/net/${t} (as seen by pid ${inner.pid})\n${read(`/proc/${inner.pid}/net/${t}`)}`).join('\n') : 'no process found\n';
  write('connections.txt', tables);

  s.layers.forEach((l, i) => {
    if (existsSync(l.upper)) write(`writable-layer-${i}.tar`, execFileSync('tar', ['-C', l.upper, '-cf', '-', '.'], { maxBuffer: 1 << 30 }));
  });
  const auditFile = join(state, 'audit.jsonl');
  write('audit.jsonl', read(auditFile).split('\n').filter((l) => l.includes(`"session":"${s.id}"`)).map((l) => l + '\n').join(''));
  write('session.json', JSON.stringify({ ...s, quarantineReason: reason }, null, 2) + '\n');

  const files = readdirSync(dir)
    .sort()
    .map((name) => {
      const data = readFileSync(join(dir, name));
      return { name, sha256: sha256Hex(data), bytes: data.length };
    });
  write('MANIFEST.sha256', files.map((f) => `${f.sha256}  ${f.name}\n`).join(''));
  write('manifest.json', JSON.stringify({ session: s.id, agent: s.agent, takenAt: new Date().toISOString(), reason, layers: s.layers.map((l) => l.path), files }, null, 2) + '\n');
  return { dir, files };
}
