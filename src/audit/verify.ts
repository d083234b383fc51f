/**
 * `agentbox audit verify`: checks the chain and the signatures and names the first bad
 * entry. Every line must be exactly the canonical bytes of the record it parses to
 * (record.ts): an entry with a duplicate key, an extra field or a re-escaped character
 * is bad even if its signature covers what it parses to. The hash chain is checked for
 * every entry (about 2 µs each); the last entry's signature covers the whole chain
 * through `prev`; where the chain breaks, the signatures of the entries either side
 * decide which one was changed. `full` checks every signature as well (about 90 µs each).
 *
 * What it cannot see on its own: entries cut from the end of the log (the remaining
 * prefix is still a valid chain). Exporting to a SIEM as entries are written is the
 * external anchor for that.
 */
import { verify as edVerify, type KeyObject } from 'node:crypto';
import { sha256Hex } from '../hash.js';
import { GENESIS, legacySignedBytes, parseLine, signedBytes, type AuditRecord } from './record.js';

export interface VerifyReport {
  ok: boolean;
  entries: number;
  /** The first entry that fails, by line number (1-based) and what is wrong. */
  firstBad: { line: number; seq: number | null; problem: string } | null;
  /** A last line without its newline: an interrupted append, or a log cut short. */
  tornLine: number | null;
  checkedSignatures: number;
  /** Entries in the format written before RFC 8785 lines (verified in that format). */
  legacyEntries: number;
}

function sigOk(r: AuditRecord, format: 'jcs' | 'legacy', key: KeyObject): boolean {
  try {
    return edVerify(null, Buffer.from(format === 'jcs' ? signedBytes(r) : legacySignedBytes(r)), key, Buffer.from(r.sig, 'base64'));
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
  let prev: { r: AuditRecord; format: 'jcs' | 'legacy' } | null = null;
  let signatures = 0;
  let legacy = 0;
  const bad = (line: number, seq: number | null, problem: string): VerifyReport => ({ ok: false, entries: lines.length, firstBad: { line, seq, problem }, tornLine, checkedSignatures: signatures, legacyEntries: legacy });
  const seqOf = (l: string) => {
    const p = parseLine(l);
    return p.ok ? p.record.seq : null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const n = i + 1;
    const p = parseLine(line);
    if (!p.ok) return bad(n, null, p.problem);
    const r = p.record;
    if (p.format === 'legacy') legacy++;
    const expectedSeq = prev ? prev.r.seq + 1 : 1;
    if (r.prev !== prevHash) {
      // Either the previous entry was changed, or this one does not belong here.
      if (prev && !sigOk(prev.r, prev.format, key)) return bad(n - 1, prev.r.seq, 'its signature does not match its contents (the entry was changed)');
      signatures++;
      if (r.seq !== expectedSeq) {
        // A missing seq that appears later was moved, not deleted.
        const movedLater = lines.slice(i + 1).some((l) => seqOf(l) === expectedSeq);
        return bad(
          n,
          r.seq,
          r.seq > expectedSeq && !movedLater
            ? `seq ${r.seq} follows ${expectedSeq - 1}: entries ${expectedSeq}..${r.seq - 1} were deleted`
            : `seq ${r.seq} is out of order (expected ${expectedSeq}): entries were reordered`,
        );
      }
      if (!sigOk(r, p.format, key)) return bad(n, r.seq, 'its signature does not match its contents (the entry was changed)');
      return bad(n, r.seq, `prev does not match the hash of entry ${expectedSeq - 1}: the chain was broken (an entry was changed, replaced or inserted before it)`);
    }
    if (r.seq !== expectedSeq) return bad(n, r.seq, `seq ${r.seq} where ${expectedSeq} was expected`);
    if (full) {
      signatures++;
      if (!sigOk(r, p.format, key)) return bad(n, r.seq, 'its signature does not match its contents (the entry was changed)');
    }
    prevHash = sha256Hex(line);
    prev = { r, format: p.format };
  }
  if (prev && !full) {
    signatures++;
    if (!sigOk(prev.r, prev.format, key)) return bad(lines.length, prev.r.seq, 'its signature does not match its contents (the entry was changed)');
  }
  return { ok: tornLine === null, entries: lines.length, firstBad: null, tornLine, checkedSignatures: signatures, legacyEntries: legacy };
}
