/**
 * `agentbox learn AGENT|FILE [-- CMD]`: run the agent in an observation box and write
 * the minimal manifest it used (actions/learn.ts).
 */
import type { Command } from 'commander';
import { termSafe } from '../../escape/terminal.js';
import { manifestOptionsHelp, type ManifestOptions } from '../context.js';
import { loadModel } from '../../actions/load.js';
import { learn, writeProposal } from '../../actions/learn.js';
import type { Io } from '../io.js';

interface LearnCliOptions extends ManifestOptions {
  out: string;
  verbose?: boolean;
  env?: string[];
  envFile?: string[];
  policy?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export async function learnCommand(arg: string, cmd: string[], opts: LearnCliOptions, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const r = await learn(model, {
    manifest: arg,
    command: cmd,
    verbose: Boolean(opts.verbose),
    ...(opts.policy !== undefined ? { policyDir: opts.policy } : {}),
    ...(opts.env?.length ? { env: opts.env } : {}),
    ...(opts.envFile?.length ? { envFiles: opts.envFile } : {}),
    tty: Boolean(process.stdin.isTTY && process.stderr.isTTY),
    pty: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  }, io);
  if (opts.out === '-') io.out(r.manifest.trimEnd());
  else writeProposal(opts.out, r.manifest);
  const o = r.result.observed!;
  if (io.json) io.data({ out: opts.out, session: r.session, exitCode: r.result.exitCode, grants: r.grants, files: o.files, denials: o.denials, changesDiscarded: r.result.changes.length });
  else {
    io.info(`agentbox: learn session ${r.session} ended with exit code ${r.result.exitCode}; ${r.result.changes.length} changes discarded`);
    io.info(`  used: ${o.files.files} files (${o.files.reads} reads, ${o.files.writes} writes), ${o.all?.programs.length ?? 0} programs`);
    for (const d of o.denials.slice(0, 10)) io.info(`  denied: ${d.verb} ${termSafe(d.what)} ×${d.count} (${termSafe(d.rule)})`);
    if (opts.out !== '-') io.info(`wrote ${termSafe(opts.out)}: ${r.grants} grants, each with what used it; check it with agentbox validate ${termSafe(opts.out)} and agentbox describe ${termSafe(opts.out)}`);
  }
  return 0;
}

export function registerLearn(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('learn')
    .description('run an agent in an observation box and write the minimal manifest of what it used, each grant commented')
    .argument('<agent|file>', 'shipped agent profile name or manifest file (its program, environment, presets and denies are kept)')
    .argument('[cmd...]', 'a command that replaces agent.command for this run (after --)')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--home <dir>', manifestOptionsHelp.home)
    .option('--out <file>', 'where to write the proposed manifest (- for stdout)', 'learned.yaml')
    .option('--verbose', 'show each denial as it happens')
    .option('--policy <dir>', 'organisation policy to check the observation box against')
    .option('--env <NAME=VALUE>', 'add a variable to the agent\'s environment for this run (repeatable)', collect)
    .option('--env-file <file>', 'add NAME=VALUE lines from a file', collect)
    .addHelpText('after', `
The observation box: the home read-only through a throw-away overlay (writes land in the
session's layer and are always discarded), the system's programs runnable and watched,
the network through agentbox's proxy to any host, every connection recorded. The
manifest's presets and denies still hold (~/.ssh stays hidden). Needs root (fanotify and
the kernel audit). The proposal keeps the rest of the manifest and replaces its
capabilities; what a run did not use is not proposed, so run what the agent will do.

Examples:
  agentbox learn claude-code -- claude -p "summarise ~/work/notes.md"
  agentbox learn ./my-agent.yaml --out my-agent.learned.yaml
  agentbox validate my-agent.learned.yaml && agentbox describe my-agent.learned.yaml`)
    .action((arg: string, cmd: string[], opts: LearnCliOptions) => run((io) => learnCommand(arg, cmd, opts, io)));
}
