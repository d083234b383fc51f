/**
 * The hashes agentbox uses, in one place: sha256 hex digests (manifest and artifact
 * hashes, the audit chain, evidence) and stable identifiers derived from a manifest.
 * Pure.
 */
import { createHash } from 'node:crypto';

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A GUID/UUID (RFC 4122 version-4 layout, variant 8) derived from the agent name, the
 * manifest hash and a purpose, so regenerating keeps the same policy and payload ids.
 */
export function stableUuid(name: string, manifestSha256: string, purpose: string): string {
  const h = sha256Hex(`${name}\0${manifestSha256}\0${purpose}`);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`.toUpperCase();
}
