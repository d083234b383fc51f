/**
 * The hardened systemd unit (templates/linux/agent.service). Pure.
 */
import type { Model } from '../../model/types.js';
import { agentEnvironment } from '../../model/environment.js';
import { effectiveFs, viaProxy } from '../../model/grants.js';
import { isWithin } from '../../model/paths.js';
import { systemdEnv, systemdExecArg, systemdPath } from '../../escape/systemd.js';
import { header } from '../header.js';
import { render, template, type Templates } from '../template.js';

/** Paths hidden by ProtectHome=tmpfs or TemporaryFileSystem=: programs there must be bound in. */
const HIDDEN = ['/home', '/root', '/run/user', '/mnt', '/media', '/srv'];


/** The daemon's unit name, and where `apply` expects the agentbox command (npm -g's bin). */
export const DAEMON_UNIT = 'agentboxd.service';
export const AGENTBOX_BIN = '/usr/local/bin/agentbox';

/** The unit that loads the agent's nftables rules at boot, before the agent. */
export function firewallUnit(model: Model, templates: Templates): string {
  return render('agent-firewall.service', template(templates, 'linux/agent-firewall.service'), {
    header: header(model, '#'),
    name: model.name,
    uid: String(model.agent.uid),
  });
}

/** agentboxd's unit (the same for every agent). */
export function daemonUnit(templates: Templates): string {
  return render('agentboxd.service', template(templates, 'linux/agentboxd.service'), { agentbox: AGENTBOX_BIN });
}

/**
 * What agentboxd needs to govern the agent: its resolved model, as applied (so the daemon
 * enforces what was reviewed, not a manifest read again later). Installed 0600.
 */
export function daemonConfig(model: Model): string {
  return JSON.stringify({ schema: 'agentbox.daemon/v1', agent: model.name, uid: model.agent.uid, user: model.agent.user, unit: `agentbox-${model.name}.service`, listen: { host: '127.0.0.1', port: model.egress.proxyPort }, model }, null, 2);
}

export function systemdUnit(model: Model, templates: Templates): string {
  const { fs } = effectiveFs(model);
  const fsRules: string[] = [];
  for (const g of fs) {
    fsRules.push(`${g.access === 'write' ? 'BindPaths' : 'BindReadOnlyPaths'}=${systemdPath(g.path, '-')}`);
  }
  for (const d of model.denies.fs) {
    fsRules.push(`${d.access === 'all' ? 'InaccessiblePaths' : 'ReadOnlyPaths'}=${systemdPath(d.path, '-')}`);
  }

  const programs = [model.agent.command[0]!, ...model.grants.exec.map((g) => g.path)];
  const execRules: string[] = [];
  for (const p of programs) {
    if (HIDDEN.some((h) => isWithin(p, h))) execRules.push(`BindReadOnlyPaths=${systemdPath(p, '-')}`);
    execRules.push(`ExecPaths=${systemdPath(p, '-')}`);
  }
  for (const d of model.denies.exec) execRules.push(`NoExecPaths=${systemdPath(d.path, '-')}`);

  const hasNet = model.grants.net.length > 0;
  const proxy = model.grants.net.some(viaProxy);
  const networkRules: string[] = [];
  if (!hasNet) {
    networkRules.push('PrivateNetwork=yes', 'RestrictAddressFamilies=AF_UNIX', 'IPAddressDeny=any');
  } else {
    networkRules.push('RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6', 'IPAddressDeny=any');
    const allow = new Set<string>();
    if (proxy) {
      allow.add('127.0.0.1');
      allow.add('::1');
    }
    for (const g of model.grants.net) if (!viaProxy(g)) allow.add(g.host);
    networkRules.push(`IPAddressAllow=${[...allow].join(' ')}`);
  }

  const limits: string[] = [];
  if (model.limits.memoryBytes !== undefined) limits.push(`MemoryMax=${model.limits.memoryBytes}`, 'MemorySwapMax=0');
  if (model.limits.pids !== undefined) limits.push(`TasksMax=${model.limits.pids}`);
  if (model.limits.cpus !== undefined) limits.push(`CPUQuota=${Math.round(model.limits.cpus * 100)}%`);
  if (model.ttlSeconds !== undefined) limits.push(`RuntimeMaxSec=${model.ttlSeconds}`);
  if (limits.length === 0) limits.push('# none requested');

  const env = agentEnvironment(model, proxy ? `http://127.0.0.1:${model.egress.proxyPort}` : undefined);
  // The firewall unit always; agentboxd when the proxy is the way out. BindsTo= stops the
  // agent when the daemon stops or fails, Requires= keeps it from starting without it.
  const firewall = `agentbox-${model.name}-firewall.service`;
  const unitDeps = proxy
    ? [`Requires=${DAEMON_UNIT} ${firewall}`, `BindsTo=${DAEMON_UNIT}`, `After=${DAEMON_UNIT} ${firewall}`]
    : [`Requires=${firewall}`, `After=${firewall}`];
  return render('agent.service', template(templates, 'linux/agent.service'), {
    header: header(model, '#'),
    name: model.name,
    unitDeps,
    execStart: model.agent.command.map(systemdExecArg).join(' '),
    user: model.agent.user,
    environment: env.map(([k, v]) => `Environment=${systemdEnv(k, v)}`),
    fsRules,
    execRules,
    networkRules,
    limits,
  });
}
