/**
 * The command line around launch, as a user types it: options stop at the agent's
 * command, --env/--env-file (audited by name, never by value), --json's session result,
 * ps --filter/-q/prune, kill of an ended session, audit export --since 1h, version.
 * Attack covered: a secret given with --env leaking into the audit log or the summary.
 */
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-clilaunch-'));
chmodSync(base, 0o755);
const state = join(base, 'state');
const home = join(base, 'home');
mkdirSync(join(home, 'Documents'), { recursive: true });
writeFileSync(join(home, 'Documents', 'receipt-1.txt'), 'x');
const cli = (args: string[]) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', AGENTBOX_STATE_DIR: state } });
const SECRET = 'sk-live-7f3a9c1e-never-in-the-log';

describe('launch on the command line', () => {
  it('launch shell ls -la DIR runs ls -la: options stop at the command', async () => {
    const r = await cli(['launch', 'shell', '--home', home, 'ls', '-la', join(home, 'Documents')]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/receipt-1\.txt/);
    expect(r.stdout).toMatch(/^total /m);
  }, 60_000);

  it('agentbox options after the command without -- are refused, never passed on silently', async () => {
    const r = await cli(['launch', 'shell', '--home', home, 'true', '--dry-run']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--dry-run after the command would be the command's own argument, not agentbox's; nothing was started/);
    expect((await cli(['launch', 'shell', '--home', home, '--', 'echo', '--dry-run'])).stdout).toMatch(/^--dry-run$/m);
  }, 60_000);

  it('--env and --env-file reach the agent; the audit names them and never holds a value', async () => {
    const f = join(base, 'keys.env');
    writeFileSync(f, `# keys\nAPI_KEY=${SECRET}\n`);
    const r = await cli(['--json', 'launch', 'shell', '--home', home, '--env', 'MODE=fast', '--env-file', f, 'sh', '-c', 'echo "mode=$MODE key-length=${#API_KEY}"']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^mode=fast key-length=${SECRET.length}$`, "m"));
    // --json: the session result after the agent's own output.
    const result = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n{') + 1)) as { session: string; exitCode: number; endReason: string; egress: unknown; changes: unknown[] };
    expect(result).toMatchObject({ exitCode: 0, endReason: 'exited', changes: [] });
    const log = readFileSync(join(state, 'audit.jsonl'), 'utf8');
    expect(log).not.toContain(SECRET);
    expect(r.stderr).not.toContain(SECRET);
    const launch = log.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { session: string; action: string; details: { envAdded?: string[] } }).find((e) => e.session === result.session && e.action === 'launch');
    expect(launch?.details.envAdded).toEqual(['API_KEY', 'MODE']);
    const bad = await cli(['launch', 'shell', '--home', home, '--env', 'HTTPS_PROXY=http://evil', 'true']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/HTTPS_PROXY is set by agentbox itself/);
  }, 60_000);

  it('ps --filter, -q and prune; kill of an ended session exits 1', async () => {
    const r = await cli(['--json', 'launch', 'shell', '--home', home, 'true']);
    const id = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { session: string }).session;
    const q = await cli(['ps', '-q', '--all', '--filter', 'agent=shell', '--filter', 'state=exited']);
    expect(String(q.stdout).split('\n')).toContain(id);
    expect((await cli(['ps', '-q', '--filter', 'agent=nosuch'])).stdout).toBe('');
    expect((await cli(['ps', '--filter', 'color=red'])).exitCode).toBe(2);
    const k = await cli(['kill', id]);
    expect(k.exitCode).toBe(1);
    expect(k.stderr).toMatch(/has already ended/);
    expect(existsSync(join(state, 'sessions', `${id}.json`))).toBe(true);
    const p = await cli(['--json', 'ps', 'prune']);
    expect((JSON.parse(p.stdout) as { removed: string[] }).removed).toContain(id);
    expect(existsSync(join(state, 'sessions', `${id}.json`))).toBe(false);
    // The audit log stays.
    expect(readFileSync(join(state, 'audit.jsonl'), 'utf8')).toContain(id);
  }, 60_000);

  it('audit export --since takes a duration back from now', async () => {
    const recent = await execa(process.execPath, [BIN, 'audit', 'export', '--format', 'json', '--since', '1h', '--file', join(state, 'audit.jsonl')], { reject: false });
    expect(recent.exitCode, recent.stderr).toBe(0);
    expect(String(recent.stdout).split('\n').filter(Boolean).length).toBeGreaterThan(3);
    const future = await execa(process.execPath, [BIN, 'audit', 'export', '--format', 'json', '--since', '2099-01-01T00:00:00Z', '--file', join(state, 'audit.jsonl')], { reject: false });
    expect(String(future.stdout)).toBe('');
    const bad = await execa(process.execPath, [BIN, 'audit', 'export', '--format', 'json', '--since', '2x'], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/a duration back from now such as 30m, 1h/);
  }, 60_000);

  it('version --json: version, commit, node and the engines found', async () => {
    const r = await cli(['--json', 'version']);
    const v = JSON.parse(r.stdout) as { version: string; commit: string; node: string; engines: { name: string; found: boolean; version: string }[] };
    expect(v.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(v.commit).toMatch(/^([0-9a-f]{12}|unknown)$/);
    expect(v.node).toBe(process.version);
    expect(v.engines.find((e) => e.name === 'bubblewrap')).toMatchObject({ found: true, version: expect.stringMatching(/^bubblewrap \d/) });
  }, 60_000);
});
