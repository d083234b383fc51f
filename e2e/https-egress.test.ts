/**
 * HTTPS egress on real launched boxes, driven through the CLI: a loopback HTTPS server
 * with a test CA stands in for the internet. The proxy trusts that CA through the
 * manifest's egress.trust; the box trusts only the system bundle plus the session CA.
 *
 * Attacks and defences:
 * - the agent holds an API key a prompt injection could send anywhere: the key is
 *   brokered; Claude Code (real, from npm) authenticates to the fake Anthropic API with
 *   the real key injected at the proxy, while the box holds only a placeholder. Checked:
 *   the key is nowhere in the box's environment, /proc (environ, cmdline), files it can
 *   read, or the audit log;
 * - a secret in an HTTPS body: blocked by DLP inside the decrypted tunnel, with the
 *   reason in the status line the client prints (process, container and micro-VM);
 * - a secret file another user could read (mode 0644): refused, nothing starts (exit 4).
 */
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';
import { ROOT } from '../test/helpers/load.js';
import { startFakeApi, type FakeApi } from '../test/helpers/fake-api.js';
import { TestCa } from '../test/helpers/internet.js';
import { agentBin } from '../test/helpers/agents.js';

const CLAUDE = agentBin('claude');
const ANSWER = 'FAKE-ANSWER-tls-91c2';
const SECRET = 'sk-ant-api03-REALKEY-6d1f0b9e2a7c4e3d';
const TEST_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----';
const UID = 64000;

const base = mkdtempSync(join(tmpdir(), 'agentbox-https-e2e-'));
chmodSync(base, 0o755);
const state = join(base, 'state');
let api: FakeApi;
let caFile = '';
let secretFile = '';

const run = (args: string[], cwd = base) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', cwd, env: { NO_COLOR: '1', AGENTBOX_STATE_DIR: state } });
const audit = () => readFileSync(join(state, 'audit.jsonl'), 'utf8');

beforeAll(async () => {
  const internet = await TestCa.create();
  caFile = join(base, 'internet-ca.pem');
  writeFileSync(caFile, internet.pem, { mode: 0o644 });
  api = await startFakeApi(ANSWER, await internet.issue(['127.0.0.1']));
  const secrets = join(base, 'secrets');
  mkdirSync(secrets, { mode: 0o700 });
  secretFile = join(secrets, 'anthropic');
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  await api?.close();
});

/** The egress section every manifest here uses: the fake API granted, decrypted, its key brokered. */
const egress = () => ({
  trust: [caFile],
  dlp: { detectors: ['private-key', 'aws-access-key'] },
  credentials: [{ host: '127.0.0.1', header: 'x-api-key', name: 'anthropic', secret: { file: secretFile }, env: 'ANTHROPIC_API_KEY' }],
});
const grants = () => [`net:connect:127.0.0.1:${api.port}`];

/** A Python agent: GETs the fake API, POSTs a private key to it, then searches everything it can see for the secret. */
const PROBE = `import os, sys, urllib.request as u
url = sys.argv[1]
print("get", u.urlopen(url + "/v1/models", timeout=30).status, flush=True)
try:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\\n" + sys.argv[2] + "\\n-----END OPENSSH PRIVATE KEY-----"
    u.urlopen(u.Request(url + "/v1/upload", data=key.encode(), method="POST"), timeout=30)
    print("post passed", flush=True)
except Exception as e:
    print("post", getattr(e, "code", None), getattr(e, "reason", e), flush=True)
print("placeholder", os.environ.get("ANTHROPIC_API_KEY", "")[:19], flush=True)
print("bundle", os.environ.get("SSL_CERT_FILE"), os.environ.get("NODE_EXTRA_CA_CERTS"), flush=True)
needle = sys.argv[3][::-1].encode()  # given reversed: the key itself is in no argv
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for f in ("environ", "cmdline"):
            try:
                if needle in open("/proc/%s/%s" % (pid, f), "rb").read(): found.append("/proc/%s/%s" % (pid, f))
            except OSError:
                pass
# Everything the agent could have been handed a file in (not /usr: the system's programs).
for top in {"/etc", "/tmp", "/var/tmp", "/run", "/root", os.environ.get("HOME", "/etc"), os.getcwd() if os.getcwd() != "/" else "/etc"}:
    for d, _, files in os.walk(top):
        for n in files:
            p = os.path.join(d, n)
            try:
                if os.path.isfile(p) and os.path.getsize(p) < 4 << 20 and needle in open(p, "rb").read(): found.append(p)
            except OSError:
                pass
print("found", found, flush=True)
`;

function probeManifest(name: string, runtime: string): string {
  const py = join(base, `${name}.py`);
  writeFileSync(py, PROBE, { mode: 0o644 });
  const doc = {
    apiVersion: 'agentbox/v1',
    kind: 'Agent',
    metadata: { name },
    extends: ['organizer'],
    agent: { command: ['/usr/bin/python3', py, `https://127.0.0.1:${api.port}`, TEST_KEY.split('\n')[1]!, [...SECRET].reverse().join('')] },
    capabilities: [`fs:read:${py}`, ...grants()],
    ttl: '5m',
    runtime: { kind: runtime },
    egress: egress(),
  };
  const f = join(base, `${name}.yaml`);
  writeFileSync(f, stringify(doc));
  return f;
}

function checkProbe(out: string): void {
  expect(out).toMatch(/^get 200$/m);
  // DLP inside the decrypted tunnel; the reason is in the status line urllib prints.
  expect(out).toMatch(/^post 403 Forbidden by agentbox \(dlp\)$/m);
  expect(out).toMatch(/^placeholder agentbox:anthropic:$/m);
  expect(out).toMatch(/^bundle \/etc\/ssl\/certs\/ca-certificates\.crt \/etc\/ssl\/certs\/ca-certificates\.crt$/m);
  expect(out).toMatch(/^found \[\]$/m);
}

describe('HTTPS through inspection, on real boxes', () => {
  it('process runtime: GET passes, a private key in an HTTPS body is refused, the brokered key is nowhere in the box', async () => {
    const before = api.seen.length;
    const r = await run(['launch', probeManifest('tlsprobe', 'process')]);
    expect(r.exitCode, r.stderr).toBe(0);
    checkProbe(r.stdout);
    const seen = api.seen.slice(before);
    expect(seen.map((s) => s.url)).toEqual(['/v1/models']);
    // The fake API got the real key, injected by the proxy.
    expect(seen[0]!.headers['x-api-key']).toBe(SECRET);
    const log = audit();
    expect(log).not.toContain(SECRET);
    const entries = log.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { action: string; decision: string; details?: Record<string, unknown> });
    const https = entries.filter((e) => e.action === 'egress.https');
    expect(https.find((e) => e.decision === 'allow')!.details).toMatchObject({ method: 'GET', path: '/v1/models', injected: [{ credential: 'anthropic', host: '127.0.0.1', via: 'header x-api-key', digest: expect.stringMatching(/^hmac-sha256:[0-9a-f]{64}$/) }] });
    expect(https.find((e) => e.decision === 'deny')!.details).toMatchObject({ method: 'POST', path: '/v1/upload', dlp: { detector: 'private-key', where: 'body' } });
  }, 120_000);

  it('container runtime: the same, with the bundle over the image\'s system bundle', async () => {
    const r = await run(['launch', probeManifest('tlsprobe-ct', 'container')]);
    expect(r.exitCode, r.stderr).toBe(0);
    checkProbe(r.stdout);
  }, 240_000);

  it('micro-VM runtime: the same, with the bundle bound over the guest\'s system bundle', async () => {
    const r = await run(['launch', probeManifest('tlsprobe-vm', 'microvm')]);
    expect(r.exitCode, r.stderr).toBe(0);
    checkProbe(r.stdout);
  }, 300_000);

  it('Claude Code from npm authenticates to the fake API with the brokered key, holding only the placeholder', async () => {
    expect(existsSync(CLAUDE), `${CLAUDE} (installed by the global setup, test/helpers/agents.ts)`).toBe(true);
    const h = mkdtempSync(join(base, 'claude-home-'));
    chmodSync(h, 0o755);
    for (const d of ['work', '.claude']) {
      mkdirSync(join(h, d));
      chownSync(join(h, d), UID, UID);
    }
    writeFileSync(join(h, '.claude.json'), '{}');
    chownSync(join(h, '.claude.json'), UID, UID);
    const doc = parse(readFileSync(join(ROOT, 'profiles', 'agents', 'claude-code.yaml'), 'utf8')) as { agent: { command: string[]; env: Record<string, string> }; capabilities: string[]; egress?: unknown };
    doc.agent.command[0] = CLAUDE;
    doc.agent.env.ANTHROPIC_BASE_URL = `https://127.0.0.1:${api.port}`;
    doc.capabilities.push(...grants());
    // Its API host under method/path rules: the messages API only, nothing else.
    doc.egress = { ...egress(), http: [{ host: '127.0.0.1', allow: ['POST /v1/messages', 'POST /v1/messages/**'], deny: ['* /v1/files/**'] }] };
    const f = join(base, 'claude-tls.yaml');
    writeFileSync(f, stringify(doc));
    const before = api.seen.length;
    const r = await run(['launch', f, '--home', h, '--', CLAUDE, '-p', 'say hi'], join(h, 'work'));
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(ANSWER);
    const msgs = api.seen.slice(before).filter((s) => s.method === 'POST' && /^\/v1\/messages/.test(s.url));
    expect(msgs.length).toBeGreaterThan(0);
    for (const m of msgs) expect(m.headers['x-api-key']).toBe(SECRET);
    // What Claude Code sent never held the key (the placeholder went in; the proxy swapped it).
    expect(audit()).not.toContain(SECRET);
    // The rules were applied to what Claude Code sent (each request audited with its rule).
    const entries = audit().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { session: string; action: string; decision: string; details?: Record<string, unknown> });
    const session = /session (\S+) ended/.exec(r.stderr)![1];
    const decided = entries.filter((e) => e.session === session && e.action === 'egress.https');
    expect(decided.some((e) => e.decision === 'allow' && e.details?.method === 'POST' && /^\/v1\/messages/.test(String(e.details?.path)))).toBe(true);
    expect(decided.every((e) => e.decision === 'deny' || /^\/v1\/messages/.test(String(e.details?.path)))).toBe(true);
    // A prompt carrying an AWS key id: Claude Code's request is refused inside TLS; the API never sees it.
    const leaked = api.seen.length;
    const k = await run(['launch', f, '--home', h, '--', CLAUDE, '-p', 'remember AKIA2E3NGX5M4HYT7Q2W please'], join(h, 'work'));
    expect(k.exitCode).not.toBe(0);
    expect(api.seen.slice(leaked).some((x) => x.body.includes('AKIA2E3NGX5M4HYT7Q2W'))).toBe(false);
    expect(audit()).toMatch(/"action":"egress.https"[^\n]*"detector":"aws-access-key"/);
    const described = await run(['describe', f]);
    expect(described.stdout).toMatch(/use your anthropic key for 127.0.0.1 through agentbox; it never sees the key/);
    expect(described.stdout).toContain(`connect to 127.0.0.1 on port ${api.port} (agentbox decrypts and inspects its HTTPS)`);
  }, 180_000);

  it('a secret file others can read is refused: exit 4, naming the file and the fix, nothing started', async () => {
    const loose = join(base, 'loose-secret');
    writeFileSync(loose, SECRET, { mode: 0o644 });
    chmodSync(loose, 0o644);
    const f = probeManifest('tlsloose', 'process');
    const doc = parse(readFileSync(f, 'utf8')) as { egress: { credentials: { secret: unknown }[] } };
    doc.egress.credentials[0]!.secret = { file: loose };
    writeFileSync(f, stringify(doc));
    const before = api.seen.length;
    const r = await run(['launch', f]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(new RegExp(`credential anthropic \\(egress\\.credentials\\[0\\]\\) for 127.0.0.1: ${loose.replace(/[/.]/g, '\\$&')} has mode 644; a secret file must be 0600 or 0400 \\(chmod 600`));
    expect(r.stderr).not.toContain(SECRET);
    expect(api.seen.length).toBe(before);
  });
});
