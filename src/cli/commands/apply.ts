/**
 * `agentbox apply AGENT|FILE|DIR`: install the Linux controls on this host.
 * DIR is a `generate` output: its plan.json hashes are checked before anything runs.
 */
import type { Command } from 'commander';
import { manifestOptionsHelp } from '../context.js';
import { APPLY_CONTROLS, applyControls, type ApplyOptions } from '../../actions/apply.js';
import type { Io } from '../io.js';

export type ApplyCliOptions = ApplyOptions;

export async function applyCommand(arg: string, opts: ApplyCliOptions, io: Io): Promise<number> {
  const { agent, reports } = await applyControls(arg, opts, io, (line) => (opts.dryRun && !io.json ? io.out(line) : io.info(line)));
  for (const r of reports.filter((x) => x.status === 'skipped')) io.warn(`${r.control} not enforced: ${r.note ?? ''}`);
  if (io.json) io.data({ agent, root: opts.root, dryRun: Boolean(opts.dryRun), steps: reports });
  else if (!opts.dryRun) {
    const changed = reports.filter((r) => r.status === 'done').length;
    io.out(changed === 0 ? `agentbox-${agent}: already applied, nothing changed` : `agentbox-${agent}: applied (${changed} step${changed === 1 ? '' : 's'} changed)`);
  }
  return 0;
}

export function registerApply(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('apply')
    .description('install the Linux controls for an agent on this host (account, unit, AppArmor, firewall), rolling back on failure')
    .argument('<agent|file|dir>', 'shipped agent profile, manifest file, or a directory written by agentbox generate')
    .option('--dry-run', 'print each command and change nothing')
    .option('--root <dir>', 'install files and the account under this root (an image or container rootfs)', '/')
    .option('--offline', 'install files only; load nothing into the running kernel or systemd')
    .option('--firewall <tool>', 'load the rules with iptables or nft', 'iptables')
    .option('--allow-missing <controls>', `accept leaving these unenforced when the host lacks them: ${APPLY_CONTROLS.join(', ')}`)
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--home <dir>', manifestOptionsHelp.home)
    .option('--for-user <name>', manifestOptionsHelp.forUser)
    .addHelpText('after', `
Exit 4 (nothing changed) when a control the agent needs cannot be enforced here,
unless that control is named in --allow-missing. Applying twice changes nothing.

Examples:
  agentbox apply cowork --dry-run
  agentbox generate cowork --out dist/ && agentbox apply dist/
  agentbox apply cowork --root /srv/images/desktop --offline --for-user alice
  agentbox apply cowork --allow-missing apparmor     # kernel without the AppArmor LSM`)
    .action((arg: string, opts: ApplyCliOptions) => run((io) => applyCommand(arg, opts, io)));
}
