/**
 * `agentbox generate AGENT|FILE --target linux --out DIR`: the artifacts an MDM ships,
 * plus DIR/plan.json (every artifact, its sha256 and what it enforces).
 */
import type { Command } from 'commander';
import { AgentboxError } from '../../errors.js';
import { generateTo } from '../../actions/generate.js';
import { TARGETS, type Target } from '../../plan/plan.js';
import { manifestOptionsHelp } from '../context.js';
import { loadServiceModel, type ServiceManifestOptions } from '../../actions/load.js';
import type { Io } from '../io.js';

/** Targets whose generators exist in this version. */
export const AVAILABLE_TARGETS: readonly Target[] = ['linux', 'windows', 'macos'];

export function parseTargets(value: string): Target[] {
  const wanted = value === 'all' ? [...TARGETS] : value.split(',').map((s) => s.trim());
  for (const t of wanted) {
    if (!(TARGETS as readonly string[]).includes(t)) {
      throw new AgentboxError('USAGE', `--target ${t}: unknown target`, { details: [`valid targets: ${TARGETS.join(', ')}, all`] });
    }
  }
  return wanted as Target[];
}

export interface GenerateOptions extends ServiceManifestOptions {
  target: string;
  out: string;
  bundle?: string;
}

export async function generateCommand(arg: string, opts: GenerateOptions, io: Io): Promise<number> {
  const targets = parseTargets(opts.target);
  const missing = targets.filter((t) => !AVAILABLE_TARGETS.includes(t));
  if (missing.length > 0 && opts.target !== 'all') {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `--target ${missing.join(',')}: this version of agentbox does not generate ${missing.join(' or ')} controls yet`, {
      details: [`available targets: ${AVAILABLE_TARGETS.join(', ')}`],
    });
  }
  if (missing.length > 0) io.warn(`not generated: ${missing.join(', ')} (not available in this version); generating ${AVAILABLE_TARGETS.join(', ')}`);
  const { model } = loadServiceModel(arg, opts, io);
  const sessionOnly = [model.egress.consent && 'egress.consent', model.egress.dlp && 'egress.dlp', model.egress.maxUploadBytes !== undefined && 'egress.maxUploadBytes'].filter(Boolean);
  if (sessionOnly.length > 0) {
    io.warn(`${sessionOnly.join(', ')}: enforced by the egress proxy of agentbox launch sessions; the generated OS controls do not carry them (hosts outside the grants stay blocked)`);
  }
  const bundles = (opts.bundle ?? '').split(',').map((b) => b.trim()).filter(Boolean);
  for (const b of bundles) if (b !== 'intune' && b !== 'jamf') throw new AgentboxError('USAGE', `--bundle ${b}: use intune or jamf`);
  const needs: Record<string, Target> = { intune: 'windows', jamf: 'macos' };
  for (const b of bundles) if (!targets.includes(needs[b]!)) throw new AgentboxError('USAGE', `--bundle ${b} needs --target ${needs[b]} (or all)`);
  const { artifacts, planJson: json } = generateTo(model, targets.filter((t) => AVAILABLE_TARGETS.includes(t)), bundles as ('intune' | 'jamf')[], opts.out);
  if (io.json) io.data(JSON.parse(json));
  else {
    io.out(`wrote ${artifacts.length + 1} files to ${opts.out}`);
    for (const a of artifacts) io.out(`  ${a.path}  ${io.style.dim(a.sha256.slice(0, 12))}  ${a.control}, enforces ${a.enforces.length} rule${a.enforces.length === 1 ? '' : 's'}`);
    io.out(`  plan.json`);
  }
  return 0;
}

export function registerGenerate(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('generate')
    .description('write the OS controls for an agent (systemd unit, AppArmor profile, iptables/nft rules) and plan.json')
    .argument('<agent|file>', 'shipped agent profile name or manifest file')
    .requiredOption('--out <dir>', 'output directory (created if missing)')
    .option('--target <targets>', 'linux, windows, macos or all (comma-separated)', 'linux')
    .option('--bundle <kinds>', 'also write MDM bundles: intune (with --target windows), jamf (with --target macos)')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--home <dir>', manifestOptionsHelp.home)
    .option('--for-user <name>', manifestOptionsHelp.forUser)
    .addHelpText('after', `
Output is deterministic: the same manifest, presets and home give the same bytes.

Examples:
  agentbox generate cowork --target linux --out dist/
  agentbox generate cowork --target windows --bundle intune --out dist/
  agentbox generate cowork --target macos --bundle jamf --out dist/
  agentbox generate cowork --profile viewer --out dist/ --home /home/alice
  agentbox generate ./agent.yaml --out dist/ --json | jq '.artifacts[] | {path, sha256}'`)
    .action((arg: string, opts: GenerateOptions) => run((io) => generateCommand(arg, opts, io)));
}
