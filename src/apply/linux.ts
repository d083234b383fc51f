/**
 * Installs generated Linux controls on this host: the agent account, the unit, the
 * AppArmor profile and the firewall rules. The only module that changes the host for
 * `apply`.
 *
 * Every step knows how to undo itself; when a step fails, the steps already taken are
 * undone in reverse order. Every step first checks whether its work is already done,
 * so applying twice changes nothing the second time. Before any step runs, the
 * controls the plan needs are probed and a missing one stops the apply (exit 4)
 * unless the caller named it in `allowMissing`.
 */

import { join } from 'node:path';
import { AgentboxError } from '../errors.js';
import type { ApplyControl, ApplyInput, ApplyOptions, StepReport } from './types.js';
import { accountStep, apparmorStep, daemonStartStep, enableStep, fileStep, iptablesSteps, nftStep, systemdStep, type Step } from './steps.js';
import { probeApparmorLsm, probeSystemd, which } from '../host/probes.js';

export { APPLY_CONTROLS, type ApplyControl, type ApplyInput, type ApplyOptions, type StepReport } from './types.js';

/** What the host is missing for this apply, with how to get it. */
export async function preflight(input: ApplyInput, opts: ApplyOptions): Promise<{ control: ApplyControl; why: string; hint: string }[]> {
  const missing: { control: ApplyControl; why: string; hint: string }[] = [];
  if (!(await which('useradd'))) missing.push({ control: 'account', why: 'useradd is not installed', hint: 'apt-get install passwd' });
  if (!opts.offline) {
    if (opts.firewall === 'nft') {
      if (!(await which('nft'))) missing.push({ control: 'firewall', why: 'nft is not installed', hint: 'apt-get install nftables' });
    } else if (!(await which('iptables-restore')) || !(await which('ip6tables-restore'))) {
      missing.push({ control: 'firewall', why: 'iptables-restore or ip6tables-restore is not installed', hint: 'apt-get install iptables' });
    }
    const lsm = await probeApparmorLsm();
    if (!(await which('apparmor_parser'))) missing.push({ control: 'apparmor', why: 'apparmor_parser is not installed', hint: 'apt-get install apparmor' });
    else if (!lsm.enabled) missing.push({ control: 'apparmor', why: `the AppArmor LSM is not enabled in this kernel (${lsm.detail})`, hint: 'boot a kernel with apparmor=1 security=apparmor, or accept with --allow-missing apparmor' });
  }
  if (!opts.offline && opts.root === '/') {
    const sd = await probeSystemd();
    if (!sd.running) missing.push({ control: 'systemd', why: `systemd is not the init system here (${sd.detail})`, hint: 'install into an image with --root DIR, or accept with --allow-missing systemd' });
  }
  return missing;
}

/** Where each artifact is installed under the root. */
export function installPaths(agent: string, root: string) {
  return {
    systemd: join(root, 'etc/systemd/system', `agentbox-${agent}.service`),
    apparmor: join(root, 'etc/apparmor.d', `agentbox-${agent}`),
    iptables: join(root, 'etc/agentbox', `agentbox-${agent}.iptables`),
    ip6tables: join(root, 'etc/agentbox', `agentbox-${agent}.ip6tables`),
    nftables: join(root, 'etc/agentbox', `agentbox-${agent}.nft`),
    firewallUnit: join(root, 'etc/systemd/system', `agentbox-${agent}-firewall.service`),
    daemonUnit: join(root, 'etc/systemd/system', 'agentboxd.service'),
    daemonConfig: join(root, 'etc/agentbox', `agentbox-${agent}.daemon.json`),
    plan: join(root, 'etc/agentbox', `agentbox-${agent}.plan.json`),
  };
}

/** Runs the apply; throws AgentboxError (exit 4) for missing controls before touching anything. */
export async function applyLinux(input: ApplyInput, opts: ApplyOptions): Promise<StepReport[]> {
  const missing = await preflight(input, opts);
  const refused = missing.filter((m) => !opts.allowMissing.includes(m.control));
  if (refused.length > 0) {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot enforce ${refused.map((m) => m.control).join(', ')} on this host; nothing was changed`, {
      details: [
        ...refused.map((m) => `${m.control}: ${m.why} (${m.hint})`),
        `to install the rest anyway, accept each gap explicitly: --allow-missing ${refused.map((m) => m.control).join(',')}`,
      ],
    });
  }
  const skipped = new Set(missing.map((m) => m.control));
  const paths = installPaths(input.agent, opts.root);
  const content = (control: string) => {
    const a = input.artifacts.find((x) => x.control === control);
    if (!a) throw new AgentboxError('INTERNAL', `the plan has no ${control} artifact`);
    return a.content;
  };

  const steps: Step[] = [];
  const reports: StepReport[] = [];
  const skip = (control: ApplyControl, name: string, note: string) => reports.push({ step: name, control, status: 'skipped', commands: [], note });

  if (skipped.has('account')) skip('account', `account ${input.user}`, missing.find((m) => m.control === 'account')!.why);
  else steps.push(accountStep(input, opts.root));
  steps.push(fileStep(opts.root, paths.systemd, content('systemd'), 0o644));
  steps.push(fileStep(opts.root, paths.apparmor, content('apparmor'), 0o644));
  steps.push(fileStep(opts.root, paths.iptables, content('iptables'), 0o600));
  steps.push(fileStep(opts.root, paths.ip6tables, content('ip6tables'), 0o600));
  steps.push(fileStep(opts.root, paths.nftables, content('nftables'), 0o600));
  // The rules again at every boot, before the agent; and agentboxd, its proxy, when it has one.
  steps.push(fileStep(opts.root, paths.firewallUnit, content('firewall-unit'), 0o644), enableStep(opts.root, `agentbox-${input.agent}-firewall.service`));
  const daemon = input.artifacts.find((a) => a.control === 'daemon-unit');
  if (daemon) {
    steps.push(fileStep(opts.root, paths.daemonConfig, content('daemon-config'), 0o600));
    steps.push(fileStep(opts.root, paths.daemonUnit, daemon.content, 0o644), enableStep(opts.root, 'agentboxd.service'));
  }
  if (opts.offline) skip('firewall', 'firewall load', '--offline: rules installed, not loaded');
  else if (skipped.has('firewall')) skip('firewall', 'firewall load', missing.find((m) => m.control === 'firewall')!.why);
  else if (opts.firewall === 'nft') steps.push(nftStep(input, paths.nftables));
  else steps.push(...iptablesSteps(input, { 4: paths.iptables, 6: paths.ip6tables }));
  if (opts.offline) skip('apparmor', 'AppArmor load', '--offline: profile installed, not loaded');
  else if (skipped.has('apparmor')) skip('apparmor', 'AppArmor load', missing.find((m) => m.control === 'apparmor')!.why);
  else steps.push(apparmorStep(input, paths.apparmor));
  if (opts.root !== '/' || opts.offline) skip('systemd', 'systemd reload', `unit installed under ${opts.root}; it is loaded when that system boots`);
  else if (skipped.has('systemd')) skip('systemd', 'systemd reload', missing.find((m) => m.control === 'systemd')!.why);
  else {
    steps.push(systemdStep());
    if (daemon) steps.push(daemonStartStep());
  }
  // Last: the record of what is installed, so a half apply never leaves one behind.
  steps.push(fileStep(opts.root, paths.plan, input.planJson, 0o644));

  if (opts.dryRun) {
    for (const s of steps) {
      opts.log(`# ${s.name}`);
      for (const c of s.commands) opts.log(c);
      reports.push({ step: s.name, control: s.control, status: 'would-run', commands: s.commands });
    }
    return reports;
  }

  const done: Step[] = [];
  for (const s of steps) {
    try {
      const status = await s.run();
      done.push(s);
      reports.push({ step: s.name, control: s.control, status, commands: s.commands });
      opts.log(`${status === 'unchanged' ? 'unchanged' : 'done     '}  ${s.name}`);
    } catch (e) {
      opts.log(`failed     ${s.name}: ${(e as Error).message}`);
      for (const d of done.reverse()) {
        try {
          await d.undo();
          opts.log(`rolled back ${d.name}`);
        } catch (u) {
          opts.log(`ROLLBACK FAILED ${d.name}: ${(u as Error).message}`);
        }
      }
      if (e instanceof AgentboxError) {
        throw new AgentboxError(e.code, `${s.name}: ${e.message}; the ${done.length} step${done.length === 1 ? '' : 's'} taken before it were rolled back`, { cause: e, details: e.details });
      }
      throw new AgentboxError('APPLY_FAILED', `${s.name} failed: ${(e as Error).message}; the ${done.length} step${done.length === 1 ? '' : 's'} taken before it were rolled back`, { cause: e });
    }
  }
  return reports;
}
