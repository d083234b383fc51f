/**
 * The real agent CLIs from npm, pinned, installed once per cache by the global setup
 * with `npm install -g --prefix CACHE/NAME` (install scripts allowed, as a user's
 * install runs them), so each `bin/NAME` is npm's symlink into its package, the shape
 * every global install has. Kept between runs.
 */
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const AGENTS_CACHE = process.env.AGENTBOX_AGENTS_CACHE ?? join(process.env.AGENTBOX_TEST_CACHE ?? '/var/cache/agentbox-test', 'agents');
export const PINNED = { claude: '@anthropic-ai/claude-code@2.1.332', codex: '@openai/codex@0.171.0', gemini: '@google/gemini-cli@0.61.0' } as const;
export type Agent = keyof typeof PINNED;

/** Where the agent's `bin/NAME` link is once installed. */
export function agentBin(agent: Agent): string {
  return join(AGENTS_CACHE, PINNED[agent].replace(/[@/]/g, '_'), 'bin', agent);
}

/** Installs one pinned package into its own prefix in the cache; throws saying why when npm fails. */
export async function installAgent(agent: Agent): Promise<string> {
  const bin = agentBin(agent);
  if (existsSync(bin)) return bin;
  const prefix = join(bin, '..', '..');
  mkdirSync(AGENTS_CACHE, { recursive: true });
  rmSync(prefix, { recursive: true, force: true });
  const r = await execa('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--allow-scripts=@anthropic-ai/claude-code,@github/keytar,node-pty', PINNED[agent]], { reject: false, all: true });
  if (r.exitCode !== 0 || !existsSync(bin)) throw new Error(`npm install ${PINNED[agent]} failed (exit ${r.exitCode}):\n${String(r.all).slice(-800)}`);
  chmodSync(AGENTS_CACHE, 0o755);
  return bin;
}
