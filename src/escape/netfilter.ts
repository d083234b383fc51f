/**
 * Netfilter names and addresses (iptables-restore and nft syntax).
 *
 * Nothing free-form from a manifest reaches these files: chain and table names are
 * derived from the validated agent name, addresses are re-checked here, and rule
 * comments carry only the manifest location (`capabilities[3]`), never its text.
 */
import { sha256Hex } from '../hash.js';
import { UnrepresentableError } from './errors.js';

/** iptables chain name (at most 28 characters). */
export function iptablesChain(agent: string): string {
  if (!/^[a-z][a-z0-9-]*$/.test(agent)) throw new UnrepresentableError('an iptables chain name', agent, 'not an agent name');
  const full = `AGENTBOX-${agent.toUpperCase()}`;
  if (full.length <= 28) return full;
  const hash = sha256Hex(agent).slice(0, 6).toUpperCase();
  return `AGENTBOX-${agent.toUpperCase().slice(0, 12)}-${hash}`;
}

/** nft table name: an identifier. */
export function nftTable(agent: string): string {
  if (!/^[a-z][a-z0-9-]*$/.test(agent)) throw new UnrepresentableError('an nft table name', agent, 'not an agent name');
  return `agentbox_${agent.replace(/-/g, '_')}`;
}

/** A comment text limited to the safe location alphabet. */
export function netfilterComment(text: string): string {
  if (!/^[A-Za-z0-9 .\[\]_-]{1,200}$/.test(text)) throw new UnrepresentableError('a netfilter comment', text, 'only locations such as capabilities[3] are written');
  return `"${text}"`;
}

/** An IPv4 address re-checked at the boundary. */
export function ipv4(addr: string): string {
  if (!/^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/.test(addr)) {
    throw new UnrepresentableError('a netfilter address', addr, 'not an IPv4 address');
  }
  return addr;
}

/** An IPv6 address re-checked at the boundary (hex digits, colons and an IPv4 tail only). */
export function ipv6(addr: string): string {
  if (!/^[0-9a-f:.]{2,45}$/.test(addr) || !addr.includes(':')) throw new UnrepresentableError('a netfilter address', addr, 'not an IPv6 address');
  return addr;
}

export function port(p: number): string {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new UnrepresentableError('a netfilter port', String(p), 'not a port');
  return String(p);
}
