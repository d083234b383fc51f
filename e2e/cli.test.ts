/**
 * The packed tarball, installed as a user would install it, run through every spine
 * command: help with examples, --json, exit codes per SPEC §1, located errors, and
 * deterministic generation.
 */
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../test/helpers/load.js';

const prefix = mkdtempSync(join(tmpdir(), 'agentbox-e2e-'));
let bin: string;

/** Every stderr this file's commands printed, scanned for stack frames at the end. */
const stderrs: { args: string[]; stderr: string }[] = [];
async function run(args: string[], env: Record<string, string> = {}) {
  const r = await execa(bin, args, { reject: false, stdin: 'ignore', cwd: prefix, env: { NO_COLOR: '1', HOME: '/home/e2e', ...env } });
  stderrs.push({ args, stderr: String(r.stderr) });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

beforeAll(async () => {
  const pack = await execa('npm', ['pack', '--silent', '--pack-destination', prefix], { cwd: ROOT });
  const tarball = join(prefix, String(pack.stdout).trim().split('\n').pop()!);
  await execa('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', join(prefix, 'inst'), tarball]);
  bin = join(prefix, 'inst', 'node_modules', '.bin', 'agentbox');
}, 300_000);

describe('installed agentbox', () => {
  it('ships its profiles, templates and schema', () => {
    const pkg = join(prefix, 'inst', 'node_modules', 'agentbox');
    expect(readdirSync(join(pkg, 'profiles', 'agents')).sort()).toEqual(['claude-code.yaml', 'codex.yaml', 'cowork.yaml', 'gemini-cli.yaml', 'shell.yaml']);
    expect(readdirSync(join(pkg, 'templates', 'linux')).length).toBeGreaterThanOrEqual(5);
    expect(readdirSync(pkg)).not.toContain('test');
  });

  it('every command has --help with examples', async () => {
    for (const cmd of ['validate', 'describe', 'explain', 'generate', 'apply', 'launch', 'ps', 'ps prune', 'kill', 'doctor', 'schema', 'userns-profile', 'policy', 'policy check', 'policy test', 'approvals', 'approve', 'deny', 'version', 'completion', 'man', 'init', 'exec', 'attach']) {
      const r = await run([...cmd.split(' '), '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(/Examples:\n  agentbox /);
    }
  });

  it('usage errors exit 2', async () => {
    expect((await run(['generate', 'cowork'])).code).toBe(2);
    expect((await run(['frobnicate'])).code).toBe(2);
    const t = await run(['generate', 'cowork', '--out', 'x', '--target', 'beos']);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/valid targets: linux, windows, macos, all/);
  });

  it('validate: 0 for valid, 2 with a located error for invalid, --json for scripts', async () => {
    writeFileSync(join(prefix, 'bad.yaml'), 'apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: bad }\nextends: [viewer]\nagent: { command: [/bin/true] }\ncapabilities:\n  - fs:read:~/Documents\n  - fs:write:~/Documents/out\n');
    expect((await run(['validate', 'cowork'])).code).toBe(0);
    const bad = await run(['validate', 'bad.yaml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.yaml:8:5 capabilities\[1\]: "fs:write:~\/Documents\/out" exceeds the ceiling of preset viewer/);
    const json = await run(['validate', '--json', 'cowork', 'bad.yaml']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout).map((r: { valid: boolean }) => r.valid)).toEqual([true, false]);
  });

  it('policy: the shipped seed cases pass (0), a failing case exits 1, a forbidden grant exits 3', async () => {
    const pkg = join(prefix, 'inst', 'node_modules', 'agentbox');
    const t = await run(['policy', 'test', join(pkg, 'profiles', 'policies')]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/\n22 passed, 0 failed$/);
    const org = mkdtempSync(join(prefix, 'org-'));
    writeFileSync(join(org, 'a.cedar'), '@id("no-launch")\nforbid (principal, action == Agentbox::Action::"launch", resource);\n');
    mkdirSync(join(org, 'tests'));
    writeFileSync(join(org, 'tests', 'wrong.yaml'), 'cases:\n  - name: launch is allowed (it is not)\n    request: launch\n    expect: allow\n');
    const f = await run(['policy', 'test', org, '--json']);
    expect(f.code).toBe(1);
    expect(JSON.parse(f.stdout)).toMatchObject({ passed: 0, failed: 1, results: [{ pass: false, message: 'expected allow, got deny (forbidden by no-launch)' }] });
    const c = await run(['policy', 'check', 'cowork', '--policy', org, '--json']);
    expect(c.code).toBe(3);
    expect(JSON.parse(c.stdout).results.find((r: { request: string }) => r.request === 'launch')).toMatchObject({ decision: 'deny', pointer: 'ttl', forbiddenBy: [{ id: 'no-launch' }] });
    const missing = await run(['policy', 'check', 'cowork', '--policy', join(prefix, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/policy directory .*nope does not exist/);
  });

  it('approvals: nothing waiting is fine; answering an unknown request is a usage error', async () => {
    const env = { AGENTBOX_STATE_DIR: mkdtempSync(join(prefix, 'state-')) };
    const a = await run(['approvals', '--json'], env);
    expect(a.code).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual([]);
    expect((await run(['approve', '0badc0de', '--once'], env)).stderr).toMatch(/no pending request 0badc0de/);
    expect((await run(['approve', '0badc0de'], env)).stderr).toMatch(/--once .* or --session/);
    expect((await run(['deny', '../../etc'], env)).code).toBe(2);
  });

  it('a missing manifest says what would be valid', async () => {
    const r = await run(['describe', 'nosuchagent']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/agent profiles: claude-code, codex, cowork, gemini-cli, shell/);
  });

  it('describe: plain language, and --json', async () => {
    const r = await run(['describe', 'cowork']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/It may:\n  • read ~\/Documents\n  • read, change, create and delete files in ~\/Documents\/Cowork\n  • connect to api\.anthropic\.com on port 443/);
    expect(r.stdout).toMatch(/For how long: at most 1 hour, then it is stopped\./);
    const j = JSON.parse((await run(['describe', 'cowork', '--profile', 'viewer', '--json'])).stdout);
    expect(j.presets.map((p: { name: string }) => p.name)).toEqual(['viewer']);
    expect(j.mayNot).toContain('use the network at all');
  });

  it('explain: exit 0 allowed, 1 denied, naming the rule', async () => {
    const allow = await run(['explain', 'cowork', 'fs:read:~/Documents/a.pdf']);
    expect(allow.code).toBe(0);
    expect(allow.stdout).toMatch(/allowed.*\n.*fs:read:~\/Documents \(capabilities\[0\]\)/);
    const deny = await run(['explain', 'cowork', 'fs:read:~/.ssh/id_rsa', '--json']);
    expect(deny.code).toBe(1);
    expect(JSON.parse(deny.stdout)).toMatchObject({ decision: 'deny', rule: { preset: 'organizer', pointer: 'deny[0]' } });
    expect((await run(['explain', 'cowork', 'fs:frob:/x'])).code).toBe(2);
  });

  it('generate: deterministic bytes, plan.json with sha256 of each artifact', async () => {
    const a = join(prefix, 'out-a');
    const b = join(prefix, 'out-b');
    // ~ would be this account's own home baked into a system unit: refused with the fix.
    const baked = await run(['generate', 'cowork', '--out', a]);
    expect(baked.code).toBe(2);
    expect(baked.stderr).toMatch(/\/home\/e2e\/Documents is under your own home .*\n.*--for-user USER/);
    expect((await run(['generate', 'cowork', '--out', join(prefix, 'nobody'), '--for-user', 'nobody'])).code).toBe(0);
    expect(readFileSync(join(prefix, 'nobody', 'linux', 'agentbox-cowork.service'), 'utf8')).toMatch(/^BindPaths="-\/nonexistent\/Documents\/Cowork"$/m);
    expect((await run(['generate', 'cowork', '--out', a, '--for-user', 'no-such-account'])).stderr).toMatch(/no such account in \/etc\/passwd/);
    expect((await run(['generate', 'cowork', '--out', a, '--home', '/home/e2e'])).code).toBe(0);
    expect((await run(['generate', 'cowork', '--out', b, '--home', '/home/e2e'])).code).toBe(0);
    const plan = JSON.parse(readFileSync(join(a, 'plan.json'), 'utf8'));
    expect(plan.artifacts.map((x: { path: string }) => x.path)).toEqual([
      'linux/agentbox-cowork.service', 'linux/agentbox-cowork.apparmor', 'linux/agentbox-cowork.iptables', 'linux/agentbox-cowork.ip6tables', 'linux/agentbox-cowork.nft',
      'linux/agentbox-cowork-firewall.service', 'linux/agentboxd.service', 'linux/agentbox-cowork.daemon.json',
    ]);
    for (const art of plan.artifacts) {
      expect(readFileSync(join(a, art.path), 'utf8')).toBe(readFileSync(join(b, art.path), 'utf8'));
      expect(art.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(art.enforces.length).toBeGreaterThan(0);
    }
    expect(readFileSync(join(a, 'plan.json'), 'utf8')).toBe(readFileSync(join(b, 'plan.json'), 'utf8'));
  });

  it('windows and macos targets with MDM bundles; a bundle needs its target', async () => {
    const out = join(prefix, 'mdm');
    const r = await run(['generate', 'cowork', '--target', 'windows,macos', '--bundle', 'intune,jamf', '--out', out, '--home', '/home/e2e']);
    expect(r.code, r.stderr).toBe(0);
    const intune = readdirSync(join(out, 'intune')).sort();
    expect(intune).toEqual(expect.arrayContaining(['agentbox-cowork-install.ps1', 'agentbox-cowork-uninstall.ps1', 'agentbox-cowork-detect.ps1', 'agentbox-cowork-wdac.xml']));
    expect(readdirSync(join(out, 'jamf')).sort()).toEqual(['agentbox-cowork-tcc-check.sh', 'agentbox-cowork.mobileconfig', 'com.agentbox.cowork', 'postinstall.sh']);
    const bad = await run(['generate', 'cowork', '--target', 'linux', '--bundle', 'intune', '--out', join(prefix, 'x'), '--home', '/home/e2e']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--bundle intune needs --target windows/);
  });

  it('doctor --json reports every probe with a hint when missing', async () => {
    const r = await run(['doctor', '--json']);
    expect(r.code).toBe(0);
    const d = JSON.parse(r.stdout);
    const names = d.probes.map((p: { name: string }) => p.name);
    for (const n of ['bubblewrap', 'landlock', 'seccomp', 'cgroups', 'iptables', 'nft', 'apparmor_parser', 'apparmor-lsm', 'systemd', 'dockerd', 'runsc', 'qemu', 'kvm']) expect(names).toContain(n);
    for (const p of d.probes) if (!p.available) expect(p.hint, p.name).toBeTruthy();
    // Doctor agrees with ground truth measured here independently.
    const bwrap = await execa('bwrap', ['--unshare-all', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', 'true'], { reject: false });
    expect(d.probes.find((p: { name: string }) => p.name === 'bubblewrap').available).toBe(bwrap.exitCode === 0);
    let lsm = false;
    try {
      lsm = readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
    } catch {
      lsm = false;
    }
    expect(d.probes.find((p: { name: string }) => p.name === 'apparmor-lsm').available).toBe(lsm);
    const pid1 = readFileSync('/proc/1/comm', 'utf8').trim();
    expect(d.probes.find((p: { name: string }) => p.name === 'systemd').detail).toMatch(pid1 === 'systemd' ? /PID 1/ : new RegExp(`PID 1 is ${pid1}`));
  });

  it('schema prints the published schema', async () => {
    const r = await run(['schema']);
    expect(r.stdout.trim()).toBe(readFileSync(join(ROOT, 'profiles', 'agentbox.schema.json'), 'utf8').trim());
  });

  // Last in this file (its tests run in order): no command above, failing or not, printed a
  // stack frame. A frame looks like "    at fn (file:line:col)" or "    at file:line:col".
  it('no stack trace reached a user in any command run above', () => {
    expect(stderrs.length).toBeGreaterThan(20);
    const frames = stderrs.filter((s) => /^\s+at (?:.+ \()?(?:file:|node:|\/).*:\d+:\d+\)?$/m.test(s.stderr));
    expect(frames.map((f) => `${f.args.join(' ')}:\n${f.stderr}`)).toEqual([]);
  });
});
