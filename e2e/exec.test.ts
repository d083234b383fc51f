/**
 * `agentbox exec SESSION -- CMD` on running sessions, driven through the CLI.
 *
 * Attack: exec as a way around the box: a command joined to a session that runs with
 * more than the agent has (root, capabilities, no seccomp, no Landlock, outside the
 * session's cgroup), or an exec nobody can trace. Defence: the command enters the box's
 * namespaces and cgroups, runs as the agent's uid with no capabilities and
 * no_new_privs, under the box's seccomp filter and Landlock rules (process runtime), or
 * inside the same container (container runtime); every exec and its exit code are
 * audited with who ran it. Frozen and micro-VM sessions are refused.
 */
import { execa, type ResultPromise } from 'execa';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-exec-'));
chmodSync(base, 0o755);
const state = join(base, 'state');
const docs = join(base, 'docs');
mkdirSync(docs);
writeFileSync(join(docs, 'a.txt'), 'granted\n');
writeFileSync(join(docs, 'run.sh'), '#!/bin/sh\necho ran\n', { mode: 0o755 });
const env = { NO_COLOR: '1', AGENTBOX_STATE_DIR: state };
const cli = (args: string[]) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env });
const launchers: ResultPromise[] = [];

function manifest(runtime: string): string {
  const f = join(base, `exec-${runtime}.yaml`);
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: exec-${runtime} }\nextends: [viewer]\nagent: { command: [/bin/sleep, '120'] }\ncapabilities:\n  - fs:read:${docs}\n  - exec:/usr/bin\n  - exec:/bin\nruntime: { kind: ${runtime} }\nttl: 5m\n`);
  return f;
}

async function running(runtime: string): Promise<string> {
  const l = execa(process.execPath, [BIN, 'launch', manifest(runtime)], { reject: false, stdin: 'ignore', env });
  launchers.push(l);
  for (let i = 0; i < 400; i++) {
    const r = await cli(['ps', '-q', '--filter', `agent=exec-${runtime}`, '--filter', 'state=running']);
    const id = String(r.stdout).trim().split('\n').filter(Boolean).pop();
    if (id) {
      // The box's agent is up once exec can see it.
      const probe = await cli(['exec', id, '--', '/bin/true']);
      if (probe.exitCode === 0) return id;
    }
    await new Promise((x) => setTimeout(x, 100));
  }
  throw new Error(`no running ${runtime} session`);
}

const audit = () => readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { session: string; action: string; resource: string; details: Record<string, unknown> });

afterAll(async () => {
  for (const l of launchers) l.kill('SIGTERM');
  await Promise.allSettled(launchers);
});

describe('exec on the process runtime', () => {
  it('runs as the agent: its uid, no capabilities, no_new_privs, seccomp, Landlock, the session cgroup', async () => {
    const id = await running('process');
    const r = await cli(['exec', id, '--', '/bin/sh', '-c', [
      'id -u',
      'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status',
      'cat /proc/self/cgroup | grep -c ":/$"',
      `cat ${docs}/a.txt`,
      // Landlock: the grant may be read, not run (no exec grant covers it).
      `${docs}/run.sh || echo exec-refused`,
      // seccomp: no new namespaces.
      'unshare -U true 2>/dev/null || echo unshare-refused',
      `touch ${docs}/new 2>/dev/null || echo write-refused`,
      'exit 3',
    ].join('; ')]);
    expect(r.exitCode, r.stderr).toBe(3);
    const out = String(r.stdout);
    expect(out).toMatch(/^64000$/m);
    expect(out).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(out).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(out).toMatch(/^Seccomp:\s+2$/m);
    expect(out).toMatch(/^granted$/m);
    expect(out).toMatch(/^exec-refused$/m);
    expect(out).toMatch(/^unshare-refused$/m);
    expect(out).toMatch(/^write-refused$/m);
    // Every cgroup line is the box's own cgroup namespace root: the session's cgroup.
    expect(Number(/^Seccomp:.*\n(\d+)$/m.exec(out)?.[1] ?? 0)).toBeGreaterThan(0);
    const mine = audit().filter((e) => e.session === id && e.action.startsWith('session.exec'));
    expect(mine.some((e) => e.action === 'session.exec' && e.details.by === 'root' && e.resource.startsWith('/bin/sh -c id -u'))).toBe(true);
    expect(mine.some((e) => e.action === 'session.exec.exit' && e.details.exitCode === 3)).toBe(true);
  }, 120_000);

  it('a quarantined (frozen) session and an ended one are refused with exit 1', async () => {
    const id = await running('process');
    expect((await cli(['quarantine', id])).exitCode).toBe(0);
    const frozen = await cli(['exec', id, '--', '/bin/true']);
    expect(frozen.exitCode).toBe(1);
    expect(frozen.stderr).toMatch(/is quarantined \(frozen/);
    await cli(['kill', id]);
    expect((await cli(['exec', id, '--', '/bin/true'])).exitCode).toBe(1);
  }, 120_000);
});

describe('exec on the container runtime', () => {
  it('runs inside the same container as the agent uid, audited', async () => {
    const id = await running('container');
    const r = await cli(['exec', id, '--', '/bin/sh', '-c', `id -u; grep -E "^(CapEff|NoNewPrivs):" /proc/self/status; cat ${docs}/a.txt; exit 5`]);
    expect(r.exitCode, r.stderr).toBe(5);
    expect(String(r.stdout)).toMatch(/^64000$/m);
    expect(String(r.stdout)).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(String(r.stdout)).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(String(r.stdout)).toMatch(/^granted$/m);
    expect(audit().some((e) => e.session === id && e.action === 'session.exec.exit' && e.details.exitCode === 5)).toBe(true);
    await cli(['kill', id]);
  }, 180_000);
});

describe('exec on the micro-VM runtime', () => {
  it('is refused with exit 4 and says why', async () => {
    const l = execa(process.execPath, [BIN, 'launch', manifest('microvm')], { reject: false, stdin: 'ignore', env });
    launchers.push(l);
    let id: string | undefined;
    for (let i = 0; i < 600 && !id; i++) {
      id = String((await cli(['ps', '-q', '--filter', 'agent=exec-microvm'])).stdout).trim().split('\n').filter(Boolean).pop();
      if (!id) await new Promise((x) => setTimeout(x, 100));
    }
    expect(id).toBeDefined();
    const r = await cli(['exec', id!, '--', '/bin/true']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/micro-VM session is not supported: its guest has no service that starts processes after boot/);
    await cli(['kill', id!]);
  }, 180_000);
});
