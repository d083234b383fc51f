/**
 * `agentbox doctor`: what this host can enforce, what is missing, how to install it.
 */
import type { Command } from 'commander';
import { doctor } from '../../actions/doctor.js';
import type { Io } from '../io.js';

export async function doctorCommand(io: Io): Promise<number> {
  const { host, probes, runtimes } = await doctor();
  if (io.json) {
    io.data({ host, probes, runtimes });
    return 0;
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
  for (const r of runtimes) io.out(`${r.ready ? io.style.green('ready  ') : io.style.yellow('not yet')}  ${r.name}: ${r.why}`);
  return 0;
}

export function registerDoctor(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('doctor')
    .description('report what this host can enforce, what is missing and how to install it')
    .addHelpText('after', `
Examples:
  agentbox doctor
  agentbox doctor --json | jq '.probes[] | select(.available | not) | .name'`)
    .action(() => run((io) => doctorCommand(io)));
}
