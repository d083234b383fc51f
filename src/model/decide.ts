/**
 * Decisions over the model: allowed or denied, and which rule decided. Pure.
 *
 * Order, for every kind of request: a matching deny wins; otherwise the most
 * specific matching grant allows; otherwise the default deny refuses.
 */

import { isWithin, lexicalPath } from './paths.js';
import { parseGrant, type ScopeResult } from './grammar.js';
import type { Model, NetDeny, NetGrant, RuleSource } from './types.js';
import { canonicalHost } from './address.js';
import { systemView } from './system-view.js';

export interface Decision {
  decision: 'allow' | 'deny';
  /** The rule that decided; undefined for the default deny. */
  rule: RuleSource | undefined;
  /** Plain-language reason. */
  reason: string;
  /** The request as normalised. */
  request: string;
}

const ruleText = (s: RuleSource) => (s.origin === 'preset' ? `${s.text} (preset ${s.preset}, ${s.pointer})` : `${s.text} (${s.pointer})`);

/** True when a host grant/deny pattern covers `host`. `*.example.com` covers subdomains, not the apex. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) {
    const suffix = pattern.slice(1);
    return host.endsWith(suffix) && host.length > suffix.length;
  }
  return pattern === host;
}

export type EgressDecision = { allow: true; rule: RuleSource } | { allow: false; rule: RuleSource | undefined; reason: string };

/** Canonical host: an IP literal in its canonical form, or a name lowercased without its trailing dot. */
export { canonicalHost };

/**
 * The one network decision, used by `explain` and by the egress proxy for every
 * connection: a matching deny wins, then a grant for the host (exact, or a subdomain
 * of a wildcard) and this port, else the default deny.
 */
export function decideEgress(grants: readonly NetGrant[], denies: readonly NetDeny[], rawHost: string, port: number): EgressDecision {
  const host = canonicalHost(rawHost);
  const deny = denies.find((d) => hostMatches(d.host, host) && (d.port === 'any' || d.port === port));
  if (deny) return { allow: false, rule: deny.source, reason: `denied by ${ruleText(deny.source)}; deny always wins over grants` };
  const grant = grants.find((g) => hostMatches(g.host, host) && g.port === port);
  if (grant) return { allow: true, rule: grant.source };
  const otherPort = grants.find((g) => hostMatches(g.host, host));
  if (otherPort) return { allow: false, rule: undefined, reason: `${ruleText(otherPort.source)} allows port ${otherPort.port} only` };
  return { allow: false, rule: undefined, reason: grants.length === 0 ? 'this agent is granted no network access' : `${host} is not in the allowlist` };
}

/** Decides a request written in the grant grammar (`fs:read:/x`, `net:connect:h:443`, `exec:/bin/sh`). */
export function decide(model: Model, requestText: string): ScopeResult<Decision> {
  const parsed = parseGrant(requestText);
  if (!parsed.ok) return parsed;
  const req = parsed.value;
  switch (req.type) {
    case 'fs': {
      const lex = lexicalPath(req.path, model.home);
      if (!lex.ok) return { ok: false, message: lex.message };
      const path = lex.literal;
      const request = `fs:${req.access}:${path}`;
      const deny = model.denies.fs
        .filter((d) => isWithin(path, d.path) && (d.access === 'all' || req.access === 'write'))
        .sort((a, b) => b.path.length - a.path.length)[0];
      if (deny) return { ok: true, value: { decision: 'deny', rule: deny.source, request, reason: `denied by ${ruleText(deny.source)}; deny always wins over grants` } };
      // What the box shows besides the grants: system folders read-only, secrets covered, a
      // private /tmp. A grant is bound over a covered secret, as the box plan binds it.
      const sys = systemView(model.runtime.kind, path, req.access);
      const grant = model.grants.fs
        .filter((g) => isWithin(path, g.path) && (req.access === 'read' || g.access === 'write'))
        .sort((a, b) => b.path.length - a.path.length)[0];
      if (grant) return { ok: true, value: { decision: 'allow', rule: grant.source, request, reason: `allowed by ${ruleText(grant.source)}` } };
      if (sys?.kind === 'masked') return { ok: true, value: { decision: 'deny', rule: undefined, request, reason: `denied: ${sys.reason}` } };
      // A program the agent may run, it may also read (the box binds it read-only; Landlock's execute right includes reading).
      const runnable = req.access === 'read' && sys?.kind !== 'system' ? model.grants.exec.filter((g) => isWithin(path, g.path)).sort((a, b) => b.path.length - a.path.length)[0] : undefined;
      if (runnable) return { ok: true, value: { decision: 'allow', rule: runnable.source, request, reason: `allowed: ${ruleText(runnable.source)} lets it run, and so read, what is there` } };
      const readOnly = req.access === 'write' ? model.grants.fs.find((g) => isWithin(path, g.path)) : undefined;
      // The session's own /tmp: a write lands there (never on the host's), a read finds only what the agent put there.
      if (sys?.kind === 'private' && !readOnly) {
        return { ok: true, value: req.access === 'write' ? { decision: 'allow', rule: undefined, request, reason: `allowed: ${sys.reason}; the host's ${path} is not touched` } : { decision: 'deny', rule: undefined, request, reason: `denied: ${sys.reason}, so the host's ${path} is not visible (only what the agent itself wrote there)` } };
      }
      if (sys?.kind === 'system') return { ok: true, value: { decision: req.access === 'read' ? 'allow' : 'deny', rule: undefined, request, reason: `${req.access === 'read' ? 'allowed' : 'denied'}: ${sys.reason}` } };
      const reason = readOnly
        ? `denied: ${ruleText(readOnly.source)} grants reading only; writing needs fs:write`
        : 'denied: no grant covers this path (everything not granted is denied)';
      return { ok: true, value: { decision: 'deny', rule: undefined, request, reason } };
    }
    case 'net': {
      const hostText = req.hostKind === 'ipv6' ? `[${req.host}]` : req.host;
      const request = `net:connect:${hostText}:${req.port}`;
      const d = decideEgress(model.grants.net, model.denies.net, req.host, req.port);
      return { ok: true, value: d.allow ? { decision: 'allow', rule: d.rule, request, reason: `allowed by ${ruleText(d.rule)}` } : { decision: 'deny', rule: d.rule, request, reason: `denied: ${d.reason}` } };
    }
    case 'exec': {
      const lex = lexicalPath(req.path, model.home);
      if (!lex.ok) return { ok: false, message: lex.message };
      const path = lex.literal;
      const request = `exec:${path}`;
      const deny = model.denies.exec.find((d) => isWithin(path, d.path)) ?? model.denies.fs.find((d) => d.access === 'all' && isWithin(path, d.path));
      if (deny) return { ok: true, value: { decision: 'deny', rule: deny.source, request, reason: `denied by ${ruleText(deny.source)}; deny always wins over grants` } };
      if (model.agent.command[0] === path) {
        return { ok: true, value: { decision: 'allow', rule: undefined, request, reason: 'allowed: it is the agent program (agent.command[0])' } };
      }
      const grant = model.grants.exec.filter((g) => isWithin(path, g.path)).sort((a, b) => b.path.length - a.path.length)[0];
      if (grant) return { ok: true, value: { decision: 'allow', rule: grant.source, request, reason: `allowed by ${ruleText(grant.source)}` } };
      return { ok: true, value: { decision: 'deny', rule: undefined, request, reason: 'denied: no exec grant covers this program' } };
    }
  }
}
