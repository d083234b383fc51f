/**
 * The real agent CLIs from npm under the shipped profiles.
 *
 * The global setup installs pinned @anthropic-ai/claude-code, @openai/codex and
 * @google/gemini-cli (test/helpers/agents.ts), so each `bin/NAME` is npm's symlink into
 * its package, the shape every global install has. An agent that could not be installed
 * fails its tests: none is skipped.
 *
 * Each test runs a copy of the shipped profile that differs only in:
 * - agent.command[0]: the cache's `bin/NAME` link instead of /usr/local/bin/NAME;
 * - the fake API's base URL and key in agent.env, and its grant (127.0.0.1:PORT);
 * - the agent's config file in the test home (codex: model provider; gemini: API-key auth).
 * Checked: `--version` on the process and container runtimes, and one prompt per agent
 * answered by the loopback fake API, whose request arrived through agentbox's proxy
 * (the box has no other way out) and is in the audit log as an allowed egress.http or
 * egress.connect.
 * Learn mode on each CLI: `agentbox learn` of `--version` and of the prompt writes a
 * manifest that validates, whose describe is the consent text, and under which `launch`
 * runs the same command with zero denials (no fs.denied, syscall.denied or summary).
 */
import { execa } from 'execa';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';
import { ROOT } from '../test/helpers/load.js';
import { startFakeApi, type FakeApi } from '../test/helpers/fake-api.js';
import { installAgent, PINNED, type Agent } from '../test/helpers/agents.js';

const PROFILE: Record<Agent, string> = { claude: 'claude-code', codex: 'codex', gemini: 'gemini-cli' };
const VERSION: Record<Agent, RegExp> = { claude: /^2\.1\.332 \(Claude Code\)$/m, codex: /^codex-cli 0\.171\.0$/m, gemini: /^0\.61\.0$/m };
const ANSWER = 'FAKE-ANSWER-7f3a';
const UID = 64000;

const base = mkdtempSync(join(tmpdir(), 'agentbox-agents-'));
chmodSync(base, 0o755);
const installed = new Map<Agent, string>();
let api: FakeApi;

/** A home for the agent: root-owned, its granted folders owned by the agent uid, its config written. */
function home(agent: Agent): string {
  const h = mkdtempSync(join(base, `${agent}-home-`));
  chmodSync(h, 0o755);
  for (const d of ['work', '.claude', '.codex', '.gemini']) {
    mkdirSync(join(h, d));
    chownSync(join(h, d), UID, UID);
  }
  writeFileSync(join(h, '.claude.json'), '{}');
  chownSync(join(h, '.claude.json'), UID, UID);
  writeFileSync(join(h, '.codex', 'config.toml'), `model = "gpt-5-codex"\nmodel_provider = "fake"\napproval_policy = "never"\n[analytics]\nenabled = false\n[model_providers.fake]\nname = "fake"\nbase_url = "http://127.0.0.1:${api.port}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n`);
  writeFileSync(join(h, '.gemini', 'settings.json'), JSON.stringify({ security: { auth: { selectedType: 'gemini-api-key' } }, privacy: { usageStatisticsEnabled: false }, general: { disableAutoUpdate: true } }));
  // The agent's own config files are the agent user's, as in a real home (gemini rewrites its settings).
  for (const f of ['.codex/config.toml', '.gemini/settings.json']) chownSync(join(h, f), UID, UID);
  return h;
}

/** The shipped profile with the cache's link as its program, and the fake API granted. */
function testCopy(agent: Agent): string {
  const doc = parse(readFileSync(join(ROOT, 'profiles', 'agents', `${PROFILE[agent]}.yaml`), 'utf8')) as { agent: { command: string[]; env?: Record<string, string> }; capabilities: string[]; runtime: Record<string, string> };
  doc.agent.command[0] = installed.get(agent)!;
  const url = `http://127.0.0.1:${api.port}`;
  const envs: Record<Agent, Record<string, string>> = { claude: { ANTHROPIC_BASE_URL: url, ANTHROPIC_API_KEY: 'sk-ant-fake' }, codex: { OPENAI_API_KEY: 'sk-fake' }, gemini: { GOOGLE_GEMINI_BASE_URL: url, GEMINI_API_KEY: 'fake' } };
  const env = envs[agent];
  doc.agent.env = { ...doc.agent.env, ...env };
  doc.capabilities.push(`net:connect:127.0.0.1:${api.port}`);
  const f = join(base, `${PROFILE[agent]}.yaml`);
  writeFileSync(f, stringify(doc));
  return f;
}

const state = join(base, 'state');
const run = (args: string[], h: string) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', cwd: join(h, 'work'), env: { NO_COLOR: '1', AGENTBOX_STATE_DIR: state } });

beforeAll(async () => {
  api = await startFakeApi(ANSWER);
  for (const a of Object.keys(PINNED) as Agent[]) installed.set(a, await installAgent(a));
}, 600_000);

afterAll(async () => {
  await api?.close();
});

const PROMPT: Record<Agent, string[]> = {
  claude: ['-p', 'say hi'],
  codex: ['exec', '--skip-git-repo-check', 'say hi'],
  gemini: ['-m', 'gemini-2.5-flash', '-p', 'say hi'],
};
const ROUTE: Record<Agent, RegExp> = { claude: /^\/v1\/messages/, codex: /^\/v1\/responses$/, gemini: /^\/v1beta\/models\/gemini-2\.5-flash:(stream)?[gG]enerateContent/ };

describe.each(Object.keys(PINNED) as Agent[])('%s from npm under its shipped profile', (agent) => {
  it('resolves the npm link: the plan names the real file in the package, which is granted read and exec', async () => {
    const h = home(agent);
    const r = await execa(process.execPath, [BIN, 'describe', testCopy(agent), '--home', h, '--json'], { reject: false, env: { NO_COLOR: '1' } });
    expect(r.exitCode, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as { command: string[] };
    expect(d.command[0]).toContain('/lib/node_modules/');
    expect(d.command[0]).not.toBe(installed.get(agent));
  });

  it('init --from the installed link scaffolds a manifest that validates and names the package', async () => {
    const out = join(base, `init-${agent}.yaml`);
    rmSync(out, { force: true });
    const r = await execa(process.execPath, [BIN, 'init', '--from', installed.get(agent)!, '--out', out], { reject: false, env: { NO_COLOR: '1' } });
    expect(r.exitCode, r.stderr).toBe(0);
    const text = readFileSync(out, 'utf8');
    expect(text).toMatch(/in the package \S+\/lib\/node_modules\//);
    expect((await execa(process.execPath, [BIN, 'validate', out], { reject: false })).exitCode).toBe(0);
    // Never over an existing file without --force.
    expect((await execa(process.execPath, [BIN, 'init', '--from', installed.get(agent)!, '--out', out], { reject: false })).exitCode).toBe(2);
  });

  it('--version on the process runtime', async () => {
    const h = home(agent);
    const r = await run(['launch', testCopy(agent), '--home', h, '--', installed.get(agent)!, '--version'], h);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(VERSION[agent]);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  }, 120_000);

  it('--version on the container runtime', async () => {
    const h = home(agent);
    const r = await run(['launch', testCopy(agent), '--home', h, '--runtime', 'container', '--', installed.get(agent)!, '--version'], h);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(VERSION[agent]);
  }, 180_000);

  it('one prompt, answered by the fake API through agentbox\'s proxy and audited', async () => {
    const h = home(agent);
    const before = api.seen.length;
    const r = await run(['launch', testCopy(agent), '--home', h, '--', installed.get(agent)!, ...PROMPT[agent]], h);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(ANSWER);
    const seen = api.seen.slice(before);
    expect(seen.some((s) => s.method === 'POST' && ROUTE[agent].test(s.url)), JSON.stringify(seen.map((s) => s.url))).toBe(true);
    const session = /session (\S+) ended/.exec(r.stderr)?.[1];
    expect(session).toBeDefined();
    const entries = readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { session: string; action: string; decision: string; resource: string });
    // Plain HTTP is forwarded (egress.http); Gemini's client tunnels even http:// with CONNECT (egress.connect).
    const mine = entries.filter((e) => e.session === session && (e.action === 'egress.http' || e.action === 'egress.connect') && e.decision === 'allow');
    expect(mine.some((e) => e.resource.includes(`127.0.0.1:${api.port}`)), JSON.stringify(mine)).toBe(true);
  }, 180_000);

  for (const what of ['--version', 'prompt'] as const) {
    it(`learn of ${what} proposes a manifest that validates and then launches the same command with zero denials (gemini: but its listings above its package, which no grant lifts alone)`, async () => {
      const h = home(agent);
      // The profile's own arguments stay (codex: --sandbox danger-full-access, its inner sandbox off: agentbox is the sandbox).
      const profileArgs = (parse(readFileSync(join(ROOT, 'profiles', 'agents', `${PROFILE[agent]}.yaml`), 'utf8')) as { agent: { command: string[] } }).agent.command.slice(1);
      const cmd = [installed.get(agent)!, ...profileArgs, ...(what === '--version' ? ['--version'] : PROMPT[agent])];
      const out = join(base, `learned-${agent}-${what.replace(/-/g, '')}.yaml`);
      const l = await run(['learn', testCopy(agent), '--home', h, '--out', out, '--', ...cmd], h);
      expect(l.exitCode, l.stderr).toBe(0);
      const text = readFileSync(out, 'utf8');
      expect(text).toMatch(/^# Proposed by `agentbox learn`/);
      // Every grant carries what used it.
      const caps = (parse(text) as { capabilities: string[] }).capabilities;
      // --version may use nothing of the home; a prompt at least reaches the API.
      if (what === 'prompt') expect(caps.length).toBeGreaterThan(0);
      const lines = text.split('\n');
      for (const c of caps) expect(lines[lines.findIndex((x) => x.trim() === `- ${c}`) - 1], c).toMatch(/^\s+# /);
      if (what === 'prompt') expect(caps).toContain(`net:connect:127.0.0.1:${api.port}`);
      expect((await execa(process.execPath, [BIN, 'validate', out, '--home', h], { reject: false })).exitCode).toBe(0);
      const d = await execa(process.execPath, [BIN, 'describe', out, '--home', h], { reject: false });
      expect(d.stdout).toMatch(/It may:[\s\S]*It may not:/);
      const r = await run(['launch', out, '--home', h, '--', ...cmd], h);
      expect(r.exitCode, r.stderr).toBe(0);
      if (what === 'prompt') expect(r.stdout).toContain(ANSWER);
      const session = /session (\S+) ended/.exec(r.stderr)![1];
      const entries = readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((x) => JSON.parse(x) as { session: string; action: string; reason: string });
      const denials = entries.filter((e) => e.session === session && ['fs.denied', 'syscall.denied', 'denials.summary'].includes(e.action));
      if (agent !== 'gemini') {
        expect(denials.map((e) => e.reason)).toEqual([]);
        expect(r.stderr).not.toMatch(/denied:/);
      } else {
        // Gemini lists each folder above its package (a walk up from lib/node_modules): outside
        // the home, in this cache's prefix. A listing cannot be granted alone (a folder's
        // read grant covers everything under it), so the proposal says so and those stay
        // refused; nothing else is.
        const pkg = installed.get(agent)!.replace(/\/bin\/gemini$/, '');
        const listed = denials.filter((e) => e.action === 'fs.denied');
        for (const e of listed) expect(e.reason).toMatch(new RegExp(`^list ${pkg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(/lib)? \\(no grant covers`));
        expect(text).toMatch(/a folder cannot be granted for listing alone/);
        expect(denials.filter((e) => e.action === 'syscall.denied')).toEqual([]);
      }
    }, 300_000);
  }
});
