/**
 * Brokered credentials at the proxy. The box holds only a placeholder
 * (`agentbox:NAME:RANDOM`); the launcher holds the secret.
 *
 * - In a request to the credential's own host (decrypted, or plain HTTP) the proxy
 *   sets the header, query parameter or `Authorization: Bearer` to the secret,
 *   whatever the agent sent there, so the agent can neither see nor choose the key.
 * - The placeholder anywhere in a request to any other host (URL, header, body, or a
 *   host name's labels) is refused: something is carrying it somewhere it does not
 *   belong (a prompt-injected agent sending its "key" out).
 * - The real secret in any request the proxy can read, to any host, is refused by a
 *   built-in detector per secret (raw, percent-encoded, base64, hex).
 * - The audit log names the credential, the host and the header, and a keyed hash of
 *   the secret (so two sessions can be compared), never the value.
 */
import { randomBytes } from 'node:crypto';
import type { CredentialSpec } from '../model/types.js';
import type { Detector } from '../policy/dlp.js';

export interface Brokered {
  spec: CredentialSpec;
  placeholder: string;
  secret: string;
  /** Keyed hash of the secret (dlpDigest), for the audit log. */
  digest: string;
}

/** A fresh placeholder for a credential: recognisable, unguessable, never a working key. */
export const newPlaceholder = (name: string) => `agentbox:${name}:${randomBytes(18).toString('base64url')}`;

/** The random part of a placeholder: what a detector looks for (it survives losing the prefix, or a host label). */
export const placeholderToken = (p: string) => p.slice(p.lastIndexOf(':') + 1);

function literal(name: string, value: string, forms: string[]): Detector {
  const all = [...new Set([value, ...forms])].filter((f) => f.length >= 6);
  return {
    name,
    find: (text) => {
      for (const f of all) if (text.includes(f)) return f;
      // Host names and some decoders lower-case: compare case-insensitively on long forms.
      const lower = text.toLowerCase();
      for (const f of all) if (f.length >= 16 && lower.includes(f.toLowerCase())) return f;
      return undefined;
    },
  };
}

const encodings = (v: string) => [encodeURIComponent(v), Buffer.from(v).toString('base64').replace(/=+$/, ''), Buffer.from(v).toString('base64url'), Buffer.from(v).toString('hex')];

/**
 * The detectors for a request to `host`: every secret (in any form), and the
 * placeholders of credentials that belong to other hosts.
 */
export function credentialDetectors(brokered: readonly Brokered[], host: string): Detector[] {
  const out: Detector[] = [];
  for (const b of brokered) {
    out.push(literal(`brokered-secret:${b.spec.name}`, b.secret, encodings(b.secret)));
    if (b.spec.host !== host) {
      const token = placeholderToken(b.placeholder);
      out.push(literal(`placeholder:${b.spec.name}`, token, [b.placeholder, encodeURIComponent(b.placeholder)]));
    }
  }
  return out;
}

/** What was injected, for the audit log (never the value). */
export interface Injection {
  credential: string;
  host: string;
  via: string;
  digest: string;
}

/**
 * Sets each credential for `host` in the request's headers (lower-case names) and
 * path: the agent's own value there, if any, is replaced. Returns the new path and
 * what was injected.
 */
export function inject(brokered: readonly Brokered[], host: string, headers: Record<string, string | string[]>, path: string): { path: string; injected: Injection[] } {
  const injected: Injection[] = [];
  for (const b of brokered) {
    if (b.spec.host !== host) continue;
    const i = b.spec.inject;
    if (i.kind === 'header') {
      headers[i.name] = b.secret;
      injected.push({ credential: b.spec.name, host, via: `header ${i.name}`, digest: b.digest });
    } else if (i.kind === 'bearer') {
      headers.authorization = `Bearer ${b.secret}`;
      injected.push({ credential: b.spec.name, host, via: 'Authorization: Bearer', digest: b.digest });
    } else {
      const q = path.indexOf('?');
      const base = q < 0 ? path : path.slice(0, q);
      const params = new URLSearchParams(q < 0 ? '' : path.slice(q + 1));
      params.set(i.name, b.secret);
      path = `${base}?${params.toString()}`;
      injected.push({ credential: b.spec.name, host, via: `query ${i.name}`, digest: b.digest });
    }
  }
  return { path, injected };
}

/** Whether a credential belongs to this host (its requests are always decrypted). */
export const brokersFor = (brokered: readonly Brokered[], host: string) => brokered.some((b) => b.spec.host === host);

/** Host names are content: every secret and every placeholder token, in a CONNECT or Host name. */
export function hostDetectors(brokered: readonly Brokered[]): Detector[] {
  return brokered.flatMap((b) => [literal(`brokered-secret:${b.spec.name}`, b.secret, encodings(b.secret)), literal(`placeholder:${b.spec.name}`, placeholderToken(b.placeholder), [])]);
}
