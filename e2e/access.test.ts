/**
 * The access check before launch: the kernel decides, as the agent's uid.
 *
 * Attack (on the operator, not the box): a launch that starts, then fails half way or
 * silently, because the agent's uid cannot use a grant (a root-owned work folder, a
 * 0700 Documents). Defence: every grant is checked with access(2) by a process running
 * as that uid before anything starts; a grant it cannot use is exit 4 with the fix, and
 * nothing is started. ACLs count (the check is the kernel's, not a mode calculation).
 */
import { execa } from 'execa';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-access-'));
chmodSync(base, 0o755);
const state = join(base, 'state');
const run = (args: string[], user?: string) =>
  user
    ? execa('su', [user, '-s', '/bin/sh', '-c', [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1' } })
    : execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', AGENTBOX_STATE_DIR: state } });

function manifest(name: string, caps: string[]): string {
  const f = join(base, `${name}.yaml`);
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nextends: [editor]\nagent: { command: [/bin/true] }\ncapabilities:\n${caps.map((c) => `  - ${c}\n`).join('')}`);
  return f;
}
const sessions = () => (existsSync(join(state, 'sessions')) ? readdirSync(join(state, 'sessions')) : []);

describe('a grant the agent uid cannot use', () => {
  it('a root-owned write grant: exit 4, the path, the missing permission and chown in the message; nothing started', async () => {
    const dir = join(base, 'rootwork');
    mkdirSync(dir, { mode: 0o755 });
    const before = sessions().length;
    const r = await run(['launch', manifest('rootwork', [`fs:write:${dir}`])]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(`${dir}: uid 64000 cannot write it (owner 0, group 0, mode 0755); fix: chown 64000 ${dir}, or setfacl -m u:64000:rwx ${dir}`);
    expect(r.stderr).toMatch(/nothing was started/);
    expect(sessions().length).toBe(before);
  }, 60_000);

  it('a 0700 read grant fails; after setfacl -m u:64000:rx (the fix it names) the same launch runs', async () => {
    const dir = join(base, 'private');
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'a.txt'), 'x', { mode: 0o644 });
    const f = manifest('private', [`fs:read:${dir}`]);
    const r = await run(['launch', f]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(`uid 64000 cannot read and enter it (owner 0, group 0, mode 0700); fix: setfacl -m u:64000:rx ${dir}`);
    await execa('setfacl', ['-m', 'u:64000:rx', dir]);
    const ok = await run(['launch', f]);
    expect(ok.exitCode, ok.stderr).toBe(0);
  }, 60_000);

  it('validate --host also checks every folder above a grant, as the systemd unit runs the agent', async () => {
    const parent = join(base, 'locked');
    const dir = join(parent, 'work');
    mkdirSync(dir, { recursive: true });
    chownSync(dir, 64000, 64000);
    chmodSync(parent, 0o700);
    const f = manifest('locked', [`fs:write:${dir}`]);
    const r = await run(['validate', '--host', f]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(`the folder ${parent} above fs:write:${dir} (capabilities[0]): uid 64000 cannot enter it (owner 0, group 0, mode 0700); fix: setfacl -m u:64000:x ${parent}`);
    // The box binds the grant from an fd, so launch itself does not need the parent.
    const l = await run(['launch', f]);
    expect(l.exitCode, l.stderr).toBe(0);
    expect((await run(['validate', f])).exitCode).toBe(0);
  }, 60_000);

  it('doctor as a non-root user says what that user cannot do instead of "ready"', async () => {
    const r = await run(['doctor'], 'nobody');
    expect(r.stdout).toMatch(/^partly\s+process runtime: .*without root: no limits and no writable grants/m);
    expect(r.stdout).toMatch(/As uid 65534 \(not root\), agentbox cannot:\n {2}- apply cgroup limits/);
    expect(r.stdout).not.toMatch(/^ready\s+process runtime/m);
  }, 60_000);

  it('doctor AGENT runs the same check (exit 4 with the fix)', async () => {
    const dir = join(base, 'rootwork2');
    mkdirSync(dir, { mode: 0o755 });
    const r = await run(['doctor', manifest('rootwork2', [`fs:write:${dir}`])]);
    expect(r.exitCode).toBe(4);
    expect(r.stdout).toContain(`fix: chown 64000 ${dir}`);
  }, 60_000);

  it('a program the agent could change is refused: inside a write grant, or writable by its uid', async () => {
    // Attack: the agent rewrites its own program (or #! line) in a write grant; the change
    // is committed (persist) and the next launch grants what the new #! line names.
    const work = join(base, 'agentwork');
    mkdirSync(work, { mode: 0o755 });
    chownSync(work, 64000, 64000);
    const inside = join(work, 'tool.sh');
    writeFileSync(inside, '#!/bin/sh\necho hi\n', { mode: 0o755 });
    const f1 = join(base, 'inside.yaml');
    writeFileSync(f1, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: inside }\nextends: [editor]\nagent: { command: [${inside}] }\ncapabilities:\n  - fs:write:${work}\n  - exec:/bin\n`);
    const r1 = await run(['launch', f1]);
    expect(r1.exitCode).toBe(4);
    expect(r1.stderr).toContain(`the agent program ${inside} is inside fs:write:${work} (capabilities[0]): the agent could change what it runs next time`);
    const owned = join(base, 'owned.sh');
    writeFileSync(owned, '#!/bin/sh\necho hi\n', { mode: 0o755 });
    chownSync(owned, 64000, 64000);
    const f2 = join(base, 'owned.yaml');
    writeFileSync(f2, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: owned }\nextends: [viewer]\nagent: { command: [${owned}] }\ncapabilities:\n  - exec:/bin\n`);
    const r2 = await run(['launch', f2]);
    expect(r2.exitCode).toBe(4);
    expect(r2.stderr).toContain(`the agent program ${owned} is writable by uid 64000`);
    chownSync(owned, 0, 0);
    expect((await run(['launch', f2])).exitCode).toBe(0);
  }, 60_000);
});
