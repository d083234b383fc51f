/**
 * `launch`: everything between a loaded model and a running session.
 *
 * prepareLaunch: the token narrows the model, organisation policy checks every grant
 * (refused with exit 3 and audited), the runtime is chosen and the command resolved.
 * launch: the runtime builds the box (a dry run stops at its plan), and the session
 * runs it to the end.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AgentboxError } from '../errors.js';
import { policyDir as envPolicyDir } from '../env.js';
import type { Model, RuntimeKind } from '../model/types.js';
import { isWithin } from '../model/paths.js';
import type { LaunchPlan } from '../box/bwrap.js';
import type { ContainerPlan } from '../box/container.js';
import type { MicrovmPlan } from '../box/microvm.js';
import type { Labels } from '../policy/entities.js';
import type { Authorizer } from '../policy/verdict.js';
import { AuditSink } from '../audit/sink.js';
import { packageRoot } from '../host/files.js';
import { hostPrograms } from '../host/programs.js';
import { parseEnvArgs } from '../manifest/env-args.js';
import { checkAccess, programReach } from '../host/access.js';
import { BOX_PATH, resolveProgram } from '../manifest/program.js';
import { programGrants } from '../manifest/load.js';
import { lookupPath } from '../env.js';
import { stateDir } from '../session/state.js';
import { spawnReaper } from '../session/reaper.js';
import { runSession, type LaunchResult } from '../session/lifecycle.js';
import type { SessionControl } from '../session/control.js';
import type { BuildOptions, Built } from '../runtimes/build.js';
import type { SessionOptions } from '../session/options.js';
import type { Brokered } from '../egress/credentials.js';
import { narrowToToken } from './tokens.js';
import type { Notify } from './notify.js';

export type { LaunchResult } from '../session/lifecycle.js';

export interface LaunchRequest {
  /** The manifest as the user named it (for messages). */
  manifest?: string;
  /** Replaces agent.command when not empty. */
  command: string[];
  runtime?: string;
  isolation?: string;
  dryRun?: boolean;
  verbose?: boolean;
  /** Watch the box through the kernel (default true; false: `--no-observe`). */
  observe?: boolean;
  /** A capability token (inline, @FILE or a path). */
  token?: string;
  /** Organisation policy directory (default: $AGENTBOX_POLICY). */
  policyDir?: string;
  /** The launcher's terminal is interactive. */
  tty?: boolean;
  /** `--env NAME=VALUE`, added to the manifest's environment (audited by name only). */
  env?: string[];
  /** `--env-file FILE`s, read before the --env entries. */
  envFiles?: string[];
  /** stdin and stdout are terminals: the agent gets a pseudo-terminal of its own. */
  pty?: boolean;
  /** Where requests come from (default: the launcher's signals). */
  control?: SessionControl;
}

export interface PreparedLaunch {
  model: Model;
  runtime: RuntimeKind;
  isolation?: 'runc' | 'gvisor';
  command: string[];
  tokenExp?: number | null;
  policy?: { engine: Authorizer; labels: Labels; dir: string };
  /** Names of the variables --env and --env-file added. */
  envAdded?: string[];
}

export type DryRun = { runtime: 'process'; plan: LaunchPlan } | { runtime: 'container'; plan: ContainerPlan } | { runtime: 'microvm'; plan: MicrovmPlan };

export type LaunchOutcome = { dryRun: DryRun } | { result: LaunchResult };

const RUNTIMES: readonly RuntimeKind[] = ['process', 'container', 'microvm'];

/** The landlock-exec helper, when it is built and the kernel has Landlock. */
export function landlockHelper(): string | undefined {
  const helper = join(packageRoot(), 'dist', 'native', 'landlock-exec');
  if (!existsSync(helper)) return undefined;
  const r = spawnSync(helper, ['--abi'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return r.status === 0 && Number(r.stdout.trim()) > 0 ? helper : undefined;
}

export async function prepareLaunch(loaded: Model, req: LaunchRequest, notify: Notify): Promise<PreparedLaunch> {
  let model = loaded;
  let tokenExp: number | null | undefined;
  let envAdded: string[] | undefined;
  if ((req.env?.length ?? 0) > 0 || (req.envFiles?.length ?? 0) > 0) {
    const files = (req.envFiles ?? []).map((file) => {
      try {
        return { file, text: readFileSync(file, 'utf8') };
      } catch (e) {
        throw new AgentboxError('USAGE', `--env-file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
      }
    });
    const r = parseEnvArgs(req.env ?? [], files, model.egress.credentials.flatMap((c) => (c.env ? [c.env] : [])));
    if (!r.ok) throw new AgentboxError('USAGE', `the environment given on the command line is not valid; nothing was started`, { details: r.errors });
    envAdded = Object.keys(r.env).sort();
    model = { ...model, agent: { ...model.agent, env: { ...model.agent.env, ...r.env } } };
  }
  const command = req.command.length > 0 ? [...req.command] : [...model.agent.command];
  // Resolved before the token and the policy see the model: what the command implies is
  // narrowed and checked like every other grant.
  if (req.command.length > 0) {
    // A `--` command is found the way agent.command[0] is, whatever the runtime: looked up
    // on PATH, links resolved, its package and interpreter granted.
    const r = resolveProgram(command[0]!, model.home, lookupPath(BOX_PATH), hostPrograms);
    if (!r.ok) throw new AgentboxError('USAGE', `${command[0]}: ${r.message}`, { exitCode: 127 });
    command[0] = r.program.path;
    const extra = programGrants(r.program, '--');
    model = { ...model, grants: { ...model.grants, exec: [...model.grants.exec, ...extra.exec], fs: [...model.grants.fs, ...extra.fs] } };
  }
  if (req.token) {
    // The session runs with exactly the token's scopes intersected with the manifest.
    const narrowed = await narrowToToken(model, req.token, notify);
    model = narrowed.model;
    tokenExp = narrowed.exp;
  }
  // Organisation policy: every effective grant is checked before anything starts; the
  // proxy then consults the same policies per connection.
  const policyDir = req.policyDir ?? envPolicyDir();
  let policy: PreparedLaunch['policy'];
  if (policyDir) {
    // Loaded only here: Cedar and the policy readers stay out of a plain launch's start-up.
    const { checkAgainst, forbiddenLines } = await import('./policy.js');
    const { check, engine, policy: dir } = checkAgainst(model, policyDir);
    if (check.forbidden.length > 0) {
      new AuditSink(stateDir()).append({ session: '-', agent: model.name, action: 'policy.launch-refused', resource: model.origin.file, decision: 'deny', reason: `${check.forbidden.length} grant${check.forbidden.length === 1 ? '' : 's'} forbidden by organisation policy`, details: { policyDir: dir.dir, forbidden: check.forbidden.map((r) => ({ request: r.request.text, pointer: r.request.source?.pointer ?? null, policies: r.verdict.forbiddenBy.map((p) => p.id), errors: r.verdict.errors })) } });
      throw new AgentboxError('DENIED', `${model.name} was not launched: organisation policy (${dir.dir}) forbids ${check.forbidden.length} of its grants and settings; nothing was started`, { details: [...forbiddenLines(check), `check it with: agentbox policy check ${req.manifest ?? model.origin.file} --policy ${dir.dir}`] });
    }
    policy = { engine, labels: dir.labels, dir: dir.dir };
  }
  const runtime = (req.runtime ?? model.runtime.kind) as RuntimeKind;
  if (!RUNTIMES.includes(runtime)) throw new AgentboxError('USAGE', `--runtime ${runtime}: valid runtimes are ${RUNTIMES.join(', ')}`);
  if (req.isolation !== undefined && !['runc', 'gvisor'].includes(req.isolation)) throw new AgentboxError('USAGE', `--isolation ${req.isolation}: valid isolations are runc, gvisor (container runtime)`);
  if (req.isolation !== undefined && runtime !== 'container') throw new AgentboxError('USAGE', '--isolation applies to the container runtime only (--runtime container)');
  // Can the agent's uid use what it is granted? Checked by the kernel, before anything starts.
  const uid = process.getuid?.() === 0 ? model.agent.uid : (process.getuid?.() ?? model.agent.uid);
  // agentbox's own state (control sockets, keys, audit log, other sessions' records) is
  // never the agent's: where a grant covers it and the agent's uid could enter it (a
  // launch by its owner), it is denied like any other path, so every runtime masks it.
  model = withStateDenied(model, stateDir(), uid);
  // The program and what it implies must be out of the agent's reach: a program (or #! line,
  // or package) the agent can change would widen the next session's grants.
  const reach = programReach(model, command, uid);
  if (reach.length > 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `${model.name} was not launched: the agent could change the program it runs; nothing was started`, { details: reach });
  const access = checkAccess(model, command, uid, { parents: false });
  // learn's home is an overlay the agent writes into where the host's modes let it: it
  // needs reading, not writing, as the home itself.
  if (model.learn) access.problems = access.problems.filter((p) => !(p.path === model.home && p.missing === 'write'));
  for (const m of access.missing) notify.warn(m.message);
  if (access.problems.length > 0) {
    const lines = access.problems.map((p) => p.message);
    if (!req.dryRun) throw new AgentboxError('CONTROL_UNAVAILABLE', `${model.name} was not launched: uid ${uid} cannot use ${access.problems.length === 1 ? 'one of its grants' : `${access.problems.length} of its grants`}; nothing was started`, { details: lines });
    for (const l of lines) notify.warn(l);
  }
  return { model, runtime, command, ...(envAdded ? { envAdded } : {}), ...(req.isolation ? { isolation: req.isolation as 'runc' | 'gvisor' } : {}), ...(tokenExp !== undefined ? { tokenExp } : {}), ...(policy ? { policy } : {}) };
}

/**
 * The model with agentbox's state folder denied, when a grant covers it and `uid` could
 * enter it: it is that uid's, or gives group or others anything (with an ACL the group
 * bits are its mask). Root's 0700 state is out of an agent uid's reach already.
 */
export function withStateDenied(model: Model, state: string, uid: number): Model {
  let real = state;
  let reachable = true;
  try {
    real = realpathSync(state);
    const st = statSync(real);
    reachable = st.uid === uid || (st.mode & 0o077) !== 0;
  } catch {
    // not there yet: the path as given, denied
  }
  const paths = [...new Set([state, real])];
  if (!reachable || !paths.some((p) => model.grants.fs.some((g) => isWithin(p, g.path)))) return model;
  const denies = paths.map((path) => ({ path, access: 'all' as const, source: { origin: 'preset' as const, preset: 'agentbox', file: 'agentbox', pointer: 'state', text: `fs:${path} (agentbox's own state: control sockets, keys, audit log)` } }));
  return { ...model, denies: { ...model.denies, fs: [...model.denies.fs, ...denies] } };
}

/** The runtime's build (loaded only when used: Docker's client and QEMU's glue stay out of a process launch). */
async function build(p: PreparedLaunch, opts: BuildOptions): Promise<{ dryRun: DryRun; built: Built<unknown> }> {
  switch (p.runtime) {
    case 'container': {
      const built = await (await import('../runtimes/container/runtime.js')).buildContainerBox(p.model, opts);
      return { dryRun: { runtime: 'container', plan: built.plan }, built };
    }
    case 'microvm': {
      const built = await (await import('../runtimes/microvm/runtime.js')).buildMicrovmBox(p.model, opts);
      return { dryRun: { runtime: 'microvm', plan: built.plan }, built };
    }
    default: {
      const built = await (await import('../runtimes/process/runtime.js')).buildProcessBox(p.model, opts);
      return { dryRun: { runtime: 'process', plan: built.plan }, built };
    }
  }
}

/**
 * The session's egress materials, made before the box: the secrets read (fail closed,
 * exit 4), a placeholder for each, and the session CA with the box's bundle (the host's
 * system roots with the CA appended) when anything is decrypted. A dry run reads no
 * secret and makes no key: it shows where the bundle and placeholders would go.
 */
async function prepareEgress(model: Model, state: string, dryRun: boolean): Promise<{ build: NonNullable<BuildOptions['egress']>; session: NonNullable<SessionOptions['egress']> } | undefined> {
  const { usesProxy } = await import('../model/grants.js');
  if (!usesProxy(model)) return undefined;
  const { decryptsAny } = await import('../model/http.js');
  const decrypts = decryptsAny(model);
  if (!decrypts && model.egress.credentials.length === 0) return undefined;
  const { newPlaceholder } = await import('../egress/credentials.js');
  const { dlpDigest } = await import('../audit/sink.js');
  const placeholders: Record<string, string> = {};
  const brokered: Brokered[] = [];
  const digest = dryRun ? () => '' : dlpDigest(state);
  for (const spec of model.egress.credentials) {
    const placeholder = newPlaceholder(spec.name);
    if (spec.env) placeholders[spec.env] = placeholder;
    if (dryRun) continue;
    const { readSecret } = await import('../host/secrets.js');
    const secret = await readSecret(spec);
    brokered.push({ spec, placeholder, secret, digest: digest(secret) });
  }
  if (!decrypts) return { build: { bundle: undefined, placeholders }, session: { tls: undefined, brokered } };
  const { systemBundle, upstreamTrust } = await import('../host/trust.js');
  const trust = upstreamTrust(model.egress.trust);
  const system = systemBundle() ?? (await import('node:tls')).rootCertificates.join('\n');
  if (dryRun) return { build: { bundle: '', placeholders }, session: { tls: undefined, brokered } };
  const { SessionCa } = await import('../egress/ca.js');
  const ca = await SessionCa.create(model.name, (model.ttlSeconds ?? 7 * 24 * 3600) * 1000);
  return { build: { bundle: `${system.trimEnd()}\n${ca.certPem.trimEnd()}\n`, placeholders }, session: { tls: { ca, trust }, brokered } };
}

export async function launch(p: PreparedLaunch, req: LaunchRequest, notify: Notify): Promise<LaunchOutcome> {
  const state = stateDir();
  const log = (line: string) => notify.info(line);
  const egress = await prepareEgress(p.model, state, Boolean(req.dryRun));
  const { dryRun, built } = await build(p, {
    ...(egress ? { egress: egress.build } : {}),
    command: p.command,
    state,
    dryRun: Boolean(req.dryRun),
    verbose: Boolean(req.verbose),
    log,
    landlockHelper: landlockHelper(),
    pty: Boolean(req.pty),
    observe: req.observe !== false,
    ...(p.isolation ? { isolation: p.isolation } : {}),
  });
  if (!built.box) return { dryRun };
  const result = await runSession(p.model, {
    command: p.command,
    state,
    verbose: Boolean(req.verbose),
    log,
    tty: Boolean(req.tty),
    ...(p.envAdded ? { envAdded: p.envAdded } : {}),
    spawnReaper,
    ...(p.tokenExp !== undefined ? { tokenExp: p.tokenExp } : {}),
    ...(p.policy ? { policy: p.policy } : {}),
    ...(req.control ? { control: req.control } : {}),
    ...(egress ? { egress: egress.session } : {}),
  }, built.box);
  return { result };
}
