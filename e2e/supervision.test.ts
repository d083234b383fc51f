/**
 * Attacks on the supervisor rather than the box (the attack review of the container
 * runtime, and quarantine on every runtime):
 * - evade quarantine by filling the grant: 1.1 GiB of writes made the evidence tar
 *   overflow a 1 GiB buffer, so `quarantine --all` failed before revoking tokens and
 *   skipped later sessions; the same write plus a DLP violation crashed the container
 *   launcher (an uncaught promise), leaving the container paused past its ttl;
 * - close the launcher's stdout (`launch … | head`): the container launcher exited 0 and
 *   left the container running;
 * - print 1 GiB into a stdout nobody reads: the root launcher buffered it all;
 * - read the process list under gVisor: evidence named runsc's processes, not the agent's;
 * - connect to a host unix socket inside a read grant, around the egress proxy;
 * - the launch audit entry said `runtime: process, landlock: true` for containers;
 * - read host state paths and the container id in /proc/self/mountinfo and the cgroup;
 * - leave cgroup folders behind (6 of 10 short sessions did).
 * Defence: quarantine cuts, freezes and revokes every session before any evidence, and
 * evidence streams to files, one failure never stopping the others; every async path of
 * a session is caught and audited; EPIPE ends the session the normal way (141);
 * output is relayed with backpressure; gVisor's own `runsc ps`; sockets inside grants are
 * covered; the audit names the runtime, isolation, image and the controls applied; a
 * private cgroup namespace and mount sources under /run/agentbox/ID; cgroups are removed
 * once empty.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttp, type Server } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-super-'));
chmodSync(base, 0o755);
let sink: Server;
let sinkPort = 0;

beforeAll(async () => {
  sink = createHttp((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  sinkPort = (sink.address() as AddressInfo).port;
});
afterAll(() => sink.close());

const cli = (args: string[], state: string) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state, NO_COLOR: '1' } });
const audit = (state: string) => readFileSync(join(state, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; session: string; decision: string; details?: Record<string, unknown> });

function agent(name: string, script: string, extra = ''): { manifest: string; work: string } {
  const work = join(base, `${name}-work`);
  mkdirSync(work, { recursive: true });
  chownSync(work, 64000, 64000);
  writeFileSync(join(base, `${name}.py`), script);
  const manifest = join(base, `${name}.yaml`);
  writeFileSync(manifest, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nextends: [organizer]\nagent: { command: [/usr/bin/python3, ${join(base, `${name}.py`)}] }\ncapabilities: [exec:/usr/bin, "fs:read:${base}", "fs:write:${work}", "net:connect:127.0.0.1:${sinkPort}"]\nttl: 10m\n${extra}`);
  return { manifest, work };
}

async function waitRunning(state: string, n: number): Promise<{ id: string; container: string | null; launcher: { pid: number } }[]> {
  for (let i = 0; i < 300; i++) {
    const s = JSON.parse(String((await cli(['ps', '--json'], state)).stdout)) as { id: string; state: string; container: string | null; launcher: { pid: number } }[];
    if (s.filter((x) => x.state === 'running').length >= n) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('sessions did not start');
}

const FILL = (work: string, marker: string) => `import os, time
with open("${work}/fill", "wb") as f:
    for i in range(1100):
        f.write(b"\\0" * (1 << 20))
open("${work}/${marker}", "w").write("written")
time.sleep(600)
`;

describe('quarantine cannot be evaded by filling the grant', () => {
  it('quarantine --all freezes, cuts and revokes every session, then streams 1.1 GiB of evidence', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const a = agent('filler', FILL(join(base, 'filler-work'), 'done'));
    const b = agent('idle', 'import time\ntime.sleep(600)\n');
    const la = execa(process.execPath, [BIN, 'launch', a.manifest, '--home', base], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state } });
    const lb = execa(process.execPath, [BIN, 'launch', b.manifest, '--home', base], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state } });
    const sessions = await waitRunning(state, 2);
    const filler = sessions.find((s) => s.id.startsWith('filler'))!;
    for (let i = 0; i < 300; i++) {
      const seen = await execa('sh', ['-c', `ls /run/agentbox/${filler.id}/mnt/0/merged/done`], { reject: false });
      if (seen.exitCode === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const q = await cli(['quarantine', '--all', '--json'], state);
    expect(q.exitCode, String(q.stderr)).toBe(0);
    const report = JSON.parse(String(q.stdout)) as { session: string; quarantined: boolean; evidence: string; tokenRevoked: string }[];
    expect(report.map((r) => r.quarantined)).toEqual([true, true]);
    const revoked = JSON.parse(readFileSync(join(state, 'revoked.json'), 'utf8')) as { jti: string }[];
    for (const r of report) expect(revoked.map((x) => x.jti)).toContain(r.tokenRevoked);
    const fillerEvidence = report.find((r) => r.session === filler.id)!.evidence;
    expect(statSync(join(fillerEvidence, 'writable-layer-0.tar')).size).toBeGreaterThan(1100 * 1024 * 1024);
    // The tokens were revoked before the evidence was taken.
    const actions = audit(state).filter((e) => e.action === 'token.revoked' || e.action === 'quarantine.evidence').map((e) => e.action);
    expect(actions.lastIndexOf('token.revoked')).toBeLessThan(actions.indexOf('quarantine.evidence'));
    for (const s of sessions) await cli(['kill', s.id], state);
    await Promise.all([la, lb]);
  }, 240_000);

  it('container: a DLP violation quarantines after a 1.1 GiB write without taking the launcher down', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const script = FILL(join(base, 'leaker-work'), 'done').replace('time.sleep(600)', `import urllib.request
try:
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:${sinkPort}/x", data=b"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW", method="POST"))
except Exception as e:
    print("blocked", e)
time.sleep(600)`);
    const a = agent('leaker', script, 'egress: { dlp: { detectors: [private-key] }, onViolation: quarantine }\n');
    const launcher = execa(process.execPath, [BIN, 'launch', a.manifest, '--home', base, '--runtime', 'container'], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state } });
    const [s] = await waitRunning(state, 1);
    let quarantined = false;
    for (let i = 0; i < 600 && !quarantined; i++) {
      await new Promise((r) => setTimeout(r, 100));
      quarantined = audit(state).some((e) => e.action === 'quarantine.evidence' || e.action === 'quarantine.evidence-failed');
    }
    expect(quarantined).toBe(true);
    // The launcher is alive and the session is quarantined with its token revoked.
    expect(existsSync(`/proc/${s!.launcher.pid}`)).toBe(true);
    const ps = JSON.parse(String((await cli(['ps', '--json'], state)).stdout)) as { state: string }[];
    expect(ps[0]!.state).toBe('quarantined');
    expect(audit(state).some((e) => e.action === 'token.revoked')).toBe(true);
    expect((await cli(['kill', s!.id], state)).exitCode).toBe(0);
    const end = await launcher;
    expect(end.exitCode).toBe(143);
    expect(audit(state).some((e) => e.action === 'exit')).toBe(true);
    expect((await execa('docker', ['inspect', s!.container!], { reject: false })).exitCode).not.toBe(0);
  }, 240_000);
});

describe.each([
  { name: 'process', args: [] as string[] },
  { name: 'container (runc)', args: ['--runtime', 'container'] },
])('the $name launcher and its stdout', (rt) => {
  it('a reader that stops early ends the session the normal way: stopped, reverted, audited, exit 141', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const a = agent(`pipe${rt.args.length}`, '');
    // yes(1) dies of SIGPIPE itself: 141 whether the box's stdout is the pipe (process) or the launcher relays it (container).
    const r = await execa('bash', ['-c', `${process.execPath} ${BIN} launch ${a.manifest} --home ${base} ${rt.args.join(' ')} -- /usr/bin/yes | head -c 10 >/dev/null; echo "\${PIPESTATUS[0]}"`], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state, NO_COLOR: '1' } });
    expect(String(r.stdout).trim()).toBe('141');
    const [s] = JSON.parse(String((await cli(['ps', '--all', '--json'], state)).stdout)) as { state: string; container: string | null; exitCode: number }[];
    expect(s).toMatchObject({ state: 'exited', exitCode: 141 });
    expect(audit(state).some((e) => e.action === 'exit')).toBe(true);
    if (s!.container) expect((await execa('docker', ['inspect', s!.container], { reject: false })).exitCode).not.toBe(0);
  }, 120_000);
});

describe('the launcher loses its terminal', () => {
  it('a closed stderr does not stop supervision or flood the audit log', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const a = agent('noisy', `import urllib.request
for i in range(200):
    try: urllib.request.urlopen("http://127.0.0.1:9/x%d" % i)
    except Exception: pass
print("done")
`);
    // stderr is a pipe whose reader is gone before the session starts: every message fails with EPIPE.
    const r = await execa('bash', ['-c', `${process.execPath} ${BIN} launch ${a.manifest} --home ${base} --verbose 2> >(exit 0); echo "rc=$?"`], { reject: false, stdin: 'ignore', timeout: 60_000, env: { AGENTBOX_STATE_DIR: state, NO_COLOR: '1' } });
    expect(String(r.stdout)).toMatch(/done\s+rc=0/);
    const entries = audit(state);
    expect(entries.filter((e) => e.action === 'session.internal-error').length).toBeLessThanOrEqual(20);
    expect(entries.filter((e) => e.action === 'egress.http' && e.decision === 'deny')).toHaveLength(200);
    expect(entries.some((e) => e.action === 'exit')).toBe(true);
  }, 90_000);
});

describe('container output nobody reads', () => {
  it('1 GiB printed into an unread stdout blocks the agent, not the launcher\'s memory', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const a = agent('flood', 'import sys\nfor i in range(16384):\n    sys.stdout.buffer.write(b"y" * 65536)\nsys.stdout.flush()\n');
    // stdout is a pipe this test never reads.
    const launcher = execa(process.execPath, [BIN, 'launch', a.manifest, '--home', base, '--runtime', 'container'], { reject: false, stdin: 'ignore', stdout: 'pipe', buffer: false, env: { AGENTBOX_STATE_DIR: state } });
    const [s] = await waitRunning(state, 1);
    let peak = 0;
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${s!.launcher.pid}/status`, 'utf8'));
      peak = Math.max(peak, Number(m?.[1] ?? 0) * 1024);
    }
    expect(peak).toBeLessThan(250 * 1024 * 1024);
    await cli(['kill', s!.id], state);
    launcher.stdout?.resume();
    await launcher;
  }, 120_000);
});

describe.each([
  { name: 'process', args: [] as string[], refused: false },
  { name: 'container (runc)', args: ['--runtime', 'container'], refused: false },
  { name: 'container (gVisor)', args: ['--runtime', 'container', '--isolation', 'gvisor'], refused: true },
])('a host unix socket inside a read grant ($name)', (rt) => {
  it(rt.refused ? 'cannot be covered by this runsc: the launch is refused (exit 4) and names it' : 'is covered: the agent cannot reach the service behind it', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const dir = join(base, `sockets-${rt.args.length}`);
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
    let connections = 0;
    const srv = createServer((c) => {
      connections++;
      c.end('host service\n');
    });
    await new Promise<void>((r) => srv.listen(join(dir, 'service.sock'), r));
    chmodSync(join(dir, 'service.sock'), 0o666);
    try {
      const a = agent(`sock${rt.args.length}`, `import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect("${join(dir, 'service.sock')}")\n    print("reached", s.recv(100))\nexcept Exception as e:\n    print("refused", type(e).__name__)\n`);
      const r = await execa(process.execPath, [BIN, 'launch', a.manifest, '--home', base, ...rt.args], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state } });
      if (rt.refused) {
        expect(r.exitCode).toBe(4);
        expect(String(r.stderr)).toContain(`socket ${join(dir, 'service.sock')}`);
        expect(connections).toBe(0);
        return;
      }
      expect(r.exitCode, String(r.stderr)).toBe(0);
      expect(String(r.stdout)).toMatch(/^refused/);
      expect(connections).toBe(0);
      const launch = audit(state).find((e) => e.action === 'launch')!;
      expect(launch.details!.controls).toContain('1 unix sockets inside grants covered');
    } finally {
      srv.close();
    }
  }, 120_000);
});

describe('what the container audit entry and the box say about themselves', () => {
  it('gVisor: the launch entry names the runtime, isolation, image and controls; evidence lists the agent from runsc', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const a = agent('gv', 'import time\ntime.sleep(600)\n');
    const launcher = execa(process.execPath, [BIN, 'launch', a.manifest, '--home', base, '--runtime', 'container', '--isolation', 'gvisor'], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state } });
    const [s] = await waitRunning(state, 1);
    const launch = audit(state).find((e) => e.action === 'launch')!;
    expect(launch.details).toMatchObject({ runtime: 'container', isolation: 'gvisor', image: 'agentbox/base:1', imageId: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
    expect(launch.details!.controls).toEqual(expect.arrayContaining([expect.stringMatching(/^gVisor \(runsc\) container/), 'seccomp']));
    expect(JSON.stringify(launch.details!.controls)).not.toMatch(/landlock/i);
    const q = await cli(['quarantine', s!.id, '--json'], state);
    expect(q.exitCode, String(q.stderr)).toBe(0);
    const [rep] = JSON.parse(String(q.stdout)) as { evidence: string; notTaken: { part: string }[] }[];
    const procs = JSON.parse(readFileSync(join(rep!.evidence, 'processes.json'), 'utf8')) as { source: string; processes: { command: string[] }[] };
    expect(procs.source).toMatch(/runsc ps/);
    expect(procs.processes.some((p) => p.command.join(' ').includes('python3'))).toBe(true);
    expect(rep!.notTaken.map((n) => n.part)).toContain('connections.json');
    await cli(['kill', s!.id], state);
    await launcher;
  }, 120_000);

  it('runc: mountinfo names no state path and the cgroup no container id', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const a = agent('nosy', 'print(open("/proc/self/mountinfo").read()); print("CGROUP", open("/proc/self/cgroup").read())\n');
    const r = await execa(process.execPath, [BIN, 'launch', a.manifest, '--home', base, '--runtime', 'container'], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state } });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const out = String(r.stdout);
    expect(out).not.toContain(state);
    const [s] = JSON.parse(String((await cli(['ps', '--all', '--json'], state)).stdout)) as { container: string }[];
    const cgroup = out.slice(out.indexOf('CGROUP'));
    expect(cgroup).not.toContain(s!.container);
    expect(cgroup).not.toContain(s!.container.slice(0, 12));
  }, 120_000);
});

describe('cgroups of ended sessions', () => {
  it('10 short sessions leave no cgroup folder behind', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const m = join(base, 'short.yaml');
    writeFileSync(m, 'apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: short }\nagent: { command: [/bin/sh, -c, "sleep 0.1 & true"] }\ncapabilities: [exec:/bin, exec:/usr/bin]\nlimits: { pids: 32, memory: 128MiB }\n');
    for (let i = 0; i < 10; i++) expect((await cli(['launch', m, '--home', base], state)).exitCode).toBe(0);
    const ids = (JSON.parse(String((await cli(['ps', '--all', '--json'], state)).stdout)) as { id: string }[]).map((s) => s.id);
    expect(ids).toHaveLength(10);
    for (const ctl of ['pids', 'memory', 'freezer']) {
      const dir = `/sys/fs/cgroup/${ctl}/agentbox`;
      const left = existsSync(dir) ? readdirSync(dir).filter((d) => ids.includes(d)) : [];
      expect(left, ctl).toEqual([]);
    }
  }, 120_000);
});
