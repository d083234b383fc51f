/**
 * `agentbox describe AGENT|FILE`: the plain-language consent text.
 */
import type { Command } from 'commander';
import { describeModel, describeText } from '../../model/describe.js';
import { manifestOptionsHelp, type ManifestOptions } from '../context.js';
import { loadModel } from '../../actions/load.js';
import type { Io } from '../io.js';

export async function describeCommand(arg: string, opts: ManifestOptions, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const d = describeModel(model);
  if (io.json) io.data(d);
  else io.out(describeText(d));
  return 0;
}

export function registerDescribe(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('describe')
    .description('say in plain language what an agent may and may not do, for how long (the consent text)')
    .argument('<agent|file>', 'shipped agent profile name or manifest file')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--home <dir>', manifestOptionsHelp.home)
    .addHelpText('after', `
Examples:
  agentbox describe cowork
  agentbox describe cowork --profile viewer
  agentbox describe ./my-agent.yaml --json`)
    .action((arg: string, opts: ManifestOptions) => run((io) => describeCommand(arg, opts, io)));
}
