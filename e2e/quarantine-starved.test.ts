/**
 * Attack: starving the kill switch. The attack review stopped the launcher (SIGSTOP) and
 * ran `agentbox quarantine`: it failed after 2 s and the agent was not frozen, because
 * quarantine was a signal to the launcher plus polling its record. An agent can starve
 * its launcher the same way by fork-bombing or by flooding the proxy with connections,
 * and a launcher can be killed outright.
 * Defence: quarantine acts by itself through the kernel (the session's freezer cgroup,
 * the egress cut marker the proxy checks before every dial, and the launcher's egress
 * connections shut down from outside with pidfd_getfd), then asks the launcher on its
 * control socket and, when it does not answer within a second, revokes the token and
 * takes the evidence itself. A launcher that dies takes its box with it.
 *
 * Each case, on the process runtime: the agent streams requests to a loopback sink; the
 * box is frozen (the kernel's word, freezer.state) within 250 ms of the command acting,
 * and the sink receives nothing after the command returns, not even once a stopped
 * launcher runs again with the requests it had queued.
 */
import { execa } from 'execa';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-starve-'));
chmodSync(base, 0o755);
let sink: Server;
let port = 0;
let hits = 0;

const run = (args: string[], env: Record<string, string>) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', ...env } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The streamer, plus what each case adds in a second thread. */
const STREAM = (extra: string) => `import urllib.request as u, time, threading, os, socket
def stress():
${extra}
threading.Thread(target=stress, daemon=True).start()
while True:
  try:
    u.urlopen("http://127.0.0.1:PORT/", timeout=2)
    print("sent", flush=True)
  except Exception as e:
    print("err", e, flush=True)
  time.sleep(0.005)
`;

const STRESS = {
  none: '  pass',
  // A fork bomb held by the pids limit: every child forks again, forever.
  forkbomb: '  time.sleep(1.5)\n  while True:\n    try:\n      os.fork()\n    except OSError:\n      time.sleep(0.001)',
  // Hundreds of connections to the proxy, each with a CONNECT line never finished, renewed as they close.
  flood: '  time.sleep(1.5)\n  socks = []\n  while True:\n    try:\n      s = socket.create_connection(("127.0.0.1", 3128), timeout=1)\n      s.send(b"CONNECT 127.0.0.1:PORT HTTP/1.1\\r\\n")\n      socks.append(s)\n      if len(socks) > 400:\n        socks.pop(0).close()\n    except Exception:\n      time.sleep(0.001)',
} as const;

function manifest(name: string, stress: keyof typeof STRESS): string {
  const script = join(base, `${name}.py`);
  writeFileSync(script, STREAM(STRESS[stress]).replaceAll('PORT', String(port)), { mode: 0o644 });
  const f = join(base, `${name}.yaml`);
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nextends: [organizer]\nagent: { command: [/usr/bin/python3, ${script}] }\ncapabilities:\n  - fs:read:${script}\n  - net:connect:127.0.0.1:${port}\n  - exec:/usr/bin\nlimits: { pids: 48 }\n`);
  return f;
}

interface Rec {
  id: string;
  state: string;
  launcher: { pid: number };
  jti: string;
}

async function started(env: Record<string, string>): Promise<Rec> {
  for (let i = 0; i < 200; i++) {
    const list = JSON.parse(String((await run(['ps', '--json'], env)).stdout)) as Rec[];
    if (list[0]) return list[0];
    await sleep(50);
  }
  throw new Error('the session did not start');
}

const freezer = (id: string) => readFileSync(`/sys/fs/cgroup/freezer/agentbox/${id}/freezer.state`, 'utf8').trim();

beforeAll(async () => {
  sink = createServer((_q, s) => {
    hits++;
    s.end('ok');
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  port = (sink.address() as AddressInfo).port;
});
afterAll(() => sink?.close());

describe('quarantine that does not depend on the launcher (process runtime)', () => {
  it.each([
    { name: 'stopped', stress: 'none' as const, before: 'SIGSTOP' as const },
    { name: 'forkbomb', stress: 'forkbomb' as const, before: undefined },
    { name: 'flood', stress: 'flood' as const, before: undefined },
  ])('launcher $name: frozen within 250 ms, nothing reaches the sink after the command returns', async ({ name, stress, before }) => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const agent = run(['launch', manifest(`starve-${name}`, stress), '--home', base], env);
    const s = await started(env);
    const h0 = hits;
    for (let i = 0; i < 200 && hits < h0 + 20; i++) await sleep(25);
    expect(hits, 'the agent streams').toBeGreaterThanOrEqual(h0 + 20);
    if (stress !== 'none') await sleep(2000); // the stress thread started 1.5 s in and is at full strength
    // The stress is real: the fork bomb is at the pids limit; the flood holds hundreds of proxy connections.
    if (stress === 'forkbomb') expect(Number(/^max (\d+)/m.exec(readFileSync(`/sys/fs/cgroup/pids/agentbox/${s.id}/pids.events`, 'utf8'))?.[1])).toBeGreaterThan(100);
    if (before) process.kill(s.launcher.pid, before);

    const t0 = performance.now();
    const q = await run(['quarantine', s.id, '--reason', `starved launcher: ${name}`, '--json'], env);
    const atReturn = hits;
    const wall = performance.now() - t0;
    expect(q.exitCode, String(q.stderr)).toBe(0);
    const [report] = JSON.parse(String(q.stdout));
    expect(report.quarantined).toBe(true);
    expect(report.isolatedMs).toBeLessThan(250);
    expect(freezer(s.id)).toBe('FROZEN');
    if (before === 'SIGSTOP') expect(report.launcherAnswered).toBe(false);
    console.log(`quarantine with launcher ${name}: frozen ${report.isolatedMs} ms after it acted; command ${wall.toFixed(0)} ms in all; ${report.severed.length} connections cut from outside (${JSON.stringify(report.severed.map((x: { family: string }) => x.family))}); launcher answered: ${report.launcherAnswered}`);

    if (stress === 'flood') {
      const conns = (JSON.parse(readFileSync(join(report.evidence, 'connections.json'), 'utf8')) as { connections: { remote: string }[] }).connections;
      expect(conns.filter((c) => c.remote === '127.0.0.1:3128').length).toBeGreaterThan(100);
    }
    await sleep(1000);
    expect(hits).toBe(atReturn);
    // The token is revoked whoever revoked it, and the evidence names the operator.
    expect((await run(['token', 'verify', `@${join(env.AGENTBOX_STATE_DIR, 'sessions', `${s.id}.token`)}`], env)).exitCode).toBe(3);
    expect(JSON.parse(readFileSync(join(report.evidence, 'manifest.json'), 'utf8')).quarantinedBy).toMatchObject({ uid: 0 });
    expect(readFileSync(join(report.evidence, 'processes.txt'), 'utf8')).toContain(`starve-${name}.py`);
    expect(readFileSync(join(report.evidence, 'connections.txt'), 'utf8')).toMatch(/^== decoded/);

    if (before === 'SIGSTOP') {
      // The launcher runs again with whatever it had queued: still nothing reaches the sink.
      process.kill(s.launcher.pid, 'SIGCONT');
      await sleep(1000);
      expect(hits).toBe(atReturn);
      expect(freezer(s.id)).toBe('FROZEN');
    }
    expect((await run(['ps', '--json'], env)).stdout).toMatch(/"state": "quarantined"/);
    expect((await run(['kill', s.id], env)).exitCode).toBe(0);
    expect((await agent).exitCode).toBe(143);
    expect(hits).toBe(atReturn);
    const actions = readFileSync(join(env.AGENTBOX_STATE_DIR, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).action as string);
    for (const a of ['quarantine.requested', 'quarantine.egress-cut', 'quarantine.frozen', 'token.revoked', 'quarantine.evidence']) expect(actions).toContain(a);
    if (before === 'SIGSTOP') expect(actions).toContain('quarantine.launcher-silent');
    expect((await run(['audit', 'verify'], env)).exitCode).toBe(0);
  }, 120_000);

  it('launcher killed (SIGKILL): the box is gone within a second, quarantine says so and keeps the evidence, nothing reaches the sink', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const agent = run(['launch', manifest('starve-killed', 'none'), '--home', base], env);
    const s = await started(env);
    const h0 = hits;
    for (let i = 0; i < 200 && hits < h0 + 20; i++) await sleep(25);
    process.kill(s.launcher.pid, 'SIGKILL');
    const q = await run(['quarantine', s.id, '--json'], env);
    const atReturn = hits;
    await agent;
    expect(q.exitCode, String(q.stderr)).toBe(0);
    const [report] = JSON.parse(String(q.stdout));
    expect(report).toMatchObject({ quarantined: true, launcherAnswered: false });
    expect(report.frozenBy).toMatch(/ended with its launcher/);
    expect(existsSync(join(report.evidence, 'MANIFEST.sha256'))).toBe(true);
    await sleep(1000);
    expect(hits).toBe(atReturn);
    const [now] = JSON.parse(String((await run(['ps', '--json'], env)).stdout)) as Rec[];
    expect(now!.state).toBe('orphaned');
    expect((await run(['kill', s.id], env)).exitCode).toBe(0);
  }, 60_000);
});
