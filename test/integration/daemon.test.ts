/**
 * agentboxd run directly (systemd is not PID 1 here; the unit is booted in
 * e2e/daemon-nspawn.test.ts), against what `apply --root --offline` installed.
 *
 * Attacks and defences:
 * - another local account (root, uid 64001) rides the agent's proxy on 127.0.0.1:PORT.
 *   Defence: the kernel's owner of the connecting socket (/proc/net/tcp) must be the
 *   agent's uid; anything else gets a 403 and a `daemon.peer-refused` entry.
 * - the agent reaches a host it was not granted, or uploads a secret. Defence: the
 *   session's allowlist and DLP, with the 403 naming the rule.
 * - the agent sends a secret over HTTPS, which the daemon cannot decrypt. Defence: a
 *   tunnel to a host the manifest inspects is refused ('uninspectable'), never blind.
 * - the agent keeps sending after `agentbox quarantine`. Defence: its processes are
 *   moved into a freezer cgroup of their own, which the command freezes by itself;
 *   its TCP connections are shut down from outside; the daemon closes its proxy;
 *   release thaws with egress still cut.
 * - a config on disk changed to widen what the daemon does (group-writable, another
 *   uid). Defence: every config is re-checked and a bad one stops the daemon (exit 1).
 */
import { execa, type ResultPromise } from 'execa';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentbox, BIN } from '../helpers/cli.js';

const UID = 64077;
const AKIA = 'AKIAZ7Q3KDXXW2LMP4RT';
const base = mkdtempSync(join(tmpdir(), 'agentbox-daemon-'));
const root = join(base, 'root');
const state = join(base, 'state');
const env = { AGENTBOX_STATE_DIR: state };
let sink: Server;
let sinkPort = 0;
let proxyPort = 0;
const received: string[] = [];
let daemon: ResultPromise | undefined;
let agent: ResultPromise | undefined;

async function freePort(): Promise<number> {
  const s = netServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/** curl through the daemon's proxy as `uid` (setpriv: a real process of that account). */
async function viaProxy(uid: number, args: string[]): Promise<{ status: number; body: string }> {
  const r = await execa('setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', 'curl', '-s', '-o', '-', '-w', '\n%{http_code}', '-x', `http://127.0.0.1:${proxyPort}`, ...args], { reject: false });
  const out = String(r.stdout);
  const i = out.lastIndexOf('\n');
  return { status: Number(out.slice(i + 1)), body: out.slice(0, i) };
}

const audit = () => readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { action: string; decision: string; reason: string; session: string; details?: Record<string, unknown> });
const status = async () => JSON.parse((await agentbox(['daemon', 'status', '--config-dir', join(root, 'etc/agentbox'), '--json'], { env })).stdout) as { running: boolean; problem: string | null; agents: { agent: string; session: string; listening: boolean }[] };

async function startDaemon(): Promise<void> {
  daemon = execa(process.execPath, [BIN, 'daemon', 'run', '--config-dir', join(root, 'etc/agentbox')], { env: { ...env, NO_COLOR: '1' }, reject: false, stdin: 'ignore' });
  expect((await agentbox(['daemon', 'status', '--wait', '10s', '--config-dir', join(root, 'etc/agentbox')], { env })).code).toBe(0);
}

beforeAll(async () => {
  sink = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push(`${req.method} ${req.url} ${body}`);
      res.end('SINK-OK');
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  sinkPort = (sink.address() as { port: number }).port;
  proxyPort = await freePort();
  mkdirSync(join(root, 'etc'), { recursive: true });
  for (const f of ['passwd', 'group']) cpSync(`/etc/${f}`, join(root, 'etc', f));
  mkdirSync(join(base, 'home'));
  const manifest = join(base, 'svc.yaml');
  writeFileSync(manifest, `apiVersion: agentbox/v1
kind: Agent
metadata: { name: svcd }
agent: { command: [/usr/bin/python3, /opt/agent.py], user: agentboxd-t, uid: ${UID} }
capabilities:
  - net:connect:api.example.com:443
  - net:connect:127.0.0.1:${sinkPort}
  - exec:/usr/bin
egress:
  proxyPort: ${proxyPort}
  dlp: { detectors: [aws-access-key] }
`);
  const applied = await agentbox(['apply', manifest, '--root', root, '--offline', '--home', join(base, 'home')]);
  expect(applied.code, applied.stderr).toBe(0);
  await startDaemon();
}, 60_000);

afterAll(async () => {
  agent?.kill('SIGKILL');
  daemon?.kill('SIGTERM');
  await daemon;
  await new Promise<void>((r) => sink.close(() => r()));
});

describe('agentboxd governs an applied agent (run directly)', () => {
  it('apply installed its config 0600, its unit bound to agentboxd, and both enabled at boot', () => {
    const unit = readFileSync(join(root, 'etc/systemd/system/agentbox-svcd.service'), 'utf8');
    expect(unit).toMatch(/^Requires=agentboxd\.service agentbox-svcd-firewall\.service$/m);
    expect(unit).toMatch(/^BindsTo=agentboxd\.service$/m);
    expect(unit).toMatch(/^After=agentboxd\.service agentbox-svcd-firewall\.service$/m);
    expect(readFileSync(join(root, 'etc/systemd/system/agentbox-svcd-firewall.service'), 'utf8')).toMatch(/^ExecStart=\/usr\/sbin\/nft -f \/etc\/agentbox\/agentbox-svcd\.nft$/m);
    for (const u of ['agentboxd.service', 'agentbox-svcd-firewall.service']) expect(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants', u))).toBe(`/etc/systemd/system/${u}`);
    expect(statSync(join(root, 'etc/agentbox/agentbox-svcd.daemon.json')).mode & 0o777).toBe(0o600);
  });

  it('the agent reaches its granted host through the proxy; a port it was not granted is refused naming the rule', async () => {
    const ok = await viaProxy(UID, [`http://127.0.0.1:${sinkPort}/granted`]);
    expect(ok).toEqual({ status: 200, body: 'SINK-OK' });
    expect(received).toContain('GET /granted ');
    const other = await viaProxy(UID, [`http://127.0.0.1:${proxyPort === sinkPort + 1 ? sinkPort + 2 : sinkPort + 1}/x`]);
    expect(other.status).toBe(403);
    expect(other.body).toContain(`net:connect:127.0.0.1:${sinkPort} (capabilities[1]) allows port ${sinkPort} only`);
  });

  it('a DLP match is blocked and never reaches the host', async () => {
    const r = await viaProxy(UID, ['-d', `key=${AKIA}`, `http://127.0.0.1:${sinkPort}/upload`]);
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/matches detector aws-access-key; it was not sent/);
    expect(received.some((x) => x.includes(AKIA))).toBe(false);
    expect(audit().some((e) => e.action === 'egress.http' && e.decision === 'deny' && /aws-access-key/.test(e.reason))).toBe(true);
  });

  it('HTTPS to a host DLP must inspect is refused, not tunnelled blind', async () => {
    const r = await execa('setpriv', ['--reuid', String(UID), '--regid', String(UID), '--clear-groups', 'curl', '-s', '-i', '-p', '-x', `http://127.0.0.1:${proxyPort}`, `https://127.0.0.1:${sinkPort}/`], { reject: false });
    expect(String(r.stdout)).toMatch(/^HTTP\/1\.1 403/);
    expect(audit().some((e) => e.action === 'egress.connect' && e.decision === 'deny' && /must be inspected \(egress\.dlp\)/.test(e.reason))).toBe(true);
  });

  it('another account on the host cannot ride the proxy (root, uid 64001)', async () => {
    for (const uid of [0, 64001]) {
      const r = await viaProxy(uid, [`http://127.0.0.1:${sinkPort}/stolen-${uid}`]);
      expect(r.status).toBe(403);
      expect(received.some((x) => x.includes(`stolen-${uid}`))).toBe(false);
    }
    expect(audit().filter((e) => e.action === 'daemon.peer-refused').map((e) => e.details?.uid)).toEqual(expect.arrayContaining([0, 64001]));
  });

  it('ps lists the agent; quarantine freezes its processes by itself and nothing reaches the host after; release thaws with egress cut; kill starts a new session', async () => {
    const script = join(base, 'agent.py');
    writeFileSync(script, `import time, urllib.request\no = urllib.request.build_opener(urllib.request.ProxyHandler({'http': 'http://127.0.0.1:${proxyPort}'}))\nwhile True:\n    try: o.open('http://127.0.0.1:${sinkPort}/tick', timeout=2).read()\n    except Exception: pass\n    time.sleep(0.05)\n`);
    chmodSync(base, 0o755);
    chmodSync(script, 0o644);
    agent = execa('setpriv', ['--reuid', String(UID), '--regid', String(UID), '--clear-groups', '/usr/bin/python3', script], { reject: false, stdin: 'ignore' });
    const ticks = () => received.filter((x) => x.startsWith('GET /tick')).length;
    for (let i = 0; i < 100 && ticks() < 3; i++) await new Promise((r) => setTimeout(r, 50));
    expect(ticks()).toBeGreaterThanOrEqual(3);
    const s = await status();
    const id = s.agents[0]!.session;
    const ps = await agentbox(['ps', '--json'], { env });
    const rec = (JSON.parse(ps.stdout) as { id: string; unit: string; state: string; cgroups: string[]; pid: number }[]).find((x) => x.id === id)!;
    expect(rec).toMatchObject({ unit: 'agentbox-svcd.service', state: 'running', pid: agent.pid });
    const freezer = rec.cgroups[0]!;
    expect(readFileSync(join(freezer, 'cgroup.procs'), 'utf8')).toContain(String(agent.pid));

    const q = await agentbox(['quarantine', id, '--reason', 'test', '--json'], { env });
    expect(q.code, q.stderr).toBe(0);
    const after = ticks();
    expect(readFileSync(join(freezer, 'freezer.state'), 'utf8').trim()).toBe('FROZEN');
    expect(JSON.parse(q.stdout)[0]).toMatchObject({ quarantined: true, launcherAnswered: true, frozenBy: expect.stringMatching(/cgroup freezer/) });
    await new Promise((r) => setTimeout(r, 500));
    expect(ticks()).toBe(after);
    expect(audit().some((e) => e.session === id && e.action === 'quarantine.proxy-closed')).toBe(true);

    expect((await agentbox(['release', id], { env })).code).toBe(0);
    expect(readFileSync(join(freezer, 'freezer.state'), 'utf8').trim()).toBe('THAWED');
    const cut = await viaProxy(UID, [`http://127.0.0.1:${sinkPort}/after-release`]);
    expect(cut.status).toBe(403);
    await new Promise((r) => setTimeout(r, 300));
    expect(ticks()).toBe(after);

    // Frozen again, then killed: a frozen agent takes only SIGKILL; it is gone before the next session opens.
    expect((await agentbox(['quarantine', id, '--reason', 'again'], { env })).code).toBe(0);
    expect(readFileSync(join(freezer, 'freezer.state'), 'utf8').trim()).toBe('FROZEN');
    expect((await agentbox(['kill', id], { env })).code).toBe(0);
    expect((await agent).signal).toBe('SIGKILL');
    let next = id;
    for (let i = 0; i < 50 && next === id; i++) {
      await new Promise((r) => setTimeout(r, 100));
      next = (await status()).agents[0]!.session;
    }
    expect(next).not.toBe(id);
    expect(JSON.parse(readFileSync(join(state, 'sessions', `${id}.json`), 'utf8'))).toMatchObject({ state: 'exited' });
    expect(await viaProxy(UID, [`http://127.0.0.1:${sinkPort}/new-session`])).toEqual({ status: 200, body: 'SINK-OK' });
  }, 60_000);

  it('stopping the daemon: exit 0, status reports it down, the session is ended', async () => {
    const id = (await status()).agents[0]!.session;
    daemon!.kill('SIGTERM');
    expect((await daemon!).exitCode).toBe(0);
    const down = await agentbox(['daemon', 'status', '--config-dir', join(root, 'etc/agentbox')], { env });
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/agentboxd is not running; svcd has no egress proxy/);
    expect(JSON.parse(readFileSync(join(state, 'sessions', `${id}.json`), 'utf8'))).toMatchObject({ state: 'exited', endReason: 'agentboxd stopped' });
    const r = await execa('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${proxyPort}`, `http://127.0.0.1:${sinkPort}/`], { reject: false });
    expect(String(r.stdout)).toBe('000');
  }, 30_000);

  it('a second agent under the same uid: apply refuses it, and the daemon governs neither', async () => {
    const twin = join(base, 'twin.yaml');
    writeFileSync(twin, readFileSync(join(base, 'svc.yaml'), 'utf8').replace('name: svcd', 'name: twin'));
    const r = await agentbox(['apply', twin, '--root', root, '--offline', '--home', join(base, 'home')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/twin would run as uid 64077, which svcd .* already runs as; nothing was changed/);
    // Placed by hand past apply: both are refused, not mixed up.
    const cfg = readFileSync(join(root, 'etc/agentbox/agentbox-svcd.daemon.json'), 'utf8');
    const twinCfg = join(root, 'etc/agentbox/agentbox-twin.daemon.json');
    writeFileSync(twinCfg, cfg.replace(/"svcd"/g, '"twin"').replace('agentbox-svcd.service', 'agentbox-twin.service'), { mode: 0o600 });
    const other = join(base, 'state-twin');
    const d = execa(process.execPath, [BIN, 'daemon', 'run', '--config-dir', join(root, 'etc/agentbox')], { env: { AGENTBOX_STATE_DIR: other, NO_COLOR: '1' }, reject: false, stdin: 'ignore' });
    try {
      const st = await agentbox(['daemon', 'status', '--ready', '--wait', '10s', '--config-dir', join(root, 'etc/agentbox'), '--json'], { env: { AGENTBOX_STATE_DIR: other } });
      expect(st.code).toBe(0);
      const h = JSON.parse(st.stdout) as { problem: string; agents: { agent: string; refused: string | null }[] };
      expect(h.agents.map((a) => [a.agent, a.refused !== null])).toEqual([['svcd', true], ['twin', true]]);
      expect(h.problem).toMatch(/uid 64077 is also the account of twin/);
      expect((await viaProxy(UID, [`http://127.0.0.1:${sinkPort}/twin`])).status).toBe(403);
    } finally {
      d.kill('SIGTERM');
      await d;
      rmSync(twinCfg);
    }
  }, 30_000);

  it('a config widened on disk stops the daemon before it serves anything (exit 1, naming the file)', async () => {
    const cfg = join(root, 'etc/agentbox/agentbox-svcd.daemon.json');
    const good = readFileSync(cfg, 'utf8');
    try {
      chmodSync(cfg, 0o664);
      let r = await agentbox(['daemon', 'run', '--config-dir', join(root, 'etc/agentbox')], { env });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${cfg}: is writable by group or others`);
      chmodSync(cfg, 0o600);
      writeFileSync(cfg, good.replace(`"uid": ${UID},`, '"uid": 0,'));
      r = await agentbox(['daemon', 'run', '--config-dir', join(root, 'etc/agentbox')], { env });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/uid 0 is not an agent account's uid/);
    } finally {
      writeFileSync(cfg, good, { mode: 0o600 });
    }
  });
});
