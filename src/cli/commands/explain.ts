/**
 * `agentbox explain AGENT|FILE REQUEST`: allowed or denied, and which rule decided.
 * Exit 0 when allowed, 1 when denied, 2 for a malformed request.
 */
import type { Command } from 'commander';
import { AgentboxError } from '../../errors.js';
import { decide } from '../../model/decide.js';
import { manifestOptionsHelp, type ManifestOptions } from '../context.js';
import { loadModel } from '../../actions/load.js';
import type { Io } from '../io.js';

export async function explainCommand(arg: string, request: string, opts: ManifestOptions, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const r = decide(model, request);
  if (!r.ok) throw new AgentboxError('USAGE', `request ${JSON.stringify(request)}: ${r.message}`, { details: ['a request is written like a grant: fs:read:PATH, fs:write:PATH, net:connect:HOST:PORT or exec:PATH'] });
  const d = r.value;
  if (io.json) io.data({ request: d.request, decision: d.decision, reason: d.reason, rule: d.rule ?? null });
  else io.out(`${d.decision === 'allow' ? io.style.green('allowed') : io.style.red('denied')}  ${d.request}\n  ${d.reason}`);
  return d.decision === 'allow' ? 0 : 1;
}

export function registerExplain(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('explain')
    .description('decide one request against a manifest and name the rule that decided (exit 0 allowed, 1 denied)')
    .argument('<agent|file>', 'shipped agent profile name or manifest file')
    .argument('<request>', 'fs:read:PATH, fs:write:PATH, net:connect:HOST:PORT or exec:PATH')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--home <dir>', manifestOptionsHelp.home)
    .addHelpText('after', `
Examples:
  agentbox explain cowork fs:read:~/Documents/Receipts/march.pdf
  agentbox explain cowork fs:read:~/.ssh/id_ed25519
  agentbox explain ./agent.yaml net:connect:api.anthropic.com:443 --json`)
    .action((arg: string, request: string, opts: ManifestOptions) => run((io) => explainCommand(arg, request, opts, io)));
}
