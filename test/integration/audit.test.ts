/**
 * Attacks on the audit trail: flip a byte in an entry or its signature, delete an
 * entry, reorder two, leave a torn last line, kill -9 the writer mid-burst, and two
 * writers at once. Defence: hash chain plus ed25519 signatures, verify naming the
 * first bad entry, fsync before acknowledging, a lock so the chain never forks, and
 * torn tails moved aside and recorded rather than dropped.
 */
import { execa } from 'execa';
import { mkdtempSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditSink, deviceKey, spooledFiles } from '../../src/audit/sink.js';
import { processState } from '../../src/host/proc.js';
import { verifyLog } from '../../src/audit/verify.js';
import { agentbox } from '../helpers/cli.js';
import { ROOT } from '../helpers/load.js';

function log(n: number) {
  const state = mkdtempSync(join(tmpdir(), 'agentbox-audit-'));
  const sink = new AuditSink(state);
  for (let i = 0; i < n; i++) sink.append({ session: 's1', agent: 'a', action: 'egress.connect', resource: `h${i}.example.com:443`, decision: i % 3 ? 'allow' : 'deny', reason: `r${i}` });
  return { state, file: join(state, 'audit.jsonl'), key: deviceKey(state).publicKey };
}
const lines = (f: string) => readFileSync(f, 'utf8').split('\n').filter(Boolean);

describe('audit log: tamper evidence', () => {
  it('an intact log verifies, with every entry chained and signed', () => {
    const { file, key } = log(50);
    const r = verifyLog(readFileSync(file, 'utf8'), key, true);
    expect(r).toMatchObject({ ok: true, entries: 50, firstBad: null, checkedSignatures: 50 });
    const first = JSON.parse(lines(file)[0]!);
    expect(first).toMatchObject({ seq: 1, prev: '0'.repeat(64), sig: expect.stringMatching(/^[A-Za-z0-9+/]{86}==$/) });
  });

  it('a flipped byte in an entry names that entry', () => {
    const { file, key } = log(50);
    const l = lines(file);
    l[19] = l[19]!.replace('"reason":"r19"', '"reason":"r18"');
    const r = verifyLog(l.join('\n') + '\n', key);
    expect(r.firstBad).toMatchObject({ line: 20, seq: 20, problem: expect.stringMatching(/signature does not match/) });
  });

  it('a flipped byte in the last entry, or in a signature, is caught', () => {
    const { file, key } = log(10);
    const l = lines(file);
    const last = l.length - 1;
    l[last] = l[last]!.replace(/"decision":"(allow|deny|info)"/, (_m, d: string) => `"decision":"${d === 'deny' ? 'allow' : 'deny'}"`);
    expect(l[last]).not.toBe(lines(file)[last]);
    expect(verifyLog(l.join('\n') + '\n', key).firstBad?.line).toBe(10);
    const s = lines(file);
    s[4] = s[4]!.replace(/"sig":"(.)/, (_m, c: string) => `"sig":"${c === 'A' ? 'B' : 'A'}`);
    expect(verifyLog(s.join('\n') + '\n', key).firstBad).toMatchObject({ line: 5 });
  });

  it('a deleted entry is named by the gap it leaves', () => {
    const { file, key } = log(30);
    const l = lines(file);
    l.splice(11, 1);
    expect(verifyLog(l.join('\n') + '\n', key).firstBad).toMatchObject({ line: 12, seq: 13, problem: expect.stringMatching(/entries 12\.\.12 were deleted/) });
  });

  it('a reordered pair is named', () => {
    const { file, key } = log(30);
    const l = lines(file);
    [l[7], l[8]] = [l[8]!, l[7]!];
    expect(verifyLog(l.join('\n') + '\n', key).firstBad).toMatchObject({ line: 8, problem: expect.stringMatching(/out of order/) });
  });

  it('another device key does not verify', () => {
    const { file } = log(5);
    const other = deviceKey(mkdtempSync(join(tmpdir(), 'agentbox-other-'))).publicKey;
    expect(verifyLog(readFileSync(file, 'utf8'), other).ok).toBe(false);
  });

  it('a torn last line is reported, then moved aside and recorded by the next append', async () => {
    const { state, file } = log(5);
    writeFileSync(file, readFileSync(file, 'utf8') + '{"seq":6,"time":"2026-', { flag: 'w' });
    const v = await agentbox(['audit', 'verify', '--json'], { env: { AGENTBOX_STATE_DIR: state } });
    expect(v.code).toBe(1);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: false, entries: 5, tornLine: 6, firstBad: null });
    new AuditSink(state).append({ session: 's', agent: 'a', action: 'x', resource: 'r', decision: 'info', reason: 'after crash' });
    const after = lines(file).map((l) => JSON.parse(l));
    expect(after.map((e) => e.action)).toEqual(['egress.connect', 'egress.connect', 'egress.connect', 'egress.connect', 'egress.connect', 'audit.torn-tail', 'x']);
    expect(after[5].details).toMatchObject({ bytes: 22 });
    expect(readdirSync(state).some((f) => f.startsWith('audit.torn-'))).toBe(true);
    expect((await agentbox(['audit', 'verify'], { env: { AGENTBOX_STATE_DIR: state } })).code).toBe(0);
  });

  it('kill -9 during a burst of appends loses no acknowledged entry, and the prefix verifies', async () => {
    const state = mkdtempSync(join(tmpdir(), 'agentbox-kill9-'));
    new AuditSink(state); // create the key before the burst
    const writer = execa(process.execPath, ['--input-type=module', '-e', `
      const { AuditSink } = await import(${JSON.stringify(join(ROOT, 'dist/audit/sink.js'))});
      const s = new AuditSink(${JSON.stringify(state)});
      for (let i = 0; ; i++) { const r = s.append({ session: 'burst', agent: 'a', action: 'egress.connect', resource: 'h:' + i, decision: 'allow', reason: 'x'.repeat(i % 200) }); process.stdout.write(r.seq + '\\n'); }
    `], { reject: false, stdin: 'ignore' });
    await new Promise((r) => setTimeout(r, 700));
    writer.kill('SIGKILL');
    const out = await writer;
    const acked = String(out.stdout).split('\n').filter(Boolean).map(Number);
    expect(acked.length).toBeGreaterThan(20);
    const text = readFileSync(join(state, 'audit.jsonl'), 'utf8');
    const onDisk = new Set(text.split('\n').filter((l) => l.endsWith('}')).map((l) => JSON.parse(l).seq));
    for (const seq of acked) expect(onDisk.has(seq), `acknowledged seq ${seq} lost`).toBe(true);
    const r = verifyLog(text, deviceKey(state).publicKey);
    expect(r.firstBad).toBeNull();
    expect(r.entries).toBeGreaterThanOrEqual(acked.length);
  }, 30_000);

  it('two writers at once never fork the chain', async () => {
    const state = mkdtempSync(join(tmpdir(), 'agentbox-conc-'));
    new AuditSink(state);
    const script = `const { AuditSink } = await import(${JSON.stringify(join(ROOT, 'dist/audit/sink.js'))}); const s = new AuditSink(${JSON.stringify(state)}); for (let i = 0; i < 300; i++) s.append({ session: process.pid + '', agent: 'a', action: 'x', resource: 'r' + i, decision: 'info', reason: 'c' });`;
    await Promise.all([1, 2].map(() => execa(process.execPath, ['--input-type=module', '-e', script])));
    const r = verifyLog(readFileSync(join(state, 'audit.jsonl'), 'utf8'), deviceKey(state).publicKey, true);
    expect(r).toMatchObject({ ok: true, entries: 600 });
  }, 60_000);

  it('the device key is private to root: 0600 in a 0700 directory', async () => {
    const { state } = log(1);
    const { statSync } = await import('node:fs');
    expect(statSync(join(state, 'keys')).mode & 0o777).toBe(0o700);
    expect(statSync(join(state, 'keys', 'device-ed25519.pem')).mode & 0o777).toBe(0o600);
  });
});

/**
 * Attack: stop the process that holds the audit lock (SIGSTOP mid-append), so every
 * other writer (the responder's quarantine among them) waits and fails; or forge a
 * spool file to slip entries into the chain. Defence: a writer that finds the holder
 * stopped spools its entries, signed, and returns; the next lock holder chains them
 * with `details.deferred`; a spool file that does not verify is moved aside and
 * recorded, never appended as genuine; the lock is never taken from a live holder.
 */
describe('audit log: a stopped lock holder', () => {
  async function stoppedHolder(state: string) {
    const holder = execa(process.execPath, ['-e', `
      const fs = require('node:fs');
      const stat = fs.readFileSync('/proc/self/stat', 'utf8');
      const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      fs.writeFileSync(${JSON.stringify(join(state, 'audit.jsonl.lock'))}, process.pid + ' ' + start, { flag: 'wx' });
      process.kill(process.pid, 'SIGSTOP');
      setTimeout(() => {}, 60000);
    `], { reject: false, stdin: 'ignore' });
    for (let i = 0; i < 200 && processState(holder.pid!) !== 'T'; i++) await new Promise((r) => setTimeout(r, 25));
    expect(processState(holder.pid!)).toBe('T');
    // Wrapped: an async function returning the subprocess (a thenable) would wait for it to exit.
    return { holder };
  }

  it('a writer does not wait on a stopped holder: it spools, and the next holder chains the entries', async () => {
    const { state, file } = log(3);
    const { holder } = await stoppedHolder(state);
    const sink = new AuditSink(state);
    const t0 = performance.now();
    const r = sink.append({ session: 'q1', agent: 'a', action: 'quarantine.requested', resource: 'q1', decision: 'deny', reason: 'responder' });
    const ms = performance.now() - t0;
    expect(r).toBeUndefined();
    expect(ms).toBeLessThan(2000);
    expect(spooledFiles(state)).toHaveLength(1);
    expect(lines(file)).toHaveLength(3);
    const v = await agentbox(['audit', 'verify'], { env: { AGENTBOX_STATE_DIR: state } });
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/1 spooled write in audit\.spool\/ waits for the lock/);

    holder.kill('SIGKILL');
    await holder;
    const next = sink.append({ session: 'q1', agent: 'a', action: 'quarantine.frozen', resource: 'q1', decision: 'deny', reason: 'after' });
    expect(next?.seq).toBe(5);
    const all = lines(file).map((l) => JSON.parse(l));
    expect(all.map((e) => e.action)).toEqual(['egress.connect', 'egress.connect', 'egress.connect', 'quarantine.requested', 'quarantine.frozen']);
    expect(all[3].details.deferred).toMatchObject({ lockHolder: holder.pid, spooledBy: process.pid, why: `the lock holder (pid ${holder.pid}) is stopped` });
    expect(spooledFiles(state)).toHaveLength(0);
    expect(verifyLog(readFileSync(file, 'utf8'), deviceKey(state).publicKey, true)).toMatchObject({ ok: true, entries: 5 });
  }, 30_000);

  it('a spool file changed after it was written is recorded as invalid, not appended', async () => {
    const { state, file } = log(2);
    const { holder } = await stoppedHolder(state);
    const sink = new AuditSink(state);
    sink.append({ session: 'q2', agent: 'a', action: 'egress.connect', resource: 'evil.example:443', decision: 'deny', reason: 'not allowlisted' });
    const [spool] = spooledFiles(state);
    writeFileSync(spool!, readFileSync(spool!, 'utf8').replace('"decision":"deny"', '"decision":"allow"'));
    holder.kill('SIGKILL');
    await holder;
    sink.append({ session: 'q2', agent: 'a', action: 'x', resource: 'r', decision: 'info', reason: 'next' });
    const all = lines(file).map((l) => JSON.parse(l));
    expect(all.map((e) => e.action)).toEqual(['egress.connect', 'egress.connect', 'audit.spool-invalid', 'x']);
    expect(all.some((e) => e.resource === 'evil.example:443')).toBe(false);
    expect(readdirSync(state).filter((n) => n.startsWith('audit.spool-invalid-'))).toHaveLength(1);
    expect(verifyLog(readFileSync(file, 'utf8'), deviceKey(state).publicKey, true).ok).toBe(true);
  }, 30_000);

  it('a lock file that names nobody (its writer died before writing its pid) is taken as stale', () => {
    const { state, file } = log(1);
    writeFileSync(join(state, 'audit.jsonl.lock'), '');
    utimesSync(join(state, 'audit.jsonl.lock'), new Date(Date.now() - 5000), new Date(Date.now() - 5000));
    const t0 = performance.now();
    expect(new AuditSink(state).append({ session: 's', agent: 'a', action: 'x', resource: 'r', decision: 'info', reason: 'after' })?.seq).toBe(2);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(lines(file)).toHaveLength(2);
  });
});
