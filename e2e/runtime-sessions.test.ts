/**
 * Sessions on the container runtime (runc and gVisor) and the micro-VM runtime, through the CLI: quarantine
 * (egress cut, `docker pause`, evidence, token revoked; zero requests after it returns,
 * the Engine's own word that the container is paused), release (thawed, egress still
 * cut), kill, ttl, and revert of the writable grant. The Engine is the one the tests'
 * setup started (DOCKER_HOST).
 */
import { execa } from 'execa';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-csess-'));
chmodSync(base, 0o755);
let sink: Server;
let port = 0;
let hits = 0;

const run = (args: string[], env: Record<string, string>) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', ...env } });

function manifest(name: string, extra = ''): string {
  const script = join(base, `${name}.py`);
  writeFileSync(script, `import urllib.request as u, time\nopen("${join(base, `${name}-work`)}/note", "w").write("changed")\nwhile True:\n  try:\n    u.urlopen("http://127.0.0.1:${port}/")\n    print("sent", flush=True)\n  except Exception as e:\n    print("err", e, flush=True)\n  time.sleep(0.005)\n`, { mode: 0o644 });
  const work = join(base, `${name}-work`);
  mkdirSync(work);
  writeFileSync(join(work, 'note'), 'before');
  chownSync(work, 64000, 64000);
  chownSync(join(work, 'note'), 64000, 64000);
  const f = join(base, `${name}.yaml`);
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nextends: [organizer]\nagent: { command: [/usr/bin/python3, ${script}] }\ncapabilities:\n  - fs:read:${script}\n  - fs:write:${work}\n  - net:connect:127.0.0.1:${port}\n${extra}`);
  return f;
}

async function running(env: Record<string, string>): Promise<{ id: string; state: string; runtime: string }[]> {
  for (let i = 0; i < 200; i++) {
    const list = JSON.parse(String((await run(['ps', '--json'], env)).stdout));
    if (list.length > 0) return list;
    await new Promise((r) => setTimeout(r, 50));
  }
  return [];
}

const docker = (args: string[]) => execa('docker', args, { reject: false });

beforeAll(async () => {
  sink = createServer((_q, s) => {
    hits++;
    s.end('ok');
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  port = (sink.address() as AddressInfo).port;
});
afterAll(() => sink?.close());

describe.each([
  { name: 'runc', args: ['--runtime', 'container'], runtime: 'container' },
  { name: 'gVisor', args: ['--runtime', 'container', '--isolation', 'gvisor'], runtime: 'container' },
  { name: 'microvm', args: ['--runtime', 'microvm'], runtime: 'microvm' },
])('$runtime runtime ($name)', (rt) => {
  it('quarantine pauses it with zero requests after the command returns; release keeps egress cut; kill ends it and reverts', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const name = `streamer-${rt.name.toLowerCase()}`;
    const m = manifest(name);
    const agent = run(['launch', m, ...rt.args], env);
    const [s] = await running(env);
    expect(s!.runtime).toBe(rt.runtime);
    const start = hits;
    for (let i = 0; i < 600 && hits < start + 20; i++) await new Promise((r) => setTimeout(r, 50));
    expect(hits).toBeGreaterThanOrEqual(start + 20);

    const q = await run(['quarantine', s!.id, '--json'], env);
    const atReturn = hits;
    expect(q.exitCode, String(q.stderr)).toBe(0);
    const report = JSON.parse(String(q.stdout))[0];
    if (rt.runtime === 'container') {
      // The Engine's own word: the container is paused (cgroup freezer).
      const inspect = await docker(['inspect', '--format', '{{.State.Paused}}', s!.id]);
      expect(String(inspect.stdout).trim()).toBe('true');
    }
    await new Promise((r) => setTimeout(r, 1000));
    expect(hits).toBe(atReturn);
    expect(existsSync(join(report.evidence, 'MANIFEST.sha256'))).toBe(true);
    if (rt.runtime === 'container') expect(readFileSync(join(report.evidence, 'processes.json'), 'utf8')).not.toBe('[]\n');

    expect((await run(['release', s!.id], env)).exitCode).toBe(0);
    if (rt.runtime === 'container') expect(String((await docker(['inspect', '--format', '{{.State.Paused}}', s!.id])).stdout).trim()).toBe('false');
    await new Promise((r) => setTimeout(r, 500));
    expect(hits).toBe(atReturn);

    expect((await run(['kill', s!.id], env)).exitCode).toBe(0);
    const end = await agent;
    expect(end.exitCode).toBe(143);
    expect(String(end.stdout)).toMatch(/err /);
    // The container (and its writable layer) or the VM is gone; the grant is as it was.
    if (rt.runtime === 'container') expect((await docker(['inspect', s!.id])).exitCode).not.toBe(0);
    expect(readFileSync(join(base, `${name}-work`, 'note'), 'utf8')).toBe('before');
    expect(String(end.stderr)).toMatch(/1 change reverted/);
    const actions = readFileSync(join(env.AGENTBOX_STATE_DIR, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { action: string; reason: string });
    expect(actions.find((a) => a.action === 'quarantine.frozen')?.reason).toMatch(rt.runtime === 'container' ? /^docker pause/ : /^QMP stop/);
    for (const a of ['launch', 'quarantine.egress-cut', 'quarantine.evidence', 'token.revoked', 'quarantine.released', 'exit', 'revert']) expect(actions.map((x) => x.action)).toContain(a);
    expect((await run(['audit', 'verify'], env)).exitCode).toBe(0);
  }, 90_000);

  // Attack: the launcher stopped (SIGSTOP) so that a signal-and-poll quarantine never happens.
  // Defence: quarantine pauses the container (the Engine) or stops the VM (QMP) and cuts the
  // launcher's egress connections itself; the launcher's silence is recorded, not waited on.
  it('quarantine with the launcher stopped: paused or halted, nothing reaches the sink, even once the launcher runs again', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const name = `stopped-${rt.name.toLowerCase()}`;
    const agent = run(['launch', manifest(name), ...rt.args], env);
    const [s] = (await running(env)) as unknown as { id: string; launcher: { pid: number } }[];
    const start = hits;
    for (let i = 0; i < 600 && hits < start + 20; i++) await new Promise((r) => setTimeout(r, 50));
    expect(hits).toBeGreaterThanOrEqual(start + 20);
    process.kill(s!.launcher.pid, 'SIGSTOP');
    const q = await run(['quarantine', s!.id, '--json'], env);
    const atReturn = hits;
    expect(q.exitCode, String(q.stderr)).toBe(0);
    const [report] = JSON.parse(String(q.stdout));
    expect(report).toMatchObject({ quarantined: true, launcherAnswered: false });
    expect(report.isolatedMs).toBeLessThan(250);
    expect(report.frozenBy).toMatch(rt.runtime === 'container' ? /^docker pause/ : /^QMP stop/);
    if (rt.runtime === 'container') expect(String((await docker(['inspect', '--format', '{{.State.Paused}}', s!.id])).stdout).trim()).toBe('true');
    console.log(`${rt.name}: quarantine with the launcher stopped: frozen ${report.isolatedMs} ms after it acted; ${report.severed.length} connections cut from outside`);
    await new Promise((r) => setTimeout(r, 1000));
    expect(hits).toBe(atReturn);
    process.kill(s!.launcher.pid, 'SIGCONT');
    await new Promise((r) => setTimeout(r, 1000));
    expect(hits).toBe(atReturn);
    expect((await run(['kill', s!.id], env)).exitCode).toBe(0);
    expect((await agent).exitCode).toBe(143);
    expect(hits).toBe(atReturn);
  }, 120_000);

  it('ttl ends the session on time', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const m = manifest(`ttl-${rt.name.toLowerCase()}`, 'ttl: 3s\n');
    const t0 = Date.now();
    const end = await run(['launch', m, ...rt.args], env);
    const took = (Date.now() - t0) / 1000;
    expect(end.exitCode).toBe(143);
    expect(took).toBeGreaterThanOrEqual(3);
    expect(took).toBeLessThan(rt.runtime === 'microvm' ? 10 : 8);
    expect(String(end.stderr)).toMatch(/reached its ttl of 3s/);
  }, 60_000);
});
