/**
 * `agentbox doctor`: what this host can enforce, what is missing, how to install it.
 */
import type { Command } from 'commander';
import { doctor } from '../../actions/doctor.js';
import { hostCheck } from '../../actions/access.js';
import type { Io } from '../io.js';

/** What an account other than root cannot do here, whatever the probes say. */
export const NOT_ROOT = [
  'apply cgroup limits: a manifest with limits.memory, limits.pids or limits.cpus fails closed (exit 4)',
  'give writable grants (fs:write) their overlay: such a manifest fails closed',
  'run the container and micro-VM runtimes',
  'run the agent as agent.uid: it runs as you, and the grants are checked as you',
];

export async function doctorCommand(agent: string | undefined, opts: { home?: string; profile?: string }, io: Io): Promise<number> {
  const { host, probes, runtimes } = await doctor();
  const check = agent ? hostCheck(agent, opts, false, io) : undefined;
  const limits = host.root ? [] : NOT_ROOT;
  if (io.json) {
    io.data({ host, probes, runtimes, notAsThisUser: limits, ...(check ? { access: check } : {}) });
    return check && check.problems.length > 0 ? 4 : 0;
  }
  io.out(`${host.os}, kernel ${host.kernel} (${host.arch}), ${host.cpus} cores, ${(host.memoryBytes / 1024 ** 3).toFixed(1)} GiB${host.root ? ', running as root' : ''}`);
  io.out('');
  const width = Math.max(...probes.map((p) => p.name.length));
  for (const p of probes) {
    const mark = p.available ? io.style.green('ok     ') : io.style.yellow('missing');
    io.out(`${mark}  ${p.name.padEnd(width)}  ${p.detail}`);
    if (!p.available && p.hint) io.out(`         ${' '.repeat(width)}  ${io.style.dim(`→ ${p.hint}`)}`);
  }
  io.out('');
  for (const r of runtimes) {
    const partly = r.ready && !host.root && r.name.startsWith('process');
    io.out(`${partly ? io.style.yellow('partly ') : r.ready ? io.style.green('ready  ') : io.style.yellow('not yet')}  ${r.name}: ${r.why}${partly ? '; without root: no limits and no writable grants' : ''}`);
  }
  if (limits.length > 0) {
    io.out('');
    io.out(`As uid ${process.getuid?.()} (not root), agentbox cannot:`);
    for (const l of limits) io.out(`  - ${l}`);
  }
  if (check) {
    io.out('');
    io.out(`${check.problems.length === 0 ? io.style.green('ok     ') : io.style.red('cannot ')}  ${check.agent}: grants checked as ${check.as}`);
    for (const p of check.problems) io.out(`         ${p.message}`);
    for (const m of check.missing) io.out(`         ${m.message}`);
  }
  return check && check.problems.length > 0 ? 4 : 0;
}

export function registerDoctor(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('doctor')
    .description('report what this host can enforce, what is missing and how to install it; with AGENT, whether the agent\'s uid can use its grants')
    .argument('[agent]', 'an agent profile or manifest: check its grants as the uid it would run as')
    .option('--home <dir>', 'home directory that ~ means (default: yours)')
    .option('--profile <presets>', 'as if run under these presets (comma-separated)')
    .addHelpText('after', `
Exit codes: 0; 4 when AGENT is given and its uid cannot use one of its grants.

Examples:
  agentbox doctor
  sudo agentbox doctor claude-code
  agentbox doctor --json | jq '.probes[] | select(.available | not) | .name'`)
    .action((agent: string | undefined, opts) => run((io) => doctorCommand(agent, opts, io)));
}
