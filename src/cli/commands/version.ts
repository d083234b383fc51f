/**
 * `agentbox version`: what a bug report needs first.
 */
import type { Command } from 'commander';
import { versionReport } from '../../actions/version.js';
import { termSafe } from '../../escape/terminal.js';
import type { Io } from '../io.js';

export async function versionCommand(io: Io): Promise<number> {
  const r = await versionReport();
  if (io.json) {
    io.data(r);
    return 0;
  }
  io.out(`agentbox ${r.version} (commit ${r.commit})`);
  io.out(`node     ${r.node}`);
  const w = Math.max(...r.engines.map((e) => e.name.length));
  for (const e of r.engines) io.out(`${e.name.padEnd(w)}  ${termSafe(e.version)}`);
  return 0;
}

export function registerVersion(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('version')
    .description('print agentbox\'s version and commit, Node\'s, and the runtime engines found on this host')
    .addHelpText('after', `
Examples:
  agentbox version
  agentbox version --json | jq -r .commit`)
    .action(() => run((io) => versionCommand(io)));
}
