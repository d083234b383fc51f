/**
 * `agentbox validate FILE...`: exit 0 when every manifest is valid, 2 otherwise.
 */
import type { Command } from 'commander';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { AgentboxError } from '../../errors.js';
import { formatDiagnostic, type Diagnostic } from '../../manifest/diagnostics.js';
import { loadManifest, loadPresetFile, peekKind } from '../../manifest/load.js';
import { readManifestArg, readPresets } from '../../host/files.js';
import { hostResolver } from '../../host/resolver.js';
import type { Io } from '../io.js';

interface Result {
  file: string;
  valid: boolean;
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

export async function validateCommand(args: string[], opts: { home?: string; profile?: string }, io: Io): Promise<number> {
  const home = opts.home ? resolve(opts.home) : homedir();
  const presets = readPresets();
  const results: Result[] = [];
  for (const arg of args) {
    let src;
    try {
      src = readManifestArg(arg);
    } catch (e) {
      if (!(e instanceof AgentboxError)) throw e;
      results.push({ file: arg, valid: false, errors: [{ severity: 'error', file: arg, pointer: '', line: undefined, column: undefined, message: e.message }], warnings: [] });
      continue;
    }
    const ctx = { presets, home, resolver: hostResolver, ...(opts.profile ? { profileOverride: opts.profile.split(',') } : {}) };
    const r = peekKind(src.text) === 'Preset' ? loadPresetFile(src, ctx) : loadManifest(src, ctx);
    results.push({ file: src.file, valid: r.errors.length === 0, errors: r.errors, warnings: r.warnings });
  }
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
