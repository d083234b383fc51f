/**
 * Generators: (model, plan, templates) → artifacts with contents. Pure: no
 * process.*, no file reads, no probes; the same input gives the same bytes.
 */
import type { Model } from '../model/types.js';
import { sha256Hex } from '../hash.js';
import type { Plan, PlannedArtifact } from '../plan/plan.js';
import { apparmorProfile } from './linux/apparmor.js';
import { iptablesRestore, nftRuleset } from './linux/firewall.js';
import { daemonConfig, daemonUnit, firewallUnit, systemdUnit } from './linux/systemd.js';
import type { Templates } from './template.js';
import { aclPs1, firewallPs1, intuneDetectPs1, intuneInstallPs1, rollbackPs1, wdacPs1, wdacXml } from './windows/windows.js';
import { jamfPostinstall, pfAnchor, pppcProfile, tccCheckScript } from './macos/macos.js';

export interface Artifact extends PlannedArtifact {
  content: string;
  sha256: string;
}

function contentOf(a: PlannedArtifact, model: Model, templates: Templates): string {
  switch (a.control) {
    case 'systemd':
      return systemdUnit(model, templates);
    case 'apparmor':
      return apparmorProfile(model, templates);
    case 'iptables':
      return iptablesRestore(model, templates, 4);
    case 'ip6tables':
      return iptablesRestore(model, templates, 6);
    case 'nftables':
      return nftRuleset(model, templates);
    case 'firewall-unit':
      return firewallUnit(model, templates);
    case 'daemon-unit':
      return daemonUnit(templates);
    case 'daemon-config':
      return daemonConfig(model);
    case 'windows-firewall':
      return firewallPs1(model, templates);
    case 'windows-acl':
      return aclPs1(model, templates);
    case 'wdac-policy':
      return wdacXml(model, templates);
    case 'wdac-deploy':
      return wdacPs1(model, templates);
    case 'windows-rollback':
      return rollbackPs1(model, templates);
    case 'intune-install':
      return intuneInstallPs1(model, templates);
    case 'intune-detect':
      return intuneDetectPs1(model, templates);
    case 'pppc':
      return pppcProfile(model, templates);
    case 'tcc-check':
      return tccCheckScript(model, templates);
    case 'pf':
      return pfAnchor(model, templates);
    case 'jamf-postinstall':
      return jamfPostinstall(model, templates);
    default: {
      const never: never = a.control;
      throw new Error(`no generator for ${String(never)}`);
    }
  }
}

/** Renders every planned artifact. */
export function generate(model: Model, plan: Plan, templates: Templates): Artifact[] {
  return plan.artifacts.map((a) => {
    const content = contentOf(a, model, templates);
    const text = content.endsWith('\n') ? content : content + '\n';
    return { ...a, content: text, sha256: sha256Hex(text) };
  });
}

/** plan.json: the plan with each artifact's sha256 (stable key order, trailing newline). */
export function planJson(plan: Plan, artifacts: readonly Artifact[]): string {
  const withHashes = {
    ...plan,
    artifacts: plan.artifacts.map((a) => ({ ...a, sha256: artifacts.find((x) => x.path === a.path)?.sha256 ?? null })),
  };
  return JSON.stringify(withHashes, null, 2) + '\n';
}
