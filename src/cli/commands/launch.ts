/**
 * `agentbox launch AGENT|FILE [-- CMD...]`: run the agent inside the box. stdin,
 * stdout and stderr are the agent's; the exit code is the agent's (125/126/127 for
 * agentbox's own failure, not executable, not found; 4 when the box cannot be built).
 */
import type { Command } from 'commander';
import { dockerRunArgs } from '../../box/container.js';
import { shellLine } from '../../escape/shell.js';
import { termSafe } from '../../escape/terminal.js';
import { showPath } from '../../model/describe.js';
import type { Model } from '../../model/types.js';
import { launch, prepareLaunch, type DryRun, type LaunchRequest, type LaunchResult } from '../../actions/launch.js';
import { loadModel } from '../../actions/load.js';
import { manifestOptionsHelp, type ManifestOptions } from '../context.js';
import type { Io } from '../io.js';

export interface LaunchCliOptions extends ManifestOptions {
  runtime?: string;
  dryRun?: boolean;
  verbose?: boolean;
  observe?: boolean;
  diff?: boolean;
  token?: string;
  policy?: string;
  isolation?: string;
  env?: string[];
  envFile?: string[];
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export async function launchCommand(arg: string, cmd: string[], opts: LaunchCliOptions, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const req: LaunchRequest = {
    manifest: arg,
    command: cmd,
    ...(opts.runtime !== undefined ? { runtime: opts.runtime } : {}),
    ...(opts.isolation !== undefined ? { isolation: opts.isolation } : {}),
    dryRun: Boolean(opts.dryRun),
    verbose: Boolean(opts.verbose),
    observe: opts.observe !== false,
    ...(opts.token ? { token: opts.token } : {}),
    ...(opts.policy !== undefined ? { policyDir: opts.policy } : {}),
    ...(opts.env?.length ? { env: opts.env } : {}),
    ...(opts.envFile?.length ? { envFiles: opts.envFile } : {}),
    tty: Boolean(process.stdin.isTTY && process.stderr.isTTY),
    pty: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  };
  const prepared = await prepareLaunch(model, req, io);
  const outcome = await launch(prepared, req, io);
  if ('dryRun' in outcome) {
    printDryRun(prepared.model, outcome.dryRun, io);
    return 0;
  }
  io.info(summaryLines(outcome.result, model.home, model.runtime.snapshot, Boolean(opts.diff)).join('\n'));
  // --json: the session's result on stdout, after whatever the agent printed there.
  if (io.json) io.data(outcome.result);
  return outcome.result.exitCode;
}

/** The box a dry run would build, as a command line (and in full with --json). */
function printDryRun(model: Model, d: DryRun, io: Io): void {
  if (d.runtime === 'microvm') {
    const config = d.plan.config.toString('utf8').split('\0').slice(0, -1);
    if (io.json) io.data({ ...d.plan, config });
    else {
      io.out(`# ${model.name}: the micro-VM agentbox would boot (nothing was started)`);
      io.out(shellLine(d.plan.argv, ' \\\n  '));
      io.out(`# guest configuration (/ctl/config): ${config.map((x) => JSON.stringify(x)).join(' ')}`);
    }
  } else if (d.runtime === 'container') {
    if (io.json) io.data(d.plan);
    else {
      io.out(`# ${model.name}: the container agentbox would create (nothing was started); seccomp profile inline in --json`);
      io.out(shellLine(dockerRunArgs(d.plan, 'SECCOMP.json'), ' \\\n  '));
      io.out(`# writable grants as layers: ${d.plan.layers.map((o) => o.path).join(', ') || 'none'}; snapshot: ${model.runtime.snapshot}`);
    }
  } else {
    if (io.json) io.data(d.plan);
    else {
      io.out(`# ${model.name}: the box agentbox would build (nothing was started)`);
      io.out(shellLine(d.plan.argv, ' \\\n  '));
      io.out(`# environment: ${d.plan.env.map(([k]) => k).join(' ')}`);
      io.out(`# writable grants as layers: ${d.plan.layers.map((o) => o.path).join(', ') || 'none'}; snapshot: ${model.runtime.snapshot}`);
    }
  }
}

/** The end-of-session summary. Every agent-controlled value (file names, hosts) is escaped for the terminal. */
export function summaryLines(r: LaunchResult, home: string, snapshot: string, diff: boolean): string[] {
  const denied = Object.entries(r.egress.denied);
  const lines = [`agentbox: session ${r.session} ${r.endReason === 'exited' ? 'ended' : `ended (${termSafe(r.endReason)})`} with exit code ${r.exitCode}`];
  if (r.egress.allowed > 0 || denied.length > 0) {
    lines.push(`  egress: ${r.egress.allowed} allowed, ${denied.reduce((n, [, c]) => n + c, 0)} denied${denied.length ? ` (${denied.map(([h, c]) => `${termSafe(h)} ×${c}`).join(', ')})` : ''}`);
  }
  if (r.observed) {
    const f = r.observed.files;
    if (f.files > 0) lines.push(`  files: ${f.files} touched (${f.reads} reads, ${f.writes} writes, ${f.execs} runs); per path in the audit log`);
    const shown = r.observed.denials.slice(0, 10);
    for (const d of shown) lines.push(`  denied: ${d.verb} ${termSafe(d.access === 'syscall' ? d.what : showPath(d.what, home))} ×${d.count} (${termSafe(d.rule)})`);
    const more = r.observed.denials.length - shown.length;
    if (more > 0) lines.push(`  … ${more} more denials (agentbox audit show --session ${r.session})`);
  }
  for (const t of r.monitorTrips ?? []) lines.push(`  monitor: rule ${termSafe(t.rule)} tripped (${t.action === 'quarantine' ? 'quarantined' : 'egress cut'})`);
  if (r.changes.length > 0) {
    const verb = snapshot === 'persist' ? (r.committed === false ? 'NOT committed (kept aside; see the audit log)' : 'kept') : 'reverted';
    lines.push(`  ${r.changes.length} change${r.changes.length === 1 ? '' : 's'} ${verb}${diff || r.changes.length <= 5 ? ':' : ` (--diff lists them)`}`);
    if (diff || r.changes.length <= 5) for (const c of r.changes) lines.push(`    ${c.kind.padEnd(8)} ${termSafe(showPath(c.path, home))}`);
  }
  return lines;
}

export function registerLaunch(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('launch')
    .description('run an agent inside the box: only granted paths, only allowlisted hosts, reverted on exit')
    .argument('<agent|file>', 'shipped agent profile name or manifest file')
    .argument('[cmd...]', 'a command that replaces agent.command: everything from the first argument after the agent name (or after --) is the command\'s, not agentbox\'s')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--runtime <kind>', 'process (bubblewrap), container (Docker Engine; agentbox image build first), microvm (QEMU; agentbox image build --microvm first); default: runtime.kind')
    .option('--isolation <kind>', 'container runtime: runc or gvisor (runsc); default: runtime.isolation')
    .option('--dry-run', 'print the box that would be built and run nothing')
    .option('--verbose', 'show each denied connection, file access and system call as it happens')
    .option('--no-observe', 'do not watch the box through the kernel (file activity, Landlock/seccomp/file-call denials); recorded in the launch entry; refused when the manifest has monitor rules')
    .option('--diff', 'list every change the agent made when the session ends')
    .option('--token <file>', 'run with exactly this capability token\'s scopes (refused with exit 3 if expired, revoked or forged)')
    .option('--policy <dir>', `organisation Cedar policies: every grant is checked first (exit 3 if one is forbidden) and each connection at run time (default: $AGENTBOX_POLICY)`)
    .option('--home <dir>', manifestOptionsHelp.home)
    .option('--env <NAME=VALUE>', 'add a variable to the agent\'s environment for this session (repeatable; audited by name, never by value)', collect)
    .option('--env-file <file>', 'add NAME=VALUE lines from a file (# comments; repeatable; --env wins)', collect)
    .addHelpText('after', `
With --json, the session's result (id, exit code, end reason, egress counts, changes) is
printed on stdout as JSON when the session ends.

The exit code is the agent's; 3 when organisation policy forbids a grant; 4 when this
host cannot build the box (nothing runs).

Hosts marked egress.consent: ask are held while a person answers: on this terminal,
or from another with agentbox approvals / approve ID --once|--session / deny ID.

Examples:
  agentbox launch shell
  agentbox launch shell ls -la ~/Documents
  agentbox launch cowork --profile viewer --dry-run
  agentbox launch ./agent.yaml --verbose -- python3 agent.py --task receipts
  agentbox launch cowork --policy /etc/agentbox/policy
  agentbox launch claude-code --env-file ~/.config/agentbox/claude.env
  agentbox --json launch shell true | tail -1 | jq .exitCode`)
    .action((arg: string, cmd: string[], opts: LaunchCliOptions) => run((io) => launchCommand(arg, cmd, opts, io)));
}
