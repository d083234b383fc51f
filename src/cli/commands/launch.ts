/**
 * `agentbox launch AGENT|FILE [-- CMD...]`: run the agent inside the box. stdin,
 * stdout and stderr are the agent's; the exit code is the agent's (125/126/127 for
 * agentbox's own failure, not executable, not found; 4 when the box cannot be built).
 */
import type { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AgentboxError } from '../../errors.js';
import { launchProcess, type LaunchResult } from '../../runtimes/process/runtime.js';
import type { LaunchPlan } from '../../box/bwrap.js';
import { dockerRunArgs, type ContainerPlan } from '../../box/container.js';
import type { MicrovmPlan } from '../../box/microvm.js';
import { stateDir } from '../../session/state.js';
import { packageRoot } from '../../host/files.js';
import { whichSync } from '../../host/which.js';
import { shellLine } from '../../generate/escape/shell.js';
import { termSafe } from '../../generate/escape/terminal.js';
import { spawnReaper } from '../../session/reaper.js';
import { showPath } from '../../model/describe.js';
import { checkToken, intersect, readRevoked } from '../../tokens/token.js';
import { readTokenArg } from './incident.js';
import { AuditSink, deviceKey } from '../../audit/sink.js';
import { EnvVar } from '../../env.js';
import type { Authorizer } from '../../policy/verdict.js';
import type { Labels } from '../../policy/entities.js';
import { loadModel, manifestOptionsHelp, type ManifestOptions } from '../context.js';
import type { Io } from '../io.js';

export interface LaunchCliOptions extends ManifestOptions {
  runtime?: string;
  dryRun?: boolean;
  verbose?: boolean;
  diff?: boolean;
  token?: string;
  policy?: string;
  isolation?: string;
}

/** The landlock-exec helper, when it is built and the kernel has Landlock. */
export async function landlockHelper(): Promise<string | undefined> {
  const helper = join(packageRoot(), 'dist', 'native', 'landlock-exec');
  if (!existsSync(helper)) return undefined;
  const r = spawnSync(helper, ['--abi'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return r.status === 0 && Number(r.stdout.trim()) > 0 ? helper : undefined;
}

export async function launchCommand(arg: string, cmd: string[], opts: LaunchCliOptions, io: Io): Promise<number> {
  const loaded = loadModel(arg, opts, io);
  let model = loaded.model;
  let tokenExp: number | null | undefined;
  if (opts.token) {
    // The session runs with exactly the token's scopes intersected with the manifest.
    const state = stateDir();
    const check = await checkToken(readTokenArg(opts.token), deviceKey(state).publicKey, readRevoked(state));
    if (!check.ok) throw new AgentboxError('DENIED', `--token refused: ${check.reason}`);
    if (check.claims.sub !== model.name) throw new AgentboxError('DENIED', `--token refused: it was minted for agent ${check.claims.sub}, not ${model.name}`);
    const narrowed = intersect(model, check.claims.scopes);
    for (const d of narrowed.dropped) io.warn(`${d}: not in the token's scopes; not granted`);
    model = narrowed.model;
    tokenExp = check.claims.exp;
  }
  // Organisation policy: every effective grant is checked before anything starts; the
  // proxy then consults the same policies per connection.
  const policyDir = opts.policy ?? process.env[EnvVar.policyDir];
  let policy: { engine: Authorizer; labels: Labels; dir: string } | undefined;
  if (policyDir) {
    // Loaded only here: Cedar and the policy readers stay out of a plain launch's start-up.
    const { checkAgainst, forbiddenLines } = await import('./policy.js');
    const { check, engine, policy: dir } = checkAgainst(model, policyDir);
    if (check.forbidden.length > 0) {
      const lines = forbiddenLines(check);
      new AuditSink(stateDir()).append({ session: '-', agent: model.name, action: 'policy.launch-refused', resource: model.origin.file, decision: 'deny', reason: `${check.forbidden.length} grant${check.forbidden.length === 1 ? '' : 's'} forbidden by organisation policy`, details: { policyDir: dir.dir, forbidden: check.forbidden.map((r) => ({ request: r.request.text, pointer: r.request.source?.pointer ?? null, policies: r.verdict.forbiddenBy.map((p) => p.id), errors: r.verdict.errors })) } });
      throw new AgentboxError('DENIED', `${model.name} was not launched: organisation policy (${dir.dir}) forbids ${check.forbidden.length} of its grants and settings; nothing was started`, { details: [...lines, `check it with: agentbox policy check ${arg} --policy ${dir.dir}`] });
    }
    policy = { engine, labels: dir.labels, dir: dir.dir };
  }
  const runtime = opts.runtime ?? model.runtime.kind;
  if (!['process', 'container', 'microvm'].includes(runtime)) throw new AgentboxError('USAGE', `--runtime ${runtime}: valid runtimes are process, container, microvm`);
  if (opts.isolation && !['runc', 'gvisor'].includes(opts.isolation)) throw new AgentboxError('USAGE', `--isolation ${opts.isolation}: valid isolations are runc, gvisor (container runtime)`);
  if (opts.isolation && runtime !== 'container') throw new AgentboxError('USAGE', '--isolation applies to the container runtime only (--runtime container)');
  const command = cmd.length > 0 ? cmd : model.agent.command;
  if (runtime === 'process' && cmd.length > 0 && !cmd[0]!.startsWith('/')) {
    const found = cmd[0]!.includes('/') ? undefined : whichSync(cmd[0]!);
    if (!found) throw new AgentboxError('USAGE', `${cmd[0]}: command not found`, { exitCode: 127 });
    command[0] = found;
  }
  const launch = runtime === 'container' ? (await import('../../runtimes/container/runtime.js')).launchContainer : runtime === 'microvm' ? (await import('../../runtimes/microvm/runtime.js')).launchMicrovm : launchProcess;
  const result = await launch(model, {
    ...(opts.isolation ? { isolation: opts.isolation as 'runc' | 'gvisor' } : {}),
    command,
    state: stateDir(),
    dryRun: Boolean(opts.dryRun),
    verbose: Boolean(opts.verbose),
    diff: Boolean(opts.diff),
    landlockHelper: await landlockHelper(),
    log: (l) => io.info(l),
    ...(tokenExp !== undefined ? { tokenExp } : {}),
    ...(policy ? { policy } : {}),
    tty: Boolean(process.stdin.isTTY && process.stderr.isTTY),
    spawnReaper,
  });
  if ('qmpSocket' in result) {
    const plan = result as MicrovmPlan;
    if (io.json) io.data({ ...plan, config: plan.config.toString('utf8').split('\0').slice(0, -1) });
    else {
      io.out(`# ${model.name}: the micro-VM agentbox would boot (nothing was started)`);
      io.out(shellLine(plan.argv, ' \\\n  '));
      io.out(`# guest configuration (/ctl/config): ${plan.config.toString('utf8').split('\0').slice(0, -1).map((x) => JSON.stringify(x)).join(' ')}`);
    }
    return 0;
  }
  if ('create' in result) {
    const plan = result as ContainerPlan;
    if (io.json) io.data(plan);
    else {
      io.out(`# ${model.name}: the container agentbox would create (nothing was started); seccomp profile inline in --json`);
      io.out(shellLine(dockerRunArgs(plan, 'SECCOMP.json'), ' \\\n  '));
      io.out(`# writable grants as layers: ${plan.layers.map((o) => o.path).join(', ') || 'none'}; snapshot: ${model.runtime.snapshot}`);
    }
    return 0;
  }
  if ('argv' in result) {
    const plan = result as LaunchPlan;
    if (io.json) io.data(plan);
    else {
      io.out(`# ${model.name}: the box agentbox would build (nothing was started)`);
      io.out(shellLine(plan.argv, ' \\\n  '));
      io.out(`# environment: ${plan.env.map(([k]) => k).join(' ')}`);
      io.out(`# writable grants as layers: ${plan.layers.map((o) => o.path).join(', ') || 'none'}; snapshot: ${model.runtime.snapshot}`);
    }
    return 0;
  }
  summarise(result as LaunchResult, model.home, model.runtime.snapshot, Boolean(opts.diff), io);
  return (result as LaunchResult).exitCode;
}

/** The end-of-session summary. Every agent-controlled value (file names, hosts) is escaped for the terminal. */
export function summaryLines(r: LaunchResult, home: string, snapshot: string, diff: boolean): string[] {
  const denied = Object.entries(r.egress.denied);
  const lines = [`agentbox: session ${r.session} ${r.endReason === 'exited' ? 'ended' : `ended (${termSafe(r.endReason)})`} with exit code ${r.exitCode}`];
  if (r.egress.allowed > 0 || denied.length > 0) {
    lines.push(`  egress: ${r.egress.allowed} allowed, ${denied.reduce((n, [, c]) => n + c, 0)} denied${denied.length ? ` (${denied.map(([h, c]) => `${termSafe(h)} ×${c}`).join(', ')})` : ''}`);
  }
  if (r.changes.length > 0) {
    const verb = snapshot === 'persist' ? (r.committed === false ? 'NOT committed (kept aside; see the audit log)' : 'kept') : 'reverted';
    lines.push(`  ${r.changes.length} change${r.changes.length === 1 ? '' : 's'} ${verb}${diff || r.changes.length <= 5 ? ':' : ` (--diff lists them)`}`);
    if (diff || r.changes.length <= 5) for (const c of r.changes) lines.push(`    ${c.kind.padEnd(8)} ${termSafe(showPath(c.path, home))}`);
  }
  return lines;
}

function summarise(r: LaunchResult, home: string, snapshot: string, diff: boolean, io: Io): void {
  io.info(summaryLines(r, home, snapshot, diff).join('\n'));
}

export function registerLaunch(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('launch')
    .description('run an agent inside the box: only granted paths, only allowlisted hosts, reverted on exit')
    .argument('<agent|file>', 'shipped agent profile name or manifest file')
    .argument('[cmd...]', 'after --: a command that replaces agent.command')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--runtime <kind>', 'process (bubblewrap), container (Docker Engine; agentbox image build first), microvm (QEMU; agentbox image build --microvm first); default: runtime.kind')
    .option('--isolation <kind>', 'container runtime: runc or gvisor (runsc); default: runtime.isolation')
    .option('--dry-run', 'print the box that would be built and run nothing')
    .option('--verbose', 'show each denied connection as it happens')
    .option('--diff', 'list every change the agent made when the session ends')
    .option('--token <file>', 'run with exactly this capability token\'s scopes (refused with exit 3 if expired, revoked or forged)')
    .option('--policy <dir>', `organisation Cedar policies: every grant is checked first (exit 3 if one is forbidden) and each connection at run time (default: $AGENTBOX_POLICY)`)
    .option('--home <dir>', manifestOptionsHelp.home)
    .addHelpText('after', `
The exit code is the agent's; 3 when organisation policy forbids a grant; 4 when this
host cannot build the box (nothing runs).

Hosts marked egress.consent: ask are held while a person answers: on this terminal,
or from another with agentbox approvals / approve ID --once|--session / deny ID.

Examples:
  agentbox launch shell
  agentbox launch cowork --profile viewer --dry-run
  agentbox launch ./agent.yaml --verbose -- python3 agent.py --task receipts
  agentbox launch cowork --policy /etc/agentbox/policy`)
    .action((arg: string, cmd: string[], opts: LaunchCliOptions) => run((io) => launchCommand(arg, cmd, opts, io)));
}
