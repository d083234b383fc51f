/**
 * `agentbox audit verify`: checks the chain and the signatures and names the first bad
 * entry. The hash chain is checked for every entry (about 2 µs each); the last entry's
 * signature covers the whole chain through `prev`; where the chain breaks, the
 * signatures of the entries either side decide which one was changed. `full` checks
 * every signature as well (about 90 µs each).
 *
 * What it cannot see on its own: entries cut from the end of the log (the remaining
 * prefix is still a valid chain). Exporting to a SIEM as entries are written is the
 * external anchor for that.
 */
import { verify as edVerify, type KeyObject } from 'node:crypto';
import { GENESIS, sha256Hex, signedBytes, type AuditRecord } from './sink.js';

export interface VerifyReport {
  ok: boolean;
  entries: number;
  /** The first entry that fails, by line number (1-based) and what is wrong. */
  firstBad: { line: number; seq: number | null; problem: string } | null;
  /** A last line without its newline: an interrupted append, or a log cut short. */
  tornLine: number | null;
  checkedSignatures: number;
}

function sigOk(r: AuditRecord, key: KeyObject): boolean {
  try {
    return edVerify(null, Buffer.from(signedBytes(r)), key, Buffer.from(r.sig, 'base64'));
  } catch {
    return false;
  }
}

export function verifyLog(text: string, key: KeyObject, full = false): VerifyReport {
  const lines = text.split('\n');
  let tornLine: number | null = null;
  if (lines[lines.length - 1] === '') lines.pop();
  else if (lines.length > 0) {
    tornLine = lines.length;
    lines.pop();
  }
  let prevHash = GENESIS;
  let prevRecord: AuditRecord | null = null;
  let signatures = 0;
  const bad = (line: number, seq: number | null, problem: string): VerifyReport => ({ ok: false, entries: lines.length, firstBad: { line, seq, problem }, tornLine, checkedSignatures: signatures });
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const n = i + 1;
    let r: AuditRecord;
    try {
      r = JSON.parse(line) as AuditRecord;
    } catch {
      return bad(n, null, 'not valid JSON (bytes changed)');
    }
    if (typeof r.seq !== 'number' || typeof r.prev !== 'string' || typeof r.sig !== 'string') return bad(n, null, 'missing seq, prev or sig');
    const expectedSeq = prevRecord ? prevRecord.seq + 1 : 1;
    if (r.prev !== prevHash) {
      // Either the previous entry was changed, or this one does not belong here.
      if (prevRecord && !sigOk(prevRecord, key)) return bad(n - 1, prevRecord.seq, 'its signature does not match its contents (the entry was changed)');
      signatures++;
      if (r.seq !== expectedSeq) {
        // A missing seq that appears later was moved, not deleted.
        const movedLater = lines.slice(i + 1).some((l) => l.startsWith(`{"seq":${expectedSeq},`));
        return bad(
          n,
          r.seq,
          r.seq > expectedSeq && !movedLater
            ? `seq ${r.seq} follows ${expectedSeq - 1}: entries ${expectedSeq}..${r.seq - 1} were deleted`
            : `seq ${r.seq} is out of order (expected ${expectedSeq}): entries were reordered`,
        );
      }
      if (!sigOk(r, key)) return bad(n, r.seq, 'its signature does not match its contents (the entry was changed)');
      return bad(n, r.seq, `prev does not match the hash of entry ${expectedSeq - 1}: the chain was broken (an entry was changed, replaced or inserted before it)`);
    }
    if (r.seq !== expectedSeq) return bad(n, r.seq, `seq ${r.seq} where ${expectedSeq} was expected`);
    if (full) {
      signatures++;
      if (!sigOk(r, key)) return bad(n, r.seq, 'its signature does not match its contents (the entry was changed)');
    }
    prevHash = sha256Hex(line);
    prevRecord = r;
  }
  if (prevRecord && !full) {
    signatures++;
    if (!sigOk(prevRecord, key)) return bad(lines.length, prevRecord.seq, 'its signature does not match its contents (the entry was changed)');
  }
  return { ok: tornLine === null, entries: lines.length, firstBad: null, tornLine, checkedSignatures: signatures };
}
