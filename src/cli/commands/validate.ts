/**
 * `agentbox validate FILE...`: exit 0 when every manifest is valid, 2 otherwise.
 */
import type { Command } from 'commander';
import { formatDiagnostic } from '../../manifest/diagnostics.js';
import { validateDocuments } from '../../actions/load.js';
import type { Io } from '../io.js';

export async function validateCommand(args: string[], opts: { home?: string; profile?: string }, io: Io): Promise<number> {
  const results = validateDocuments(args, opts);
  if (io.json) io.data(results);
  else {
    for (const r of results) {
      for (const w of r.warnings) io.warn(formatDiagnostic(w));
      if (r.valid) io.out(`${io.style.green('valid')}  ${r.file}`);
      else {
        io.out(`${io.style.red('invalid')}  ${r.file}`);
        for (const e of r.errors) io.info(`  ${formatDiagnostic(e)}`);
      }
    }
  }
  return results.every((r) => r.valid) ? 0 : 2;
}

export function registerValidate(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('validate')
    .description('check manifests against the schema, the scope grammar and the preset ceilings (exit 0 valid, 2 invalid)')
    .argument('<manifest...>', 'manifest files (.yaml/.yml) or shipped agent profile names')
    .option('--profile <presets>', 'validate as if run under these presets (comma-separated)')
    .option('--home <dir>', 'home directory that ~ means (default: yours)')
    .addHelpText('after', `
Examples:
  agentbox validate my-agent.yaml
  agentbox validate cowork --profile viewer
  agentbox validate --json a.yaml b.yaml | jq '.[] | select(.valid | not)'`)
    .action((args: string[], opts) => run((io) => validateCommand(args, opts, io)));
}
