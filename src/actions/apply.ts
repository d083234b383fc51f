/**
 * `apply`: install the Linux controls on this host, from a manifest (generated on the
 * spot) or from a `generate` output directory, whose plan.json hashes and values are
 * checked before anything runs.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { readFileNoFollow } from '../host/open-exact.js';
import { join } from 'node:path';
import { AgentboxError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import { APPLY_CONTROLS, applyLinux, type ApplyControl, type ApplyInput, type StepReport } from '../apply/linux.js';
import { generate, planJson } from '../generate/index.js';
import { buildPlan, type Plan } from '../plan/plan.js';
import { readTemplates } from '../host/files.js';
import { NAME_PATTERN, USER_PATTERN } from '../manifest/schema.js';
import { loadServiceModel, type ServiceManifestOptions } from './load.js';
import type { Notify } from './notify.js';

export { APPLY_CONTROLS };

const ARTIFACT_EXT: Record<string, string> = { systemd: '.service', apparmor: '.apparmor', iptables: '.iptables', ip6tables: '.ip6tables', nftables: '.nft', 'firewall-unit': '-firewall.service', 'daemon-config': '.daemon.json' };
/** Present only for an agent whose egress goes through agentboxd. */
const OPTIONAL = new Set(['daemon-unit', 'daemon-config']);

export interface ApplyOptions extends ServiceManifestOptions {
  dryRun?: boolean;
  root: string;
  offline?: boolean;
  firewall: string;
  allowMissing?: string;
}

function parseAllowMissing(value: string | undefined): ApplyControl[] {
  if (!value) return [];
  const list = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const c of list) {
    if (!(APPLY_CONTROLS as readonly string[]).includes(c)) {
      throw new AgentboxError('USAGE', `--allow-missing ${c}: unknown control`, { details: [`valid controls: ${APPLY_CONTROLS.join(', ')}`] });
    }
  }
  return list as ApplyControl[];
}

/** Reads a generate output directory, refusing it if any artifact differs from plan.json. */
export function readGeneratedDir(dir: string): ApplyInput {
  const planPath = join(dir, 'plan.json');
  if (!existsSync(planPath)) throw new AgentboxError('USAGE', `${dir}: no plan.json; give a directory written by agentbox generate`);
  const plan = JSON.parse(readFileSync(planPath, 'utf8')) as Omit<Plan, 'artifacts'> & { artifacts: { path: string; control: string; sha256: string | null }[] };
  if (plan.schema !== 'agentbox.plan/v1') throw new AgentboxError('USAGE', `${planPath}: not an agentbox plan (schema ${String(plan.schema)})`);
  // plan.json is data from disk: every value that reaches a path or a command is re-checked.
  const account = plan.effective?.account;
  if (typeof plan.agent !== 'string' || !new RegExp(NAME_PATTERN).test(plan.agent)) throw new AgentboxError('CHECK_FAILED', `${planPath}: agent ${JSON.stringify(plan.agent)} is not a valid agent name`);
  if (!account || typeof account.user !== 'string' || !new RegExp(USER_PATTERN).test(account.user) || !Number.isInteger(account.uid) || account.uid < 1000 || account.uid > 2147483646) {
    throw new AgentboxError('CHECK_FAILED', `${planPath}: effective.account ${JSON.stringify(account)} is not a valid account`);
  }
  const expected = new Map(Object.entries(ARTIFACT_EXT).map(([control, ext]) => [`linux/agentbox-${plan.agent}${ext}`, control]));
  expected.set('linux/agentboxd.service', 'daemon-unit');
  const artifacts = plan.artifacts
    .filter((a) => a.path.startsWith('linux/'))
    .map((a) => {
      if (expected.get(a.path) !== a.control) throw new AgentboxError('CHECK_FAILED', `${planPath}: artifact ${JSON.stringify(a.path)} (${a.control}) is not one agentbox generates for ${plan.agent}`);
      const content = readFileSync(join(dir, a.path), 'utf8');
      const sha = sha256Hex(content);
      if (sha !== a.sha256) {
        throw new AgentboxError('CHECK_FAILED', `${join(dir, a.path)} does not match plan.json (sha256 ${sha.slice(0, 12)}…, plan says ${String(a.sha256).slice(0, 12)}…); it was changed after generate`, {
          details: ['regenerate it with agentbox generate rather than editing it'],
        });
      }
      return { path: a.path, control: a.control as ApplyInput['artifacts'][number]['control'], content };
    });
  const required = [...expected.values()].filter((c) => !OPTIONAL.has(c));
  const optional = artifacts.filter((a) => OPTIONAL.has(a.control)).length;
  if (artifacts.length - optional !== required.length || (optional !== 0 && optional !== OPTIONAL.size)) throw new AgentboxError('CHECK_FAILED', `${planPath}: lists ${artifacts.length} Linux artifacts, expected ${required.length} (and ${OPTIONAL.size} more for an agent with a proxy)`);
  return { agent: plan.agent, user: account.user, uid: account.uid, artifacts, planJson: readFileSync(planPath, 'utf8') };
}

/**
 * What other agents already applied under the root rule out: a name whose units would
 * collide with another agent's (`foo-firewall` is foo's firewall unit), and an account
 * another agent uses (the kernel tells agents apart by uid: their firewall rules, their
 * proxy and their processes would be each other's).
 */
function checkAlongside(input: ApplyInput, root: string): void {
  if (input.agent.endsWith('-firewall')) throw new AgentboxError('USAGE', `agent name ${input.agent}: names ending in -firewall are reserved (agentbox-NAME-firewall.service is each agent's firewall unit)`, { details: ['rename it in metadata.name'] });
  const dir = join(root, 'etc/agentbox');
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir).filter((n) => /^agentbox-.+\.plan\.json$/.test(n))) {
    let other: { agent?: unknown; effective?: { account?: { uid?: unknown; user?: unknown } } };
    try {
      // Under an image root: read without following a link out of it.
      const read = readFileNoFollow(join(dir, f));
      if (!read) continue;
      other = JSON.parse(read.content.toString('utf8')) as typeof other;
    } catch {
      continue;
    }
    if (other.agent === input.agent || other.effective?.account?.uid !== input.uid) continue;
    throw new AgentboxError('CHECK_FAILED', `${input.agent} would run as uid ${input.uid}, which ${String(other.agent)} (${join(dir, f)}) already runs as; nothing was changed`, {
      details: [`give ${input.agent} an account of its own in its manifest, e.g. agent: { user: agentbox-${input.agent}, uid: ${input.uid + 1} }`, 'the kernel tells agents apart by uid: their firewall rules, egress proxy and processes would be each other\'s'],
    });
  }
}

/** Applies AGENT|FILE|DIR; `log` gets each step. */
export async function applyControls(arg: string, opts: ApplyOptions, notify: Notify, log: (line: string) => void): Promise<{ agent: string; reports: StepReport[] }> {
  if (opts.firewall !== 'iptables' && opts.firewall !== 'nft') throw new AgentboxError('USAGE', `--firewall ${opts.firewall}: use iptables or nft`);
  const allowMissing = parseAllowMissing(opts.allowMissing);
  let input: ApplyInput;
  if (existsSync(arg) && statSync(arg).isDirectory()) input = readGeneratedDir(arg);
  else {
    const { model } = loadServiceModel(arg, opts, notify);
    const plan = buildPlan(model, ['linux']);
    const artifacts = generate(model, plan, readTemplates());
    input = { agent: model.name, user: model.agent.user, uid: model.agent.uid, artifacts, planJson: planJson(plan, artifacts) };
  }
  checkAlongside(input, opts.root);
  const reports = await applyLinux(input, { root: opts.root, dryRun: Boolean(opts.dryRun), offline: Boolean(opts.offline), firewall: opts.firewall, allowMissing, log });
  return { agent: input.agent, reports };
}
