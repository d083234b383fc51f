/**
 * Attack: rewriting the last audit entry so it still verifies. The attack review changed
 * the last line with a duplicate key, an extra field or a re-escaped character; it still
 * verified, even with --full, and still verified after the next session appended.
 * Defence: every line must be exactly the RFC 8785 serialisation of what it parses to,
 * with only the fields agentbox writes, and the signature covers that serialisation; the
 * appender records an `audit.tail-invalid` entry when the line it chains to does not
 * verify. Lines of the older fixed-order format verify in that exact form only. The
 * signature must be in its one canonical base64 spelling (the property test below found
 * that a changed last character could decode to the same signature).
 */
import { createPublicKey, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuditSink, deviceKey } from '../../src/audit/sink.js';
import { legacySignedBytes, parseLine } from '../../src/audit/record.js';
import { verifyLog } from '../../src/audit/verify.js';
import { sha256Hex } from '../../src/hash.js';
import { listSummary } from '../../src/session/summary.js';

function log(n: number, details?: (i: number) => Record<string, unknown>): { state: string; file: string } {
  const state = mkdtempSync(join(tmpdir(), 'agentbox-jcs-'));
  const sink = new AuditSink(state);
  for (let i = 0; i < n; i++) sink.append({ session: 's', agent: 'a', action: 'x', resource: `r${i}`, decision: 'info', reason: `entry ${i}`, ...(details ? { details: details(i) } : {}) });
  return { state, file: join(state, 'audit.jsonl') };
}
const key = (state: string) => createPublicKey(deviceKey(state).publicPem);
const lines = (file: string) => readFileSync(file, 'utf8').trimEnd().split('\n');

describe('canonical audit lines', () => {
  const variants: [string, (l: string) => string][] = [
    ['a duplicate key', (l) => l.replace('"decision":"info"', '"decision":"deny","decision":"info"')],
    ['an extra field', (l) => l.replace('{', '{"approvedBy":"ceo",')],
    ['a re-escaped character', (l) => l.replace('"reason":"entry', '"reason":"\\u0065ntry')],
    ['whitespace', (l) => l.replace('","', '", "')],
    // The signature's last base64 character carries 2 unused bits: another spelling decodes
    // to the same 64 bytes, so the signature itself still checks out.
    ['a signature spelled with other unused bits', (l) => {
      const o = JSON.parse(l) as { sig: string };
      const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
      const last = o.sig[85]!;
      const other = B64[(B64.indexOf(last) & ~3) | ((B64.indexOf(last) + 1) & 3)]!;
      expect(Buffer.from(o.sig.slice(0, 85) + other + '==', 'base64')).toEqual(Buffer.from(o.sig, 'base64'));
      return l.replace(o.sig, o.sig.slice(0, 85) + other + '==');
    }],
    ['reordered keys', (l) => {
      const o = JSON.parse(l) as Record<string, unknown>;
      return JSON.stringify(Object.fromEntries(Object.entries(o).reverse()));
    }],
  ];
  for (const [name, change] of variants) {
    it(`the last entry with ${name} does not verify, with or without --full, nor after the next append`, () => {
      const { state, file } = log(5);
      const l = lines(file);
      const changed = change(l[4]!);
      expect(changed).not.toBe(l[4]);
      // It still parses to the same record as before: only its bytes changed.
      expect(JSON.parse(changed).reason).toBe(JSON.parse(l[4]!).reason);
      l[4] = changed;
      writeFileSync(file, l.join('\n') + '\n');
      expect(verifyLog(readFileSync(file, 'utf8'), key(state)).firstBad?.line).toBe(5);
      expect(verifyLog(readFileSync(file, 'utf8'), key(state), true).firstBad?.line).toBe(5);
      new AuditSink(state).append({ session: 's2', agent: 'a', action: 'launch', resource: 'r', decision: 'allow', reason: 'next session' });
      const after = verifyLog(readFileSync(file, 'utf8'), key(state), true);
      expect(after.firstBad?.line).toBe(5);
      expect(lines(file).map((x) => JSON.parse(x).action)).toContain('audit.tail-invalid');
    });
  }

  it('every line is its record\'s canonical form, whatever the details hold; any one changed byte fails (property)', () => {
    const details = fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)), { maxKeys: 4 });
    fc.assert(
      fc.property(fc.array(details, { minLength: 1, maxLength: 4 }), fc.nat(), fc.nat(), (ds, lineIx, pos) => {
        const { state, file } = log(ds.length, (i) => ds[i]!);
        const text = readFileSync(file, 'utf8');
        if (!verifyLog(text, key(state), true).ok) return false;
        for (const l of lines(file)) if (!parseLine(l).ok) return false;
        const ls = lines(file);
        const i = lineIx % ls.length;
        const line = ls[i]!;
        const at = pos % line.length;
        const c = line[at]!;
        const replacement = c === 'a' ? 'b' : 'a';
        ls[i] = line.slice(0, at) + replacement + line.slice(at + 1);
        return !verifyLog(ls.join('\n') + '\n', key(state), true).ok;
      }),
      { numRuns: 60 },
    );
  });

  it('lines of the older fixed-order format verify in exactly that form', () => {
    const state = mkdtempSync(join(tmpdir(), 'agentbox-legacy-'));
    const { privateKey } = deviceKey(state);
    let prev = '0'.repeat(64);
    const out: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const unsigned = { seq: i, time: '2026-11-01T00:00:00.000Z', session: 's', agent: 'a', action: 'x', resource: 'r', decision: 'info' as const, reason: `old ${i}`, prev };
      const body = legacySignedBytes(unsigned);
      const line = `${body.slice(0, -1)},"sig":"${sign(null, Buffer.from(body), privateKey).toString('base64')}"}`;
      out.push(line);
      prev = sha256Hex(line);
    }
    const file = join(state, 'audit.jsonl');
    writeFileSync(file, out.join('\n') + '\n');
    expect(verifyLog(readFileSync(file, 'utf8'), key(state), true)).toMatchObject({ ok: true, legacyEntries: 3 });
    // New entries chain onto the old ones in the canonical form.
    new AuditSink(state).append({ session: 's', agent: 'a', action: 'launch', resource: 'r', decision: 'allow', reason: 'new' });
    expect(verifyLog(readFileSync(file, 'utf8'), key(state), true)).toMatchObject({ ok: true, entries: 4, legacyEntries: 3 });
    out[1] = out[1]!.replace('"old 2"', '"old  2"');
    expect(verifyLog(out.join('\n') + '\n', key(state), true).firstBad?.line).toBe(2);
  });
});

describe('bounded lists in entries', () => {
  it('a list of 400 long names is kept as its first 100, a count and a hash of the whole', () => {
    const names = Array.from({ length: 400 }, (_, i) => `modified /home/u/${'x'.repeat(250)}-${i}`);
    const s = listSummary(names);
    expect(s.count).toBe(400);
    expect(s.first).toHaveLength(100);
    expect(s.truncated).toBe(true);
    expect(s.sha256).toBe(sha256Hex(names.map((n) => `${n}\n`).join('')));
    expect(JSON.stringify(s).length).toBeLessThan(40_000);
    expect(listSummary(['a', 'b']).truncated).toBe(false);
  });
});
