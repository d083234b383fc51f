/**
 * The certificates the egress proxy trusts for upstream servers: the host's system
 * store (a PEM bundle, /etc/ssl/certs/ca-certificates.crt on Debian, or
 * AGENTBOX_SYSTEM_CA), plus the manifest's `egress.trust` files (an enterprise CA).
 * Where the host has no system bundle, Node's bundled Mozilla roots stand in.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { AgentboxError } from '../errors.js';
import { systemCaBundle } from '../env.js';

const PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The system bundle's text, or undefined when the host has none. */
export function systemBundle(): string | undefined {
  try {
    const text = readFileSync(systemCaBundle(), 'utf8');
    return text.includes('-----BEGIN CERTIFICATE-----') ? text : undefined;
  } catch {
    return undefined;
  }
}

/** Every certificate the proxy accepts an upstream chain to, one PEM each. */
export function upstreamTrust(extra: readonly string[]): string[] {
  const sys = systemBundle();
  const out = sys ? [...sys.matchAll(PEM)].map((m) => m[0]) : [...rootCertificates];
  for (const f of extra) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new AgentboxError('CONTROL_UNAVAILABLE', `egress.trust names ${f}, which cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}); nothing was started`);
    }
    const certs = [...text.matchAll(PEM)].map((m) => m[0]);
    if (certs.length === 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `egress.trust names ${f}, which holds no PEM certificate (-----BEGIN CERTIFICATE-----); nothing was started`);
    out.push(...certs);
  }
  return out;
}
