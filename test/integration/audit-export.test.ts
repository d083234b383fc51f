/**
 * Audit export to a real SIEM receiver: rsyslog (Debian), started by this test on
 * loopback with UDP and TCP inputs, stopped by its PID. Checks that JSON, CEF and OCSF
 * entries arrive whole, and that CEF escaping keeps a hostile reason from forging
 * fields.
 * Attack (from the attack review): an entry of 107 KB (a revert listing 400 long file
 * names) made UDP export die with EMSGSIZE after 3 of 8 entries, and over TCP rsyslog
 * split it into 13 messages whose header fields came from the agent's file names.
 * Defence: each message at most 8 KiB (details replaced by their size and hash, then a
 * marked cut), RFC 6587 octet counting over TCP, and export goes on past a failed entry.
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditSink } from '../../src/audit/sink.js';
import { toCef, toOcsf } from '../../src/audit/export.js';
import { agentbox } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'agentbox-siem-'));
const out = join(work, 'received.log');
let rsyslog: ResultPromise | undefined;
let udpPort = 0;
let tcpPort = 0;
const state = mkdtempSync(join(tmpdir(), 'agentbox-siem-state-'));

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function received(match: RegExp, ms = 5000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const text = existsSync(out) ? readFileSync(out, 'utf8') : '';
    if (match.test(text) || Date.now() > end) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  udpPort = await freePort();
  tcpPort = await freePort();
  writeFileSync(join(work, 'rsyslog.conf'), `global(workDirectory="${work}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="${udpPort}")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}")
template(name="raw" type="string" string="%programname% %msg%\\n")
*.* action(type="omfile" file="${out}" template="raw")
`);
  rsyslog = execa('rsyslogd', ['-n', '-f', join(work, 'rsyslog.conf'), '-i', join(work, 'rsyslog.pid')], { reject: false, stdin: 'ignore' });
  await new Promise((r) => setTimeout(r, 800));
  const sink = new AuditSink(state);
  sink.append({ session: 'siem-1', agent: 'cowork', action: 'launch', resource: '/usr/bin/cowork', decision: 'allow', reason: 'session started' });
  sink.append({ session: 'siem-1', agent: 'cowork', action: 'egress.connect', resource: 'evil.example.com:443', decision: 'deny', reason: 'not allowlisted| act=allow suser=admin\nforged' });
}, 30_000);

afterAll(() => {
  rsyslog?.kill('SIGTERM');
});

describe('audit export to rsyslog', () => {
  it('CEF over UDP arrives, one message per entry', async () => {
    const r = await agentbox(['audit', 'export', '--format', 'cef', '--to', `syslog://127.0.0.1:${udpPort}`], { env: { AGENTBOX_STATE_DIR: state } });
    expect(r.code, r.stderr).toBe(0);
    const text = await received(/evil\.example\.com/);
    expect(text).toMatch(/^agentbox CEF:0\|agentbox\|agentbox\|0\.1\.0\|launch\|launch allow\|3\|/m);
    expect(text).toMatch(/egress\.connect\|egress\.connect deny\|6\|.*request=evil\.example\.com:443/);
  });

  it('OCSF over TCP arrives as JSON with the network class for egress', async () => {
    const r = await agentbox(['audit', 'export', '--format', 'ocsf', '--to', `syslog+tcp://127.0.0.1:${tcpPort}`], { env: { AGENTBOX_STATE_DIR: state } });
    expect(r.code, r.stderr).toBe(0);
    const text = await received(/"class_uid":4001/);
    const line = text.split('\n').find((l) => l.includes('"class_uid":4001'))!;
    const ocsf = JSON.parse(line.slice(line.indexOf('{')));
    expect(ocsf).toMatchObject({ class_uid: 4001, status: 'Failure', dst_endpoint: { hostname: 'evil.example.com', port: 443 }, metadata: { product: { name: 'agentbox' } } });
  });

  it('a hostile reason cannot forge CEF fields or split the record', () => {
    const cef = toCef({ seq: 2, time: '2026-11-23T00:00:00.000Z', session: 's', agent: 'a|b', action: 'x|y', resource: 'r', decision: 'deny', reason: 'r| act=allow suser=admin\nforged', prev: '0'.repeat(64), sig: 'x' });
    expect(cef).not.toMatch(/\n/);
    expect(cef).toContain('reason=r| act\\=allow suser\\=admin\\nforged');
    // Header: seven unescaped pipes; pipes inside extension values need no escape in CEF.
    const parts = cef.split(/(?<!\\)\|/);
    expect(parts.slice(0, 7)).toEqual(['CEF:0', 'agentbox', 'agentbox', '0.1.0', 'x\\|y', 'x\\|y deny', '6']);
    const ext = parts.slice(7).join('|');
    expect(ext.match(/(?<!\\)\bact=/g)).toHaveLength(1);
    expect(ext.match(/(?<!\\)\bsuser=/g)).toHaveLength(1);
    expect(toOcsf({ seq: 1, time: '2026-11-23T00:00:00.000Z', session: 's', agent: 'a', action: 'launch', resource: '/bin/x', decision: 'allow', reason: 'ok', prev: '0', sig: 'x' })).toMatchObject({ class_uid: 1007, activity_id: 1 });
  });

  it('an oversize entry whose file names look like syslog headers: 8 entries arrive as 8 messages, over UDP and TCP', async () => {
    const big = mkdtempSync(join(tmpdir(), 'agentbox-siem-big-'));
    const sink = new AuditSink(big);
    const names = Array.from({ length: 400 }, (_, i) => `modified /home/u/${'a'.repeat(200)}\n<13>1 2026-01-01T00:00:00Z evil forged ${i} - - injected`);
    for (let i = 0; i < 8; i++) sink.append({ session: `big-${i}`, agent: 'cowork', action: 'revert', resource: `big-${i}`, decision: 'info', reason: `${names.length} changes discarded`, details: { changes: names } });
    for (const [scheme, port, tag] of [['syslog', udpPort, 'udpbig'], ['syslog+tcp', tcpPort, 'tcpbig']] as const) {
      const r = await agentbox(['audit', 'export', '--format', 'json', '--to', `${scheme}://127.0.0.1:${port}`], { env: { AGENTBOX_STATE_DIR: big } });
      expect(r.code, `${tag}: ${r.stderr}`).toBe(0);
      expect(r.stderr).toMatch(/sent 8 entries/);
    }
    const text = await received(/big-7"[\s\S]*big-7"/, 8000);
    for (let i = 0; i < 8; i++) expect(text.match(new RegExp(`"session":"big-${i}"`, 'g')) ?? [], `big-${i}`).toHaveLength(2);
    // No message came from a file name: rsyslog never saw "evil" as a program name.
    expect(text.split('\n').filter((l) => l.startsWith('evil'))).toEqual([]);
    // Each arrived as valid JSON with its details replaced by their size and hash.
    const first = text.split('\n').find((l) => l.includes('"session":"big-0"'))!;
    expect(JSON.parse(first.slice(first.indexOf('{'))).details).toEqual({ truncated: { bytes: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
  }, 30_000);

  it('a bad --to URL is a usage error that says what is valid', async () => {
    const r = await agentbox(['audit', 'export', '--format', 'cef', '--to', 'http://siem'], { env: { AGENTBOX_STATE_DIR: state } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/use syslog:\/\/HOST:PORT \(UDP\) or syslog\+tcp:\/\/HOST:PORT/);
  });
});
