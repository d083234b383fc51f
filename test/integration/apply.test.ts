/**
 * `agentbox apply` against the real tools. The account and files go into a temporary
 * root (never the host's /etc); firewall rules load into a network namespace this test
 * creates (never the host's tables). AppArmor cannot load here (no LSM) and systemd is
 * not PID 1, which is exactly what the fail-closed checks need.
 *
 * Attacks/defects covered: a host missing a control silently leaves the agent
 * unconfined (defence: exit 4, nothing changed); a half-applied install (defence:
 * rollback of every step taken); a generated bundle edited after review (defence:
 * sha256 check against plan.json, exit 1).
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentbox } from '../helpers/cli.js';
import { NetNs } from '../helpers/real-parsers.js';

const manifest = `apiVersion: agentbox/v1
kind: Agent
metadata: { name: applytest }
extends: [organizer]
agent: { command: [/usr/bin/true], uid: 64010, user: abapply }
capabilities:
  - fs:read:/srv/shared
  - net:connect:127.0.0.1:18443
`;

function freshRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'agentbox-root-'));
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  writeFileSync(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o600 });
  writeFileSync(join(root, 'etc/gshadow'), 'root:*::\n', { mode: 0o600 });
  return root;
}

const work = mkdtempSync(join(tmpdir(), 'agentbox-apply-'));
const file = join(work, 'applytest.yaml');
writeFileSync(file, manifest);
let ns: NetNs;
const HOME = ['--home', '/home/user'];

beforeAll(async () => {
  ns = await NetNs.create('abapply');
});
afterAll(async () => ns?.destroy());

const chain = async () => {
  const r = await ns.exec('iptables', ['-S', 'AGENTBOX-APPLYTEST']);
  return r.exitCode === 0 ? String(r.stdout) : undefined;
};
const jumps = async () => String((await ns.exec('iptables', ['-S', 'OUTPUT'])).stdout).split('\n').filter((l) => l.includes('AGENTBOX-APPLYTEST')).length;

describe('agentbox apply', () => {
  it('fails closed with exit 4, naming each missing control, and changes nothing', async () => {
    const root = freshRoot();
    const r = await agentbox(['apply', file, '--root', root, ...HOME], { netns: ns.name });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/cannot enforce apparmor on this host; nothing was changed/);
    expect(r.stderr).toMatch(/--allow-missing apparmor/);
    expect(existsSync(join(root, 'etc/systemd'))).toBe(false);
    expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).not.toMatch(/abapply/);
    expect(await chain()).toBeUndefined();
  });

  it('without --root, systemd not being PID 1 is also named', async () => {
    const r = await agentbox(['apply', file, '--dry-run', ...HOME], { netns: ns.name });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/cannot enforce apparmor, systemd/);
  });

  it('--dry-run prints every command and changes nothing', async () => {
    const root = freshRoot();
    const r = await agentbox(['apply', file, '--root', root, '--dry-run', '--allow-missing', 'apparmor', ...HOME], { netns: ns.name });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/useradd --root \S+ --system --uid 64010 .* abapply/);
    expect(r.stdout).toMatch(/iptables-restore --noflush \S+agentbox-applytest\.iptables/);
    expect(r.stdout).toMatch(/iptables -C OUTPUT -m owner --uid-owner 64010 -j AGENTBOX-APPLYTEST \|\| iptables -I OUTPUT 1/);
    expect(existsSync(join(root, 'etc/systemd'))).toBe(false);
    expect(await chain()).toBeUndefined();
  });

  it('installs account, files and firewall; a second apply changes nothing', async () => {
    const root = freshRoot();
    const first = await agentbox(['apply', file, '--root', root, '--allow-missing', 'apparmor', '--json', ...HOME], { netns: ns.name });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/apparmor not enforced/);
    const steps = JSON.parse(first.stdout).steps as { step: string; status: string }[];
    expect(steps.find((s) => s.step.startsWith('account'))!.status).toBe('done');
    expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).toMatch(/^abapply:x:64010:/m);
    expect(readFileSync(join(root, 'etc/systemd/system/agentbox-applytest.service'), 'utf8')).toMatch(/^User=abapply$/m);
    expect(existsSync(join(root, 'etc/apparmor.d/agentbox-applytest'))).toBe(true);
    expect(existsSync(join(root, 'etc/agentbox/agentbox-applytest.plan.json'))).toBe(true);
    expect(await chain()).toMatch(/-A AGENTBOX-APPLYTEST -d 127.0.0.1\/32 -p tcp -m tcp --dport 18443/);
    expect(await jumps()).toBe(1);

    const second = await agentbox(['apply', file, '--root', root, '--allow-missing', 'apparmor', '--json', ...HOME], { netns: ns.name });
    expect(second.code).toBe(0);
    const again = JSON.parse(second.stdout).steps as { status: string }[];
    expect(again.filter((s) => s.status === 'done')).toEqual([]);
    expect(await jumps()).toBe(1);

    // Leave the namespace clean for the next test.
    await ns.exec('iptables', ['-D', 'OUTPUT', '-m', 'owner', '--uid-owner', '64010', '-j', 'AGENTBOX-APPLYTEST']);
    await ns.exec('iptables', ['-F', 'AGENTBOX-APPLYTEST']);
    await ns.exec('iptables', ['-X', 'AGENTBOX-APPLYTEST']);
    await ns.exec('ip6tables', ['-D', 'OUTPUT', '-m', 'owner', '--uid-owner', '64010', '-j', 'AGENTBOX-APPLYTEST']);
    await ns.exec('ip6tables', ['-F', 'AGENTBOX-APPLYTEST']);
    await ns.exec('ip6tables', ['-X', 'AGENTBOX-APPLYTEST']);
  });

  it('rolls back every step taken when a later step fails', async () => {
    const root = freshRoot();
    // The last step writes the plan record; a directory in its place makes it fail
    // after the account, the files and the firewall are already in.
    mkdirSync(join(root, 'etc/agentbox/agentbox-applytest.plan.json'), { recursive: true });
    const r = await agentbox(['apply', file, '--root', root, '--allow-missing', 'apparmor', ...HOME], { netns: ns.name });
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/rolled back iptables chain AGENTBOX-APPLYTEST/);
    expect(r.stderr).toMatch(/rolled back account abapply/);
    expect(r.stderr).toMatch(/steps taken before it were rolled back/);
    expect(await chain()).toBeUndefined();
    expect(await jumps()).toBe(0);
    expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).not.toMatch(/abapply/);
    expect(existsSync(join(root, 'etc/systemd/system/agentbox-applytest.service'))).toBe(false);
    expect(existsSync(join(root, 'etc/agentbox/agentbox-applytest.iptables'))).toBe(false);
  });

  it('a uid that belongs to another account is refused with exit 4 and a fix', async () => {
    const root = freshRoot();
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nsomeone:x:64010:64010::/:/bin/sh\n');
    const r = await agentbox(['apply', file, '--root', root, '--offline', ...HOME]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/uid 64010 already belongs to account someone/);
  });

  it('--offline installs into an image without touching any kernel table', async () => {
    const root = freshRoot();
    const r = await agentbox(['apply', file, '--root', root, '--offline', ...HOME], { netns: ns.name });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(root, 'etc/systemd/system/agentbox-applytest.service'))).toBe(true);
    expect(await chain()).toBeUndefined();
  });

  it('applies a generated directory, and refuses one edited after generation (exit 1)', async () => {
    const out = join(work, 'dist');
    expect((await agentbox(['generate', file, '--out', out, ...HOME])).code).toBe(0);
    const root = freshRoot();
    const ok = await agentbox(['apply', out, '--root', root, '--offline']);
    expect(ok.code, ok.stderr).toBe(0);
    const unit = join(out, 'linux/agentbox-applytest.service');
    writeFileSync(unit, readFileSync(unit, 'utf8').replace('NoNewPrivileges=yes', 'NoNewPrivileges=no'));
    const bad = await agentbox(['apply', out, '--root', freshRoot(), '--offline']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/agentbox-applytest\.service does not match plan\.json.*changed after generate/);
  });
});

describe('apply against a hostile image or bundle', () => {
  it('refuses to follow a symlink planted in the root out of it, and rolls back', async () => {
    const root = freshRoot();
    const decoy = mkdtempSync(join(tmpdir(), 'agentbox-decoy-'));
    await execa('ln', ['-s', decoy, join(root, 'etc/apparmor.d')]);
    const r = await agentbox(['apply', file, '--root', root, '--offline', ...HOME]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/resolves to .*outside .*refusing to follow a symlink out of the root/);
    expect(readdirSync(decoy)).toEqual([]);
    expect(existsSync(join(root, 'etc/systemd/system/agentbox-applytest.service'))).toBe(false);
  });

  it('refuses a plan.json whose agent name would leave the install directories', async () => {
    const out = join(work, 'evil-dist');
    expect((await agentbox(['generate', file, '--out', out, ...HOME])).code).toBe(0);
    const plan = JSON.parse(readFileSync(join(out, 'plan.json'), 'utf8'));
    plan.agent = '../../../tmp/escaped';
    writeFileSync(join(out, 'plan.json'), JSON.stringify(plan));
    const r = await agentbox(['apply', out, '--root', freshRoot(), '--offline']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/agent "..\/..\/..\/tmp\/escaped" is not a valid agent name/);
  });

  it('a home directory with a control character is a located usage error, not an internal one', async () => {
    const r = await agentbox(['generate', file, '--out', join(work, 'h'), '--home', '/home/a\nb']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/the home directory .* must be a clean absolute path/);
  });
});
