/**
 * Incident response on the real process runtime. An agent streams requests to an
 * allowlisted loopback sink; `agentbox quarantine` must cut its egress and freeze it
 * (target 250 ms, and zero requests accepted after the command returns), leave
 * evidence whose hashes match, revoke its token so a relaunch with it is refused
 * (exit 3), show it quarantined in ps, thaw it on release with egress still cut, and
 * let kill end it. A token revoked while a session runs normally ends that session.
 */
import { execa } from 'execa';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-quarantine-'));
chmodSync(base, 0o755);
let sink: Server;
let port = 0;
let hits = 0;

const run = (args: string[], env: Record<string, string>) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', ...env } });

function manifest(name: string): string {
  const script = join(base, `${name}.py`);
  writeFileSync(script, `import urllib.request as u, time\nwhile True:\n  try:\n    u.urlopen("http://127.0.0.1:${port}/")\n    print("sent", flush=True)\n  except Exception as e:\n    print("err", e, flush=True)\n  time.sleep(0.005)\n`, { mode: 0o644 });
  const work = join(base, `${name}-work`);
  mkdirSync(work);
  writeFileSync(join(work, 'note'), 'before');
  chownSync(work, 64000, 64000);
  const f = join(base, `${name}.yaml`);
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nextends: [organizer]\nagent: { command: [/usr/bin/python3, ${script}] }\ncapabilities:\n  - fs:read:${script}\n  - fs:write:${work}\n  - net:connect:127.0.0.1:${port}\n  - exec:/usr/bin\n`);
  return f;
}

async function running(env: Record<string, string>): Promise<{ id: string; state: string }[]> {
  for (let i = 0; i < 100; i++) {
    const list = JSON.parse(String((await run(['ps', '--json'], env)).stdout));
    if (list.length > 0) return list;
    await new Promise((r) => setTimeout(r, 50));
  }
  return [];
}

beforeAll(async () => {
  sink = createServer((_q, s) => {
    hits++;
    s.end('ok');
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  port = (sink.address() as AddressInfo).port;
});
afterAll(() => sink?.close());

describe('quarantine on the process runtime', () => {
  it('cuts egress and freezes within 250 ms, with zero requests after it returns; evidence, revocation, release and kill', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const m = manifest('streamer');
    const agent = run(['launch', m, '--home', base], env);
    const [s] = await running(env);
    // Wait until it is streaming.
    for (let i = 0; i < 100 && hits < 20; i++) await new Promise((r) => setTimeout(r, 50));
    expect(hits).toBeGreaterThanOrEqual(20);

    const q = await run(['quarantine', s!.id, '--reason', 'test alert', '--json'], env);
    const atReturn = hits;
    expect(q.exitCode, String(q.stderr)).toBe(0);
    const report = JSON.parse(String(q.stdout))[0];
    expect(report.isolatedMs).toBeLessThan(250);
    await new Promise((r) => setTimeout(r, 1000));
    expect(hits).toBe(atReturn);

    // Evidence: every file listed with a matching sha256.
    for (const f of report.files as { name: string; sha256: string }[]) {
      expect(createHash('sha256').update(readFileSync(join(report.evidence, f.name))).digest('hex'), f.name).toBe(f.sha256);
    }
    expect(readdirSync(report.evidence).sort()).toEqual(['MANIFEST.sha256', 'audit.jsonl', 'connections.json', 'connections.txt', 'egress.json', 'manifest.json', 'processes.json', 'processes.txt', 'session.json', 'severed.json', 'writable-layer-0.tar']);
    const procs = (JSON.parse(readFileSync(join(report.evidence, 'processes.json'), 'utf8')) as { processes: { state: string; command: string[] }[] }).processes;
    expect(procs.some((p) => p.command.includes(join(base, 'streamer.py')))).toBe(true);
    // The connections, decoded: the in-box forwarder listening (with the pid holding it)
    // and the streamer's connections to it, cut by the quarantine.
    const conns = (JSON.parse(readFileSync(join(report.evidence, 'connections.json'), 'utf8')) as { connections: { proto: string; local: string; remote: string; state: string; pids: number[] }[] }).connections;
    expect(conns.some((c) => c.proto === 'tcp' && c.local === '127.0.0.1:3128' && c.state === 'LISTEN' && c.pids.length > 0)).toBe(true);
    expect(conns.some((c) => c.proto === 'tcp' && c.remote === '127.0.0.1:3128')).toBe(true);
    // The kernel's own word: the session's freezer cgroup is FROZEN.
    expect(readFileSync(`/sys/fs/cgroup/freezer/agentbox/${s!.id}/freezer.state`, 'utf8').trim()).toBe('FROZEN');

    // ps shows it; the token is revoked and a relaunch with it is refused.
    expect((JSON.parse(String((await run(['ps', '--json'], env)).stdout)) as { state: string }[])[0]!.state).toBe('quarantined');
    const tokenFile = join(env.AGENTBOX_STATE_DIR, 'sessions', `${s!.id}.token`);
    const relaunch = await run(['launch', m, '--home', base, '--token', tokenFile], env);
    expect(relaunch.exitCode).toBe(3);
    expect(String(relaunch.stderr)).toMatch(/--token refused: token .* was revoked/);

    // Release thaws it; egress stays cut.
    expect((await run(['release', s!.id], env)).exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect(hits).toBe(atReturn);

    // Kill ends it; the audit log verifies and tells the story.
    expect((await run(['kill', s!.id], env)).exitCode).toBe(0);
    const end = await agent;
    expect(end.exitCode).toBe(143);
    expect(String(end.stdout)).toMatch(/err /);
    expect((await run(['audit', 'verify'], env)).exitCode).toBe(0);
    const actions = readFileSync(join(env.AGENTBOX_STATE_DIR, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).action as string);
    for (const a of ['token.minted', 'launch', 'quarantine.requested', 'quarantine.egress-cut', 'quarantine.frozen', 'quarantine.evidence', 'token.revoked', 'quarantine.released', 'exit', 'revert']) expect(actions).toContain(a);
  }, 60_000);

  it('revoking the token of a running session ends it', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const agent = run(['launch', manifest('revokee'), '--home', base], env);
    const [s] = await running(env);
    const token = readFileSync(join(env.AGENTBOX_STATE_DIR, 'sessions', `${s!.id}.token`), 'utf8').trim();
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
    const t0 = Date.now();
    expect((await run(['token', 'revoke', jti], env)).exitCode).toBe(0);
    const end = await agent;
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(String(end.stderr)).toMatch(/token of .* was revoked; ending the session/);
    expect((await run(['token', 'verify', token], env)).exitCode).toBe(3);
  }, 30_000);

  it('a token minted ahead narrows the launch to its scopes', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) };
    const m = manifest('narrow');
    const minted = await run(['token', 'mint', m, '--home', base, '--ttl', '5m'], env);
    expect(minted.exitCode).toBe(0);
    const tokenFile = join(base, 'narrow.token');
    writeFileSync(tokenFile, String(minted.stdout));
    expect((await run(['token', 'verify', `@${tokenFile}`], env)).exitCode).toBe(0);
    const other = join(base, 'other.yaml');
    writeFileSync(other, readFileSync(m, 'utf8').replace('name: narrow', 'name: other'));
    const wrong = await run(['launch', other, '--home', base, '--token', tokenFile, '--dry-run'], env);
    expect(wrong.exitCode).toBe(3);
    expect(String(wrong.stderr)).toMatch(/minted for agent narrow, not other/);
  }, 30_000);
});
