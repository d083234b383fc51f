/**
 * The egress proxy's checks beyond the allowlist decision (which is model/decide.ts's
 * decideEgress, shared with `explain`): are the addresses a name resolved to acceptable?
 */
import { isIPv4, isIPv6 } from 'node:net';
import { canonicalHost, decideEgress, type EgressDecision } from '../model/decide.js';
import type { NetDeny, NetGrant } from '../model/types.js';

export { canonicalHost };

export interface EgressRules {
  grants: readonly NetGrant[];
  denies: readonly NetDeny[];
}

/** The proxy's decision: the same function `explain` uses. */
export function decideEgressFor(rules: EgressRules, host: string, port: number): EgressDecision {
  return decideEgress(rules.grants, rules.denies, host, port);
}

function v4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}
const V4_INTERNAL: [string, number][] = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
];

/**
 * True for loopback, private, link-local, shared, multicast, reserved and unspecified
 * addresses (IPv4, IPv6, and IPv4-mapped IPv6): addresses a public name should never
 * resolve to, and the targets of DNS rebinding.
 */
export function isInternalAddress(address: string): boolean {
  let a = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) a = mapped[1]!;
  if (isIPv4(a)) {
    const n = v4ToInt(a);
    return V4_INTERNAL.some(([base, bits]) => (n >>> (32 - bits)) === (v4ToInt(base) >>> (32 - bits)));
  }
  if (isIPv6(a)) {
    if (a === '::' || a === '::1') return true;
    const first = parseInt(a.split(':')[0] || '0', 16);
    return (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00;
  }
  return true;
}

/**
 * Filters a name's resolved addresses: an internal address is acceptable only when a
 * literal grant names it (with this port). Returns the first acceptable address, or why none is.
 */
export function pickAddress(rules: EgressRules, addresses: readonly string[], port: number): { ok: true; address: string } | { ok: false; reason: string } {
  if (addresses.length === 0) return { ok: false, reason: 'the name does not resolve' };
  for (const a of addresses) {
    if (!isInternalAddress(a)) return { ok: true, address: a };
    const literal = rules.grants.some((g) => (g.hostKind === 'ipv4' || g.hostKind === 'ipv6') && canonicalHost(g.host) === canonicalHost(a) && g.port === port);
    if (literal) return { ok: true, address: a };
  }
  return { ok: false, reason: `the name resolves to ${addresses.join(', ')}, an internal address that is not itself granted (DNS rebinding protection)` };
}
