/**
 * Governance on a real launched agent (process runtime, real bubblewrap, real Cedar,
 * real proxy), driven only through the CLI as users would:
 * - organisation policy forbids a grant the manifest has: `policy check` and
 *   `launch --policy` both exit 3 naming the policy, and nothing starts;
 * - a held consent request is approved from a second process (`agentbox approve`) and
 *   the agent's request then succeeds; an unanswered one is denied at the timeout;
 * - a request body carrying a test private key is blocked and audited with the
 *   detector and a keyed digest, never the key;
 * - an upload through a CONNECT tunnel past egress.maxUploadBytes quarantines the
 *   session (egress cut, frozen, evidence, token revoked);
 * - every decision is in the audit log, which still verifies.
 */
import { execa } from 'execa';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTcp, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-governance-'));
chmodSync(base, 0o755);
let sink: Server;
let port = 0;
let tcp: ReturnType<typeof createTcp>;
let tcpPort = 0;
let tcpBytes = 0;
const bodies: { url: string; body: string }[] = [];
const TEST_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----';

const run = (args: string[], env: Record<string, string>) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', ...env } });
const audit = (state: string) => readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { action: string; decision: string; reason: string; resource: string; details?: Record<string, unknown> });

/** A manifest whose agent runs `script` (Python) with the given extra manifest text. */
function agent(name: string, script: string, extra: string): string {
  const py = join(base, `${name}.py`);
  writeFileSync(py, script, { mode: 0o644 });
  const f = join(base, `${name}.yaml`);
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nextends: [organizer]\nagent: { command: [/usr/bin/python3, ${py}] }\nttl: 10m\ncapabilities:\n  - fs:read:${py}\n${extra}`);
  return f;
}

const POST = `import urllib.request as u, sys
def post(path, data, port=PORT):
    try:
        r = u.urlopen(u.Request("http://127.0.0.1:%d%s" % (port, path), data=data.encode(), method="POST"), timeout=30)
        print("status", r.status, r.read().decode(), flush=True)
    except Exception as e:
        print("status", getattr(e, "code", None), flush=True)
`;

async function pending(env: Record<string, string>): Promise<{ id: string; question: string; host: string; port: number }[]> {
  for (let i = 0; i < 300; i++) {
    const r = await run(['approvals', '--json'], env);
    const list = JSON.parse(String(r.stdout));
    if (list.length > 0) return list;
    await new Promise((x) => setTimeout(x, 50));
  }
  return [];
}

beforeAll(async () => {
  sink = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      bodies.push({ url: req.url ?? '', body });
      res.end(`got ${body.length}`);
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  port = (sink.address() as AddressInfo).port;
  tcp = createTcp((c) => {
    c.on('data', (d) => (tcpBytes += d.length));
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  tcpPort = (tcp.address() as AddressInfo).port;
});
afterAll(() => {
  sink?.close();
  tcp?.close();
});

describe('organisation policy before launch', () => {
  it('a forbidden grant fails policy check and refuses launch with exit 3, naming the policy; nothing starts', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const org = mkdtempSync(join(base, 'org-'));
    writeFileSync(join(org, 'ports.cedar'), `@id("no-high-ports")\n@reason("agents may only use the standard web ports")\nforbid (principal, action == Agentbox::Action::"connect", resource)\nwhen { resource.port != 80 && resource.port != 443 };\n`);
    const m = agent('forbidden', `${POST.replace('PORT', String(port))}post("/x", "hello")\n`, `  - net:connect:127.0.0.1:${port}\n`);
    const check = await run(['policy', 'check', m, '--policy', org, '--home', base], env);
    expect(check.exitCode).toBe(3);
    expect(String(check.stdout)).toMatch(new RegExp(`forbidden net:connect:127.0.0.1:${port}\\s+capabilities\\[1\\]`));
    expect(String(check.stdout)).toMatch(/policy no-high-ports: agents may only use the standard web ports/);
    const launch = await run(['launch', m, '--policy', org, '--home', base], env);
    expect(launch.exitCode).toBe(3);
    expect(String(launch.stderr)).toMatch(/forbidden was not launched: organisation policy \(.*\) forbids 1 of its grants/);
    expect(String(launch.stderr)).toMatch(/no-high-ports/);
    expect(String(launch.stdout)).not.toMatch(/status/);
    expect(JSON.parse(String((await run(['ps', '--json'], env)).stdout))).toEqual([]);
    expect(audit(env.AGENTBOX_STATE_DIR).map((e) => e.action)).toEqual(['policy.launch-refused']);
    // The same manifest passes the shipped seed policies' network rule (127.0.0.1 is labelled corporate there)
    // and the launch goes ahead under AGENTBOX_POLICY, with the run-time decision audited with its policy.
    const ok = await run(['launch', m, '--home', base], { ...env, AGENTBOX_POLICY: join(import.meta.dirname, '..', 'profiles', 'policies') });
    expect(ok.exitCode, String(ok.stderr)).toBe(0);
    expect(String(ok.stdout)).toMatch(/status 200 got 5/);
    const http = audit(env.AGENTBOX_STATE_DIR).find((e) => e.action === 'egress.http' && e.decision === 'allow');
    expect(http?.details?.policy).toEqual({ decision: 'allow', ids: ['agentbox.manifest-grant'], cached: false });
  }, 60_000);
});

describe('just-in-time consent', () => {
  it('a request approved from a second process goes through; an unanswered one is denied at the timeout', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const script = `${POST.replace('PORT', String(port))}post("/approved", "report")\npost("/unanswered", "second")\n`;
    const m = agent('asker', script, `egress:\n  consent: { ask: ["127.0.0.1:${port}"], timeout: 3s }\n`);
    const before = bodies.length;
    const session = run(['launch', m, '--home', base], env);
    const [req] = await pending(env);
    expect(req!.question).toBe(`asker wants to connect to 127.0.0.1:${port} to upload 6 bytes (POST /approved). Allow once / allow for this session / deny?`);
    const approve = await run(['approve', req!.id, '--once'], env);
    expect(approve.exitCode, String(approve.stderr)).toBe(0);
    expect(String(approve.stdout)).toBe(`asker → 127.0.0.1:${port}: allowed once`);
    // The second request asks again (once means once) and nobody answers.
    const t0 = Date.now();
    const end = await session;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2500);
    expect(end.exitCode).toBe(0);
    expect(String(end.stdout).trim().split('\n')).toEqual(['status 200 got 6', 'status 403']);
    expect(bodies.slice(before).map((b) => b.url)).toEqual(['/approved']);
    expect(String(end.stderr)).toMatch(/no answer within 3s: denied/);
    const answers = audit(env.AGENTBOX_STATE_DIR).filter((e) => e.action === 'consent.answer');
    expect(answers.map((a) => [a.decision, a.details?.answer, a.details?.via])).toEqual([
      ['allow', 'once', 'cli'],
      ['deny', 'timeout', 'timeout'],
    ]);
    expect(String(answers[0]!.details?.by)).toMatch(/^root/);
    expect(audit(env.AGENTBOX_STATE_DIR).filter((e) => e.action === 'consent.request')).toHaveLength(2);
    // Answering a request that no longer waits is an error that lists what does.
    const late = await run(['approve', req!.id, '--session'], env);
    expect(late.exitCode).toBe(2);
    expect(String(late.stderr)).toMatch(/no pending request/);
    expect((await run(['audit', 'verify'], env)).exitCode).toBe(0);
  }, 60_000);
});

describe('consent on the launching terminal', () => {
  it('on a real pseudo-terminal the person answers at the prompt; the answer is audited as tty with the terminal', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    // A pty driver (test/helpers/ptydrive.py): runs the launch as a terminal session and answers "s" at the prompt.
    const driver = join(import.meta.dirname, '..', 'test', 'helpers', 'ptydrive.py');
    const script = `${POST.replace('PORT', String(port))}post("/tty-one", "a")\npost("/tty-two", "b")\n`;
    const m = agent('ttyasker', script, `egress:\n  consent: { ask: ["127.0.0.1:${port}"], timeout: 20s }\n`);
    const r = await execa('python3', [driver, process.execPath, BIN, 'launch', m, '--home', base], { reject: false, env: { NO_COLOR: '1', ...env } });
    expect(r.exitCode, String(r.stdout)).toBe(0);
    expect(String(r.stdout)).toMatch(/ttyasker wants to connect to 127\.0\.0\.1:\d+ to upload 1 byte \(POST \/tty-one\)\. Allow once \/ allow for this session \/ deny\?/);
    expect(String(r.stdout)).toMatch(/status 200 got 1[\s\S]*status 200 got 1/);
    const answers = audit(env.AGENTBOX_STATE_DIR).filter((e) => e.action === 'consent.answer');
    expect(answers).toHaveLength(1);
    expect(answers[0]!.details).toMatchObject({ answer: 'session', via: 'tty' });
    expect(String(answers[0]!.details?.by)).toMatch(/ on \/dev\/pts\/\d+$/);
  }, 60_000);
});

describe('DLP and the upload threshold', () => {
  it('a body carrying a private key is blocked, audited by detector and digest, never by content', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const script = `${POST.replace('PORT', String(port))}post("/leak", ${JSON.stringify(`id_rsa:\n${TEST_KEY}\n`)})\npost("/fine", "weekly summary")\n`;
    const m = agent('leaker', script, `  - net:connect:127.0.0.1:${port}\negress:\n  dlp: { detectors: [private-key, aws-access-key, us-ssn, payment-card] }\n`);
    const before = bodies.length;
    const end = await run(['launch', m, '--home', base], env);
    expect(end.exitCode, String(end.stderr)).toBe(0);
    expect(String(end.stdout).trim().split('\n')).toEqual(['status 403', 'status 200 got 14']);
    expect(bodies.slice(before).map((b) => b.url)).toEqual(['/fine']);
    const log = readFileSync(join(env.AGENTBOX_STATE_DIR, 'audit.jsonl'), 'utf8');
    expect(log).not.toContain('b3BlbnNzaC1rZXkt');
    expect(log).not.toContain('BEGIN OPENSSH PRIVATE KEY');
    const blocked = audit(env.AGENTBOX_STATE_DIR).find((e) => e.action === 'egress.http' && e.details?.dlp);
    expect(blocked?.details?.dlp).toMatchObject({ detector: 'private-key', where: 'body', method: 'POST', path: '/leak' });
    expect(String((blocked?.details?.dlp as { digest: string }).digest)).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(audit(env.AGENTBOX_STATE_DIR).some((e) => e.action === 'violation.dlp')).toBe(true);
  }, 60_000);

  it('an upload past maxUploadBytes through a CONNECT tunnel quarantines the session', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const work = join(base, 'uploader-work');
    mkdirSync(work, { recursive: true });
    const script = `import socket, os, time
p = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
s = socket.create_connection(("127.0.0.1", p))
s.sendall(b"CONNECT 127.0.0.1:${tcpPort} HTTP/1.1\\r\\nHost: 127.0.0.1:${tcpPort}\\r\\n\\r\\n")
print("tunnel", s.recv(64).split(b"\\r\\n")[0].decode(), flush=True)
try:
    for i in range(100):
        s.sendall(b"x" * 8192); time.sleep(0.01)
except OSError as e:
    print("cut", flush=True)
time.sleep(30)
print("not frozen", flush=True)
`;
    // An opaque tunnel (raw TCP, not TLS): organizer's default DLP would decrypt every CONNECT, so it is off here.
    const m = agent('uploader', script, `  - net:connect:127.0.0.1:${tcpPort}\negress:\n  dlp: false\n  maxUploadBytes: 64KiB\n  onViolation: quarantine\n`);
    tcpBytes = 0;
    const session = run(['launch', m, '--home', base], env);
    let state = '';
    let id = '';
    for (let i = 0; i < 200 && state !== 'quarantined'; i++) {
      await new Promise((x) => setTimeout(x, 50));
      const list = JSON.parse(String((await run(['ps', '--json'], env)).stdout)) as { id: string; state: string }[];
      state = list[0]?.state ?? '';
      id = list[0]?.id ?? '';
    }
    expect(state).toBe('quarantined');
    expect(tcpBytes).toBeLessThanOrEqual(64 * 1024);
    expect(readFileSync(`/sys/fs/cgroup/freezer/agentbox/${id}/freezer.state`, 'utf8').trim()).toBe('FROZEN');
    // Cut and freeze come first (the state says quarantined); the token is revoked and the
    // evidence streamed to files after that, while the session stays frozen.
    let events = audit(env.AGENTBOX_STATE_DIR);
    for (let i = 0; i < 200 && !events.some((e) => e.action.startsWith('quarantine.evidence')); i++) {
      await new Promise((x) => setTimeout(x, 50));
      events = audit(env.AGENTBOX_STATE_DIR);
    }
    const violation = events.find((e) => e.action === 'violation.upload-limit');
    expect(violation?.reason).toMatch(/would pass 65536 bytes within 60s.*onViolation: quarantine/);
    for (const a of ['quarantine.egress-cut', 'quarantine.frozen', 'quarantine.evidence', 'token.revoked']) expect(events.map((e) => e.action)).toContain(a);
    expect((await run(['kill', id], env)).exitCode).toBe(0);
    const end = await session;
    expect(String(end.stdout)).not.toMatch(/not frozen/);
    expect((await run(['audit', 'verify'], env)).exitCode).toBe(0);
  }, 60_000);
});
