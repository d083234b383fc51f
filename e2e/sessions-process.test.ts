/**
 * Session lifecycle on the real process runtime: ttl, ps, kill, persist, dry-run, and
 * failing closed (exit 4) when the host cannot enforce what the manifest asks.
 * Attack covered: an agent that simply keeps running past its ttl or after an
 * incident responder's kill.
 */
import { execa } from 'execa';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-sess-'));
chmodSync(base, 0o755);

function manifest(name: string, extra: string): string {
  const f = join(base, `${name}.yaml`);
  const caps = extra.includes('capabilities:') ? '' : 'capabilities: [exec:/usr/bin]\n';
  writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: ${name} }\nagent: { command: [/usr/bin/sleep, '60'] }\n${caps}${extra}`);
  return f;
}

const run = (args: string[], env: Record<string, string> = {}, opts: { uid?: number } = {}) => {
  const argv = opts.uid !== undefined ? ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', process.execPath, BIN, ...args] : [process.execPath, BIN, ...args];
  return execa(argv[0]!, argv.slice(1), { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', ...env } });
};

describe('process runtime sessions', () => {
  it('a session with ttl: 3s running sleep 60 ends within a few seconds, and says so', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const t0 = Date.now();
    const r = await run(['launch', manifest('ttl', 'ttl: 3s\n'), '--home', base], { AGENTBOX_STATE_DIR: state });
    const elapsed = (Date.now() - t0) / 1000;
    expect(elapsed).toBeLessThan(8);
    expect(elapsed).toBeGreaterThanOrEqual(3);
    expect(r.exitCode).toBe(143);
    expect(String(r.stderr)).toMatch(/reached its ttl of 3s; ending the session/);
    expect(readFileSync(join(state, 'audit.jsonl'), 'utf8')).toMatch(/"action":"ttl\.expired"/);
  }, 30_000);

  it('ps lists a running session; kill ends it; ps --all shows it exited', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const env = { AGENTBOX_STATE_DIR: state };
    const child = run(['launch', manifest('pskill', ''), '--home', base], env);
    let sessions: { id: string; agent: string; runtime: string; state: string; pid: number }[] = [];
    for (let i = 0; i < 50 && sessions.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      sessions = JSON.parse(String((await run(['ps', '--json'], env)).stdout));
    }
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({ agent: 'pskill', runtime: 'process', state: 'running', pid: expect.any(Number) });
    const t0 = Date.now();
    expect((await run(['kill', '--agent', 'nosuchagent'], env)).exitCode).toBe(2);
    expect((await run(['kill', '--agent', 'pskill'], env)).exitCode).toBe(0);
    const r = await child;
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.exitCode).toBe(143);
    const all = JSON.parse(String((await run(['ps', '--all', '--json'], env)).stdout));
    expect(all[0]).toMatchObject({ id: sessions[0]!.id, state: 'exited', endReason: 'killed' });
    expect(JSON.parse(String((await run(['ps', '--json'], env)).stdout))).toEqual([]);
  }, 30_000);

  it('snapshot: persist commits the changes to the granted folder', async () => {
    const work = join(base, 'persist-work');
    mkdirSync(work);
    writeFileSync(join(work, 'keep'), 'old');
    writeFileSync(join(work, 'gone'), 'x');
    chownSync(work, 64000, 64000);
    for (const f of ['keep', 'gone']) chownSync(join(work, f), 64000, 64000);
    const m = manifest('persist', `capabilities: [exec:/usr/bin, "fs:write:${work}"]\nruntime: { snapshot: persist }\n`);
    const r = await run(['launch', m, '--home', base, '--', '/bin/sh', '-c', `echo new > ${work}/keep; echo hi > ${work}/added; rm ${work}/gone; mkdir ${work}/d; echo in > ${work}/d/f`], {
      AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')),
    });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(readFileSync(join(work, 'keep'), 'utf8')).toBe('new\n');
    expect(readFileSync(join(work, 'added'), 'utf8')).toBe('hi\n');
    expect(readFileSync(join(work, 'd/f'), 'utf8')).toBe('in\n');
    expect(existsSync(join(work, 'gone'))).toBe(false);
    expect(statSync(join(work, 'added')).uid).toBe(64000);
    expect(readdirSync(work).filter((f) => f.startsWith('.agentbox'))).toEqual([]);
    expect(String(r.stderr)).toMatch(/4 changes kept|5 changes kept/);
  }, 30_000);

  it('persist never commits a FIFO (it would hang the launcher) and drops setuid bits', async () => {
    const work = join(base, 'persist-hostile');
    mkdirSync(work);
    chownSync(work, 64000, 64000);
    const m = manifest('persisthostile', `capabilities: [exec:/usr/bin, "fs:write:${work}"]\nruntime: { snapshot: persist }\n`);
    const r = await run(['launch', m, '--home', base, '--', '/bin/sh', '-c', `mkfifo ${work}/fifo; cp /usr/bin/true ${work}/suid; chmod 4755 ${work}/suid`], {
      AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')),
    });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stderr)).toMatch(/not committed \(not a regular file, directory or symlink\): .*fifo/);
    expect(existsSync(join(work, 'fifo'))).toBe(false);
    expect(statSync(join(work, 'suid')).mode & 0o7777).toBe(0o755);
  }, 30_000);

  // Attack: file names carrying ESC sequences and newlines, to rewrite the operator's
  // terminal and forge "agentbox:" lines in the end-of-session summary.
  // Defence: every agent-controlled string printed to a terminal is escaped.
  it('file names with escape sequences and newlines reach the summary escaped, with or without --diff', async () => {
    const work = join(base, 'escapes-work');
    mkdirSync(work);
    chownSync(work, 64000, 64000);
    const m = manifest('escapes', `capabilities: [exec:/usr/bin, "fs:write:${work}"]\n`);
    const script = `cd ${work} && touch "$(printf 'a\\033[2J\\033]0;owned\\007')" "$(printf 'b\\nagentbox: session all-clear ended with exit code 0')" "$(printf 'c\\342\\200\\256txt.exe')"`;
    for (const diff of [[], ['--diff']]) {
      const r = await run(['launch', m, '--home', base, ...diff, '--', '/bin/sh', '-c', script], { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) });
      expect(r.exitCode, String(r.stderr)).toBe(0);
      const err = String(r.stderr);
      expect(err).not.toMatch(/[\x1b\x07\u202e]/);
      expect(err.split('\n').filter((l) => l.startsWith('agentbox:'))).toHaveLength(1);
      expect(err).toContain('a\\x1b[2J\\x1b]0;owned\\x07');
      expect(err).toContain('b\\x0aagentbox: session all-clear');
      expect(err).toContain('c\\u{202e}txt.exe');
    }
  }, 30_000);

  it('--verbose shows each denied connection as it happens', async () => {
    const m = manifest('verbose', 'extends: [organizer]\ncapabilities: [exec:/usr/bin, "net:connect:api.example.com:443"]\n');
    const r = await run(['launch', m, '--home', base, '--verbose', '--', '/usr/bin/python3', '-c', 'import urllib.request as u\ntry: u.urlopen("http://127.0.0.1:9/x")\nexcept Exception as e: print(e.code)'], {
      AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')),
    });
    expect(String(r.stdout).trim()).toBe('403');
    expect(String(r.stderr)).toMatch(/agentbox: denied 127\.0\.0\.1:9: 127\.0\.0\.1 is not in the allowlist/);
    expect(String(r.stderr)).toMatch(/egress: 0 allowed, 1 denied \(127\.0\.0\.1:9 ×1\)/);
  }, 30_000);

  it('a state directory that could inject overlay options fails closed', async () => {
    const m = manifest('badstate', `capabilities: [exec:/usr/bin, "fs:write:${base}/persist-work"]\n`);
    const weird = join(base, 'a,lowerdir=x');
    mkdirSync(weird);
    const r = await run(['launch', m, '--home', base], { AGENTBOX_STATE_DIR: weird });
    expect(r.exitCode).toBe(4);
    expect(String(r.stderr)).toMatch(/state directory .* must contain only letters, digits/);
  });

  it('--dry-run prints the box and starts nothing', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    const r = await run(['launch', manifest('dry', 'limits: { pids: 10 }\n'), '--home', base, '--dry-run'], { AGENTBOX_STATE_DIR: state });
    expect(r.exitCode).toBe(0);
    expect(String(r.stdout)).toMatch(/bwrap \\\n  --unshare-all/);
    expect(String(r.stdout)).toMatch(/--seccomp \\\n  3/);
    expect(String(r.stdout)).toMatch(/landlock-exec/);
    expect(existsSync(join(state, 'audit.jsonl'))).toBe(false);
  });

  it('fails closed (exit 4, nothing started) when the host cannot enforce a limit or a writable grant', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    chownSync(state, 65534, 65534);
    const limited = await run(['launch', manifest('nolimit', 'limits: { pids: 10 }\n'), '--home', base], { AGENTBOX_STATE_DIR: state }, { uid: 65534 });
    expect(limited.exitCode).toBe(4);
    expect(String(limited.stderr)).toMatch(/limit pids: \/sys\/fs\/cgroup\/pids is not writable by this user/);
    const writable = await run(['launch', manifest('nowrite', `capabilities: [exec:/usr/bin, "fs:write:${base}/w"]\n`), '--home', base], { AGENTBOX_STATE_DIR: state }, { uid: 65534 });
    expect(writable.exitCode).toBe(4);
    expect(String(writable.stderr)).toMatch(/writable grants are overlays/);
  });

  it('an unprivileged user can launch when nothing needs root', async () => {
    const state = mkdtempSync(join(base, 'state-'));
    chownSync(state, 65534, 65534);
    const r = await run(['launch', manifest('unpriv', ''), '--home', base, '--', '/usr/bin/id', '-u'], { AGENTBOX_STATE_DIR: state }, { uid: 65534 });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stdout).trim()).toBe('65534');
  });

  it('a command that does not exist is 127', async () => {
    const r = await run(['launch', manifest('nf', ''), '--home', base, '--', 'no-such-program-xyz'], { AGENTBOX_STATE_DIR: mkdtempSync(join(base, 'state-')) });
    expect(r.exitCode).toBe(127);
  });
});
