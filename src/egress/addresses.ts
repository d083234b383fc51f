/**
 * The egress proxy's checks beyond the allowlist decision (which is model/decide.ts's
 * decideEgress, shared with `explain`): are the addresses a name resolved to acceptable?
 * Addresses are compared in canonical form (model/address.ts), so no spelling of an
 * internal address passes for an external one.
 */
import { canonicalHost, isInternalAddress } from '../model/address.js';
import { decideEgress, type EgressDecision } from '../model/decide.js';
import type { NetDeny, NetGrant } from '../model/types.js';

export { canonicalHost, isInternalAddress };

export interface EgressRules {
  grants: readonly NetGrant[];
  denies: readonly NetDeny[];
  /** `agentbox learn`: what no deny refuses is allowed, by LEARN_RULE (internal addresses still need a literal grant). */
  learn?: boolean;
}

export const LEARN_RULE = { origin: 'manifest', file: 'agentbox learn', pointer: 'learn', text: 'learn mode: any host, recorded' } as const;

/** The proxy's decision: the same function `explain` uses. */
export function decideEgressFor(rules: EgressRules, host: string, port: number): EgressDecision {
  const d = decideEgress(rules.grants, rules.denies, host, port);
  if (!d.allow && rules.learn && d.rule === undefined) return { allow: true, rule: LEARN_RULE };
  return d;
}

/** True when a literal grant names exactly this address and port. */
export function literallyGranted(rules: EgressRules, address: string, port: number): boolean {
  const a = canonicalHost(address);
  return rules.grants.some((g) => (g.hostKind === 'ipv4' || g.hostKind === 'ipv6') && canonicalHost(g.host) === a && g.port === port);
}

/**
 * Filters a name's resolved addresses: an internal address is acceptable only when a
 * literal grant names it (with this port). Returns the first acceptable address, or why none is.
 */
export function pickAddress(rules: EgressRules, addresses: readonly string[], port: number): { ok: true; address: string } | { ok: false; reason: string } {
  if (addresses.length === 0) return { ok: false, reason: 'the name does not resolve' };
  for (const raw of addresses) {
    const a = canonicalHost(raw);
    if (!isInternalAddress(a) || literallyGranted(rules, a, port)) return { ok: true, address: a };
  }
  return { ok: false, reason: `the name resolves to ${addresses.join(', ')}, an internal address that is not itself granted (DNS rebinding protection)` };
}
