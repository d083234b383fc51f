/**
 * The audit record's exact shape and bytes (pure). Every line of audit.jsonl is the RFC
 * 8785 canonical serialisation (JCS, via `canonicalize`) of its record, and the record's
 * signature covers the canonical serialisation of the record without `sig`. A line whose
 * bytes are not exactly the canonical form of what it parses to (a duplicate key, an
 * extra field, a re-escaped character, reordered keys) is not a valid entry, whatever
 * it says: there is one way to write each record, and it is the one that was signed.
 *
 * Lines written before this format (fixed key order, `seq` first) are accepted when
 * they are byte-identical to that legacy form, and counted as legacy.
 */
import canonicalize from 'canonicalize';

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
  prev: string;
  sig: string;
}

export const GENESIS = '0'.repeat(64);

const KEYS = new Set(['seq', 'time', 'session', 'agent', 'action', 'resource', 'decision', 'reason', 'details', 'prev', 'sig']);
const DECISIONS = new Set(['allow', 'deny', 'info']);

const jcs = (v: unknown): string => {
  const s = canonicalize(v);
  if (s === undefined) throw new Error('the record cannot be serialised');
  return s;
};

/** The bytes a signature covers: the record without `sig`, canonical. */
export function signedBytes(r: Omit<AuditRecord, 'sig'> | AuditRecord): string {
  const { sig: _sig, ...unsigned } = r as AuditRecord;
  return jcs(unsigned);
}

/** The line for a signed record. */
export function lineOf(r: AuditRecord): string {
  return jcs(r);
}

/** The bytes the legacy format signed (fixed key order). */
export function legacySignedBytes(r: Omit<AuditRecord, 'sig'> | AuditRecord): string {
  const { seq, time, session, agent, action, resource, decision, reason, details, prev } = r;
  return JSON.stringify({ seq, time, session, agent, action, resource, decision, reason, ...(details !== undefined ? { details } : {}), prev });
}

function legacyLine(r: AuditRecord): string {
  const body = legacySignedBytes(r);
  return `${body.slice(0, -1)},"sig":${JSON.stringify(r.sig)}}`;
}

const SIG = /^[A-Za-z0-9+/]{86}==$/;

export type ParsedLine = { ok: true; record: AuditRecord; format: 'jcs' | 'legacy' } | { ok: false; problem: string };

/** Parses one line strictly: the fields agentbox writes, of their types, in canonical bytes. */
export function parseLine(line: string): ParsedLine {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, problem: 'not valid JSON (bytes changed)' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, problem: 'not a JSON object' };
  const r = v as Record<string, unknown>;
  const extra = Object.keys(r).filter((k) => !KEYS.has(k));
  if (extra.length > 0) return { ok: false, problem: `fields agentbox never writes: ${extra.slice(0, 5).join(', ')}` };
  if (!Number.isSafeInteger(r.seq) || (r.seq as number) < 1) return { ok: false, problem: 'seq is not a positive integer' };
  for (const k of ['time', 'session', 'agent', 'action', 'resource', 'reason', 'prev', 'sig']) if (typeof r[k] !== 'string') return { ok: false, problem: `${k} is missing or not a string` };
  if (!DECISIONS.has(r.decision as string)) return { ok: false, problem: 'decision is not allow, deny or info' };
  // An Ed25519 signature in its one base64 spelling: the last character's unused bits are
  // zero, so no other spelling decodes to the same signature and still verifies.
  if (!SIG.test(r.sig as string) || Buffer.from(r.sig as string, 'base64').toString('base64') !== r.sig) return { ok: false, problem: 'sig is not an Ed25519 signature in canonical base64' };
  if (!/^[0-9a-f]{64}$/.test(r.prev as string)) return { ok: false, problem: 'prev is not a sha256 in lowercase hex' };
  if (r.details !== undefined && (typeof r.details !== 'object' || r.details === null || Array.isArray(r.details))) return { ok: false, problem: 'details is not an object' };
  const record = r as unknown as AuditRecord;
  let canonical: string;
  try {
    canonical = lineOf(record);
  } catch {
    return { ok: false, problem: 'the entry cannot be serialised canonically' };
  }
  if (canonical === line) return { ok: true, record, format: 'jcs' };
  if (legacyLine(record) === line) return { ok: true, record, format: 'legacy' };
  return { ok: false, problem: 'its bytes are not the canonical form of its contents (a duplicate key, an extra escape or reordering: the entry was altered)' };
}
