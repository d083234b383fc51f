/**
 * The audit log writer: append-only JSON lines in STATE/audit.jsonl, one module so
 * chaining and signing (the incident-response issue) can grow here. Each entry carries
 * seq, time, session, agent, action, resource, decision and reason (SPEC §6); payloads
 * are never stored. Appends are synchronous so an entry reported is on disk.
 */
import { appendFileSync, existsSync, openSync, closeSync, readFileSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';

export interface AuditEntry {
  session: string;
  agent: string;
  action: string;
  resource: string;
  decision: 'allow' | 'deny' | 'info';
  reason: string;
  details?: Record<string, unknown>;
}

export interface AuditRecord extends AuditEntry {
  seq: number;
  time: string;
}

export class AuditSink {
  readonly file: string;
  private seq: number;

  constructor(dir: string) {
    this.file = join(dir, 'audit.jsonl');
    this.seq = lastSeq(this.file);
  }

  append(entry: AuditEntry): AuditRecord {
    const record: AuditRecord = { seq: ++this.seq, time: new Date().toISOString(), ...entry };
    appendFileSync(this.file, JSON.stringify(record) + '\n', { mode: 0o600 });
    return record;
  }

  /** Forces what was appended to stable storage. */
  sync(): void {
    const fd = openSync(this.file, 'a');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function lastSeq(file: string): number {
  if (!existsSync(file)) return 0;
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const seq = (JSON.parse(lines[i]!) as { seq?: number }).seq;
      if (typeof seq === 'number') return seq;
    } catch {
      // a torn line: keep looking back
    }
  }
  return 0;
}

/** Reads every entry (for summaries and tests). */
export function readAudit(dir: string): AuditRecord[] {
  const file = join(dir, 'audit.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}
