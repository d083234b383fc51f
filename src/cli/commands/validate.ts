/**
 * `agentbox validate FILE...`: exit 0 when every manifest is valid, 2 otherwise.
 */
import type { Command } from 'commander';
import { formatDiagnostic } from '../../manifest/diagnostics.js';
import { validateDocuments } from '../../actions/load.js';
import { hostCheck } from '../../actions/access.js';
import type { Io } from '../io.js';

export async function validateCommand(args: string[], opts: { home?: string; profile?: string; host?: boolean }, io: Io): Promise<number> {
  const results = validateDocuments(args, opts);
  // --host: each valid agent's grants, checked as agent.uid the way the systemd unit runs it.
  const host = opts.host ? results.filter((r) => r.valid && r.kind === 'Agent').map((r) => hostCheck(r.file, opts, true, io)) : [];
  const hostBad = host.some((h) => h.problems.length > 0);
  if (io.json) io.data(opts.host ? results.map((r) => ({ ...r, host: host.find((h) => h.file === r.file) ?? null })) : results);
  else {
    for (const r of results) {
      for (const w of r.warnings) io.warn(formatDiagnostic(w));
      if (r.valid) io.out(`${io.style.green('valid')}  ${r.file}`);
      else {
        io.out(`${io.style.red('invalid')}  ${r.file}`);
        for (const e of r.errors) io.info(`  ${formatDiagnostic(e)}`);
      }
      const h = host.find((x) => x.file === r.file);
      if (h) {
        io.out(`${h.problems.length === 0 ? io.style.green('host ok') : io.style.red('host   ')}  ${r.file}: checked as ${h.as}`);
        for (const p of h.problems) io.info(`  ${p.message}`);
        for (const m of h.missing) io.info(`  ${m.message}`);
      }
    }
  }
  if (!results.every((r) => r.valid)) return 2;
  return hostBad ? 4 : 0;
}

export function registerValidate(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('validate')
    .description('check manifests against the schema, the scope grammar and the preset ceilings (exit 0 valid, 2 invalid)')
    .argument('<manifest...>', 'manifest files (.yaml/.yml) or shipped agent profile names')
    .option('--profile <presets>', 'validate as if run under these presets (comma-separated)')
    .option('--home <dir>', 'home directory that ~ means (default: yours)')
    .option('--host', 'also check on this host that agent.uid can use every grant and enter every folder above it, as the generated systemd unit runs it (exit 4 if not, with the fix)')
    .addHelpText('after', `
Exit codes: 0 valid; 2 invalid; 4 (--host) the agent's uid cannot use a grant here.

Examples:
  agentbox validate my-agent.yaml
  sudo agentbox validate --host claude-code
  agentbox validate cowork --profile viewer
  agentbox validate --json a.yaml b.yaml | jq '.[] | select(.valid | not)'`)
    .action((args: string[], opts) => run((io) => validateCommand(args, opts, io)));
}
