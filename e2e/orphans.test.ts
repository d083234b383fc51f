/**
 * Attack: killing the launcher (kill -9), the one process that supervised the session.
 * The attack review found: on the process runtime the box died but `ps` still said
 * running, and after pid reuse `agentbox kill` killed an unrelated process; on the
 * micro-VM, QEMU kept running with no ttl, the overlays stayed mounted and `kill` failed
 * with ESRCH; on the container runtime the container ran past its ttl, `kill` left its
 * record and both host mounts, and removing the stale session directory deleted a real
 * file of the grant through a read-write bind.
 * Defence: every process is recorded with its start time (a reused pid is never the
 * session's); the box dies with its launcher (bubblewrap and QEMU under a parent-death
 * signal) and a reaper process ends a container whose launcher is gone; the next command
 * reconciles what is left (box ended, mounts undone, layers kept), `ps` says `orphaned`,
 * and `kill` finishes it. No bind of a granted folder is ever writable.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-orphan-'));
chmodSync(base, 0o755);

interface Rec {
  id: string;
  state: string;
  pid: number;
  launcher: { pid: number; start: string };
  container: string | null;
  run: string;
  dir: string;
}

const cli = (args: string[], state: string) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state, NO_COLOR: '1' } });
const ps = async (state: string): Promise<Rec[]> => JSON.parse(String((await cli(['ps', '--all', '--json'], state)).stdout)) as Rec[];
const mountsUnder = (dir: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4]?.startsWith(dir));
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

async function launchAndKill(name: string, runtimeArgs: string[]): Promise<{ state: string; work: string; rec: Rec }> {
  const state = mkdtempSync(join(base, 'state-'));
  const work = join(base, `${name}-work`);
  mkdirSync(work);
  writeFileSync(join(work, 'precious'), 'user data\n');
  chownSync(work, 64000, 64000);
  const m = join(base, `${name}.yaml`);
  writeFileSync(m, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nagent: { command: [/bin/sh, -c, "echo agent > ${work}/made; sleep 300"] }\ncapabilities: [exec:/usr/bin, exec:/bin, "fs:write:${work}"]\nttl: 1h\n`);
  const launcher = execa(process.execPath, [BIN, 'launch', m, '--home', base, ...runtimeArgs], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: state, NO_COLOR: '1' } });
  let rec: Rec | undefined;
  for (let i = 0; i < 300 && !rec; i++) {
    await new Promise((r) => setTimeout(r, 100));
    rec = (await ps(state)).find((s) => s.state === 'running');
  }
  expect(rec, 'the session started').toBeDefined();
  // The agent has written its file (inside its layer) before the launcher dies.
  for (let i = 0; i < 100 && !String((await execa('sh', ['-c', `ls ${rec!.run}/mnt/0/merged 2>/dev/null`], { reject: false })).stdout).includes('made'); i++) await new Promise((r) => setTimeout(r, 100));
  process.kill(rec!.launcher.pid, 'SIGKILL');
  await launcher;
  return { state, work, rec: rec! };
}

describe('the launcher killed with SIGKILL', () => {
  it('process runtime: the box goes with it, ps says orphaned, kill finishes it and reverts', async () => {
    const { state, work, rec } = await launchAndKill('orphanproc', []);
    // bubblewrap dies with its parent: within a second nothing of the box runs.
    await new Promise((r) => setTimeout(r, 1000));
    expect(alive(rec.pid)).toBe(false);
    const [now] = await ps(state);
    expect(now!.state).toBe('orphaned');
    // The reconciling ps ended what was left: no mounts of the session remain but its kept layers.
    expect(mountsUnder(rec.run)).toEqual([]);
    expect(readdirSync('/sys/fs/cgroup/pids/agentbox').includes(rec.id)).toBe(false);
    const k = await cli(['kill', rec.id], state);
    expect(k.exitCode, String(k.stderr)).toBe(0);
    expect((await ps(state))[0]).toMatchObject({ state: 'exited' });
    expect(readdirSync(work)).toEqual(['precious']);
    expect(mountsUnder(rec.dir)).toEqual([]);
    expect(readFileSync(join(state, 'audit.jsonl'), 'utf8')).toMatch(/"action":"session\.orphaned"/);
    expect((await cli(['kill', rec.id], state)).exitCode).toBe(1);
  }, 60_000);

  it('a recorded pid now used by another process is not the session: ps does not call it running, kill does not signal it', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    mkdirSync(join(state, 'sessions'), { recursive: true });
    // An unrelated process that happens to hold the pid the record names.
    const bystander = execa('sleep', ['60'], { reject: false });
    const pid = bystander.pid!;
    const rec = { id: 'reuse-0000aaaa', agent: 'reuse', runtime: 'process', isolation: null, state: 'running', pid, box: { pid, start: '1' }, launcherPid: pid, launcher: { pid, start: '1' }, reaper: null, container: null, startedAt: new Date().toISOString(), expiresAt: null, exitCode: null, endedAt: null, endReason: null, dir: join(state, 'sessions', 'reuse-0000aaaa'), run: join(state, 'run', 'reuse-0000aaaa'), jti: null, cgroups: [], layers: null, snapshot: 'revert', uid: 64000, gid: 64000, egressCut: false, quarantinedAt: null };
    writeFileSync(join(state, 'sessions', `${rec.id}.json`), JSON.stringify(rec));
    expect((await ps(state))[0]!.state).toBe('orphaned');
    expect((await cli(['kill', rec.id], state)).exitCode).toBe(0);
    expect((await cli(['quarantine', rec.id], state)).exitCode).not.toBe(0);
    expect(alive(pid)).toBe(true);
    bystander.kill('SIGKILL');
    await bystander;
  }, 30_000);

  it('container runtime: the reaper removes the container and every mount, and the state dir holds nothing that can delete user data', async () => {
    const { state, work, rec } = await launchAndKill('orphanctr', ['--runtime', 'container']);
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      await new Promise((r) => setTimeout(r, 100));
      gone = (await execa('docker', ['inspect', rec.container!], { reject: false })).exitCode !== 0;
    }
    expect(gone, 'the container was removed').toBe(true);
    // No bind of the grant is left mounted anywhere; deleting the whole state dir spares the grant.
    for (let i = 0; i < 30 && mountsUnder(rec.run).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(mountsUnder(rec.run)).toEqual([]);
    expect(mountsUnder(work)).toEqual([]);
    expect((await ps(state))[0]!.state).toBe('orphaned');
    expect(readFileSync(join(state, 'audit.jsonl'), 'utf8')).toMatch(/"action":"session\.orphaned".*the session reaper/);
    const k = await cli(['kill', rec.id], state);
    expect(k.exitCode, String(k.stderr)).toBe(0);
    expect((await ps(state))[0]!.state).toBe('exited');
    rmSync(state, { recursive: true, force: true });
    expect(readFileSync(join(work, 'precious'), 'utf8')).toBe('user data\n');
  }, 90_000);

  it('micro-VM: QEMU dies with the launcher, the next command removes its mounts, kill finishes it', async () => {
    const { state, work, rec } = await launchAndKill('orphanvm', ['--runtime', 'microvm']);
    await new Promise((r) => setTimeout(r, 1000));
    expect(alive(rec.pid)).toBe(false);
    expect((await ps(state))[0]!.state).toBe('orphaned');
    expect(mountsUnder(rec.run)).toEqual([]);
    const k = await cli(['kill', rec.id], state);
    expect(k.exitCode, String(k.stderr)).toBe(0);
    expect(readdirSync(work)).toEqual(['precious']);
  }, 120_000);
});
