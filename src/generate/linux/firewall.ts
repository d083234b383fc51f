/**
 * Owner-match firewall rules for the agent's uid: iptables, ip6tables and nftables
 * (templates/linux/agent.iptables, .ip6tables, .nft). Pure.
 *
 * Host names cannot be enforced by a packet filter (their addresses change and a
 * lookup at load time is itself a leak), so name grants are enforced by the egress
 * proxy and the firewall admits only the proxy port on loopback; literal address
 * grants are admitted directly. Literal address denies come first, since deny wins.
 */
import type { Model, NetDeny, NetGrant } from '../../model/types.js';
import { viaProxy } from '../../model/grants.js';
import { iptablesChain, ipv4, ipv6, netfilterComment, nftTable, port } from '../../escape/netfilter.js';
import { header } from '../header.js';
import { render, template, type Templates } from '../template.js';

type Family = 4 | 6;

const familyOf = (kind: string): Family | undefined => (kind === 'ipv4' ? 4 : kind === 'ipv6' ? 6 : undefined);

function literalDenies(model: Model, family: Family): NetDeny[] {
  return model.denies.net.filter((d) => familyOf(d.hostKind) === family);
}
function literalGrants(model: Model, family: Family): NetGrant[] {
  return model.grants.net.filter((g) => familyOf(g.hostKind) === family);
}

function iptablesRules(model: Model, family: Family, chain: string): string[] {
  const rules: string[] = [];
  const addr = (h: string) => (family === 4 ? `${ipv4(h)}/32` : `${ipv6(h)}/128`);
  for (const d of literalDenies(model, family)) {
    const dport = d.port === 'any' ? '' : ` --dport ${port(d.port)}`;
    rules.push(`-A ${chain} -d ${addr(d.host)} -p tcp${dport} -m comment --comment ${netfilterComment(d.source.pointer)} -j REJECT --reject-with tcp-reset`);
    rules.push(`-A ${chain} -d ${addr(d.host)} -m comment --comment ${netfilterComment(d.source.pointer)} -j REJECT`);
  }
  if (model.grants.net.some(viaProxy)) {
    const lo = family === 4 ? '127.0.0.1/32' : '::1/128';
    rules.push(`-A ${chain} -o lo -d ${lo} -p tcp --dport ${port(model.egress.proxyPort)} -m comment --comment "egress proxy" -j ACCEPT`);
  }
  for (const g of literalGrants(model, family)) {
    rules.push(`-A ${chain} -d ${addr(g.host)} -p tcp --dport ${port(g.port)} -m comment --comment ${netfilterComment(g.source.pointer)} -j ACCEPT`);
  }
  return rules;
}

export function iptablesRestore(model: Model, templates: Templates, family: Family): string {
  const chain = iptablesChain(model.name);
  const file = family === 4 ? 'linux/agent.iptables' : 'linux/agent.ip6tables';
  return render(file, template(templates, file), {
    header: header(model, '#'),
    ...(family === 6 ? { name: model.name } : {}),
    uid: String(model.agent.uid),
    chain,
    rules: iptablesRules(model, family, chain),
  });
}

export function nftRuleset(model: Model, templates: Templates): string {
  const table = nftTable(model.name);
  const rules: string[] = [];
  for (const family of [4, 6] as const) {
    const match = family === 4 ? 'ip daddr' : 'ip6 daddr';
    const check = family === 4 ? ipv4 : ipv6;
    for (const d of literalDenies(model, family)) {
      const dport = d.port === 'any' ? '' : ` tcp dport ${port(d.port)}`;
      rules.push(`${match} ${check(d.host)}${dport} reject comment ${netfilterComment(d.source.pointer)}`);
    }
  }
  if (model.grants.net.some(viaProxy)) {
    rules.push(`oifname "lo" ip daddr 127.0.0.1 tcp dport ${port(model.egress.proxyPort)} accept comment "egress proxy"`);
    rules.push(`oifname "lo" ip6 daddr ::1 tcp dport ${port(model.egress.proxyPort)} accept comment "egress proxy"`);
  }
  for (const family of [4, 6] as const) {
    const match = family === 4 ? 'ip daddr' : 'ip6 daddr';
    const check = family === 4 ? ipv4 : ipv6;
    for (const g of literalGrants(model, family)) {
      rules.push(`${match} ${check(g.host)} tcp dport ${port(g.port)} accept comment ${netfilterComment(g.source.pointer)}`);
    }
  }
  return render('agent.nft', template(templates, 'linux/agent.nft'), {
    header: header(model, '#'),
    name: model.name,
    table,
    uid: String(model.agent.uid),
    rules: rules.map((r) => `    ${r}`),
  });
}
