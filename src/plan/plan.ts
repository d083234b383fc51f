/**
 * The plan: pure data from a validated model. It states the effective grants after
 * presets and denies, and for each target the artifacts to write with the rules each
 * one enforces. Generators fill in contents; `generate` adds their sha256 and writes
 * plan.json; `apply` reads it back.
 */

import { describeSource, effectiveFs, viaProxy } from '../model/grants.js';
import type { Model, RuleSource } from '../model/types.js';

export type Target = 'linux' | 'windows' | 'macos';
export const TARGETS: readonly Target[] = ['linux', 'windows', 'macos'];

/** Which host control an artifact configures. */
export type Control =
  | 'systemd' | 'apparmor' | 'iptables' | 'ip6tables' | 'nftables' | 'firewall-unit' | 'daemon-unit' | 'daemon-config'
  | 'windows-firewall' | 'windows-acl' | 'wdac-policy' | 'wdac-deploy' | 'windows-rollback' | 'intune-install' | 'intune-detect'
  | 'pppc' | 'tcc-check' | 'pf' | 'jamf-postinstall';

export type Bundle = 'intune' | 'jamf';

export interface Enforced {
  /** The rule as written (`fs:read:~/Documents`), or an agentbox baseline (`baseline: no capabilities`). */
  rule: string;
  /** Where it came from: `manifest capabilities[0]`, `preset viewer deny[1]`, `agentbox`. */
  source: string;
}

export interface PlannedArtifact {
  target: Target;
  control: Control;
  /** Relative to the output directory. */
  path: string;
  enforces: Enforced[];
}

export interface EffectiveFs {
  path: string;
  access: 'read' | 'write';
  source: string;
  rule: string;
}

export interface Plan {
  schema: 'agentbox.plan/v1';
  agent: string;
  manifest: { file: string; sha256: string };
  presets: string[];
  effective: {
    fs: EffectiveFs[];
    fsDenied: { path: string; access: 'all' | 'write'; source: string; rule: string }[];
    net: { host: string; port: number; via: 'proxy' | 'direct'; source: string; rule: string }[];
    netDenied: { host: string; port: number | 'any'; source: string; rule: string }[];
    exec: { path: string; source: string; rule: string }[];
    execDenied: { path: string; source: string; rule: string }[];
    /** Grants that a deny covers entirely: listed so a reviewer sees they do nothing. */
    masked: { rule: string; source: string; by: string }[];
    ttlSeconds: number | null;
    limits: { memoryBytes: number | null; pids: number | null; cpus: number | null };
    runtime: Model['runtime'];
    account: { user: string; uid: number };
    egressProxy: { address: string; port: number } | null;
  };
  artifacts: PlannedArtifact[];
}

const src = (s: RuleSource) => describeSource(s);



export function buildPlan(model: Model, targets: readonly Target[], bundles: readonly Bundle[] = []): Plan {
  const { fs, masked } = effectiveFs(model);
  const needsProxy = model.grants.net.some(viaProxy);
  const name = model.name;
  const fsRules = [...fs.map((g) => ({ rule: g.source.text, source: src(g.source) })), ...model.denies.fs.map((d) => ({ rule: d.source.text, source: src(d.source) }))];
  const execRules = [
    ...(model.agent.command[0] ? [{ rule: `exec:${model.agent.command[0]}`, source: 'manifest agent.command[0]' }] : []),
    ...model.grants.exec.map((g) => ({ rule: g.source.text, source: src(g.source) })),
    ...model.denies.exec.map((d) => ({ rule: d.source.text, source: src(d.source) })),
  ];
  const netRules = [...model.grants.net.map((g) => ({ rule: g.source.text, source: src(g.source) })), ...model.denies.net.map((d) => ({ rule: d.source.text, source: src(d.source) }))];
  const firewallRules = [
    ...(needsProxy ? [{ rule: `egress proxy 127.0.0.1:${model.egress.proxyPort} (host names are enforced by the proxy allowlist)`, source: 'agentbox' }] : []),
    ...model.grants.net.filter((g) => !viaProxy(g)).map((g) => ({ rule: g.source.text, source: src(g.source) })),
    ...model.denies.net.filter((d) => d.hostKind === 'ipv4' || d.hostKind === 'ipv6').map((d) => ({ rule: d.source.text, source: src(d.source) })),
    { rule: `default: reject everything else uid ${model.agent.uid} sends`, source: 'agentbox' },
  ];
  const baseline = (rule: string): Enforced => ({ rule, source: 'agentbox' });
  const limits: Enforced[] = [
    ...(model.ttlSeconds !== undefined ? [baseline(`ttl ${model.ttlSeconds}s`)] : []),
    ...(model.limits.memoryBytes !== undefined ? [baseline(`memory ${model.limits.memoryBytes} bytes`)] : []),
    ...(model.limits.pids !== undefined ? [baseline(`pids ${model.limits.pids}`)] : []),
    ...(model.limits.cpus !== undefined ? [baseline(`cpus ${model.limits.cpus}`)] : []),
  ];

  const artifacts: PlannedArtifact[] = [];
  for (const target of targets) {
    switch (target) {
      case 'linux':
        artifacts.push(
          {
            target,
            control: 'systemd',
            path: `linux/agentbox-${name}.service`,
            enforces: [baseline(`runs as ${model.agent.user} (uid ${model.agent.uid}) with no capabilities and no new privileges`), ...fsRules, ...execRules, ...netRules, ...limits],
          },
          { target, control: 'apparmor', path: `linux/agentbox-${name}.apparmor`, enforces: [baseline('no capabilities, mounts or ptrace'), ...fsRules, ...execRules, ...netRules] },
          { target, control: 'iptables', path: `linux/agentbox-${name}.iptables`, enforces: firewallRules },
          { target, control: 'ip6tables', path: `linux/agentbox-${name}.ip6tables`, enforces: firewallRules },
          { target, control: 'nftables', path: `linux/agentbox-${name}.nft`, enforces: firewallRules },
          { target, control: 'firewall-unit', path: `linux/agentbox-${name}-firewall.service`, enforces: [baseline(`loads agentbox-${name}.nft at boot, before the agent's unit, which requires it`)] },
        );
        if (needsProxy) {
          artifacts.push(
            { target, control: 'daemon-unit', path: 'linux/agentboxd.service', enforces: [baseline(`agentboxd: the egress proxy on 127.0.0.1:${model.egress.proxyPort} and the control socket; the agent's unit is bound to it (Requires=, BindsTo=)`)] },
            { target, control: 'daemon-config', path: `linux/agentbox-${name}.daemon.json`, enforces: [...netRules, baseline('the egress governance agentboxd applies: allowlist, policy, consent, DLP, upload limits, audit')] },
          );
        }
        break;
      case 'windows': {
        const w = (control: Control, file: string, enforces: Enforced[], dir = 'windows') => ({ target, control, path: `${dir}/agentbox-${name}-${file}`, enforces });
        const grantsOnly = fs.map((g) => ({ rule: g.source.text, source: src(g.source) }));
        const set = [
          w('windows-firewall', 'firewall.ps1', [...netRules, baseline('block everything else the program sends, and all IPv6')]),
          w('windows-acl', 'acl.ps1', grantsOnly),
          w('wdac-policy', 'wdac.xml', [{ rule: `allow ${model.agent.windows.program ?? 'the agent program'} and Windows-signed code; everything else is not allowed to run`, source: 'agentbox' }]),
          w('wdac-deploy', 'wdac.ps1', [baseline('deploys the App Control policy (audit mode; -Enforce to enforce)')]),
          w('windows-rollback', 'rollback.ps1', [baseline('removes every rule, policy and grant the scripts added')]),
        ];
        artifacts.push(...set);
        if (bundles.includes('intune')) {
          artifacts.push(...set.map((a) => ({ ...a, path: a.path.replace(/^windows\//, 'intune/') })));
          artifacts.push(w('intune-install', 'install.ps1', [baseline('Intune install command')], 'intune'), w('windows-rollback', 'uninstall.ps1', [baseline('Intune uninstall command')], 'intune'), w('intune-detect', 'detect.ps1', [baseline('Intune detection rule')], 'intune'));
        }
        break;
      }
      case 'macos': {
        const m = (control: Control, path: string, enforces: Enforced[]) => ({ target, control, path, enforces });
        const set = [
          m('pppc', `macos/agentbox-${name}.mobileconfig`, [...fs.map((g) => ({ rule: g.source.text, source: src(g.source) })), baseline('deny ScreenCapture, Accessibility and SystemPolicyAllFiles')]),
          m('tcc-check', `macos/agentbox-${name}-tcc-check.sh`, [baseline('reports TCC grants beyond the manifest')]),
          m('pf', `macos/com.agentbox.${name}`, [...netRules, baseline(`drop everything else ${model.agent.user} sends`)]),
        ];
        artifacts.push(...set);
        if (bundles.includes('jamf')) {
          artifacts.push(...set.map((a) => ({ ...a, path: a.path.replace(/^macos\//, 'jamf/') })));
          artifacts.push(m('jamf-postinstall', `jamf/postinstall.sh`, [baseline('installs and loads the pf anchor, reports TCC drift')]));
        }
        break;
      }
      default: {
        const never: never = target;
        throw new Error(`unknown target ${String(never)}`);
      }
    }
  }

  return {
    schema: 'agentbox.plan/v1',
    agent: name,
    manifest: { file: model.origin.file.split('/').pop() ?? model.origin.file, sha256: model.origin.sha256 },
    presets: model.extends.map((p) => p.name),
    effective: {
      fs: fs.map((g) => ({ path: g.path, access: g.access, source: src(g.source), rule: g.source.text })),
      fsDenied: model.denies.fs.map((d) => ({ path: d.path, access: d.access, source: src(d.source), rule: d.source.text })),
      net: model.grants.net.map((g) => ({ host: g.host, port: g.port, via: viaProxy(g) ? ('proxy' as const) : ('direct' as const), source: src(g.source), rule: g.source.text })),
      netDenied: model.denies.net.map((d) => ({ host: d.host, port: d.port, source: src(d.source), rule: d.source.text })),
      exec: model.grants.exec.map((g) => ({ path: g.path, source: src(g.source), rule: g.source.text })),
      execDenied: model.denies.exec.map((d) => ({ path: d.path, source: src(d.source), rule: d.source.text })),
      masked: masked.map((m) => ({ rule: m.grant.source.text, source: src(m.grant.source), by: `${m.deny.source.text} (${src(m.deny.source)})` })),
      ttlSeconds: model.ttlSeconds ?? null,
      limits: { memoryBytes: model.limits.memoryBytes ?? null, pids: model.limits.pids ?? null, cpus: model.limits.cpus ?? null },
      runtime: model.runtime,
      account: { user: model.agent.user, uid: model.agent.uid },
      egressProxy: needsProxy ? { address: '127.0.0.1', port: model.egress.proxyPort } : null,
    },
    artifacts,
  };
}
