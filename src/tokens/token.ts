/**
 * Capability tokens: every session's scopes, lifetime and identity, signed by the device
 * key (ed25519). Compact JWS (`header.payload.signature`, alg EdDSA, by `jose` with the
 * algorithm fixed), so standard JWT tooling can read them. A token is accepted only in
 * its one canonical spelling: each part strict base64url (no padding, no whitespace, no
 * junk, no non-zero trailing bits) and the header exactly agentbox's. Revocation is a
 * list of jti in STATE/revoked.json, written atomically; a revoked or expired token ends
 * its session.
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CompactSign, compactVerify } from 'jose';
import type { Model } from '../model/types.js';
import { effectiveFs } from '../model/grants.js';
import { isWithin } from '../model/paths.js';

export interface TokenClaims {
  /** Token id, for revocation. */
  jti: string;
  /** The agent. */
  sub: string;
  /** The session it was minted for, or `-` for a token minted ahead of a launch. */
  sid: string;
  /** Normalised grants: fs:read:/abs, fs:write:/abs, net:connect:host:port, exec:/abs. */
  scopes: string[];
  iat: number;
  /** Expiry (seconds since the epoch), or null for none. */
  exp: number | null;
  iss: 'agentbox';
}

const HEADER = { alg: 'EdDSA', typ: 'JWT' } as const;
const B64URL = /^[A-Za-z0-9_-]+$/;

/** True when `part` is exactly how base64url writes its own bytes (one spelling per value). */
export function canonicalBase64url(part: string): boolean {
  return B64URL.test(part) && Buffer.from(part, 'base64url').toString('base64url') === part;
}

/** The normalised scopes a model grants (after presets and denies). */
export function modelScopes(model: Model): string[] {
  const { fs } = effectiveFs(model);
  return [
    ...fs.map((g) => `fs:${g.access}:${g.path}`),
    ...model.grants.net.map((g) => `net:connect:${g.hostKind === 'ipv6' ? `[${g.host}]` : g.host}:${g.port}`),
    ...model.grants.exec.map((g) => `exec:${g.path}`),
  ];
}

export async function mintToken(key: KeyObject, claims: Omit<TokenClaims, 'jti' | 'iat' | 'iss'> & { now?: number }): Promise<{ token: string; claims: TokenClaims }> {
  const now = claims.now ?? Math.floor(Date.now() / 1000);
  const full: TokenClaims = { jti: randomUUID(), sub: claims.sub, sid: claims.sid, scopes: claims.scopes, iat: now, exp: claims.exp, iss: 'agentbox' };
  const token = await new CompactSign(Buffer.from(JSON.stringify(full))).setProtectedHeader(HEADER).sign(key);
  return { token, claims: full };
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; reason: string; claims?: TokenClaims };

export async function checkToken(token: string, key: KeyObject, revoked: ReadonlySet<string>, now = Math.floor(Date.now() / 1000)): Promise<TokenCheck> {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every(canonicalBase64url)) return { ok: false, reason: 'not an agentbox token (expected header.payload.signature in strict base64url)' };
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
  } catch {
    header = undefined;
  }
  if (JSON.stringify(header) !== JSON.stringify(HEADER)) return { ok: false, reason: 'not an agentbox token (the header must be exactly {"alg":"EdDSA","typ":"JWT"})' };
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(token, key, { algorithms: ['EdDSA'] }));
  } catch {
    return { ok: false, reason: 'the signature does not match this device key (forged or altered)' };
  }
  let claims: TokenClaims;
  try {
    claims = JSON.parse(Buffer.from(payload).toString('utf8')) as TokenClaims;
  } catch {
    return { ok: false, reason: 'the payload is not JSON' };
  }
  if (typeof claims.jti !== 'string' || typeof claims.sub !== 'string' || !Array.isArray(claims.scopes) || !claims.scopes.every((s) => typeof s === 'string') || (claims.exp !== null && typeof claims.exp !== 'number')) {
    return { ok: false, reason: 'the payload is not an agentbox token (jti, sub, scopes, exp)' };
  }
  if (revoked.has(claims.jti)) return { ok: false, reason: `token ${claims.jti} was revoked`, claims };
  if (claims.exp !== null && claims.exp <= now) return { ok: false, reason: `token ${claims.jti} expired at ${new Date(claims.exp * 1000).toISOString()}`, claims };
  return { ok: true, claims };
}

const revokedFile = (state: string) => join(state, 'revoked.json');

export function readRevoked(state: string): Set<string> {
  const f = revokedFile(state);
  if (!existsSync(f)) return new Set();
  try {
    return new Set((JSON.parse(readFileSync(f, 'utf8')) as { jti: string }[]).map((r) => r.jti));
  } catch {
    return new Set();
  }
}

/** Adds a jti to the revocation list (atomically); returns false if it was already there. */
export function revoke(state: string, jti: string, reason: string): boolean {
  const f = revokedFile(state);
  const list = existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as { jti: string; at: string; reason: string }[]) : [];
  if (list.some((r) => r.jti === jti)) return false;
  list.push({ jti, at: new Date().toISOString(), reason });
  writeFileSync(`${f}.${process.pid}`, JSON.stringify(list, null, 2) + '\n', { mode: 0o600 });
  renameSync(`${f}.${process.pid}`, f);
  return true;
}

/**
 * Narrows a model to the token's scopes: a grant survives only if the token covers it.
 * A file-system grant is covered by a scope for it or for a folder above it with the same
 * or wider access (tokens carry the effective grants, where a nested grant is folded into
 * the one above it); a grant a deny masks grants nothing, and is kept without a warning.
 */
export function intersect(model: Model, scopes: readonly string[]): { model: Model; dropped: string[] } {
  const allowed = new Set(scopes);
  const fsScopes = scopes.flatMap((s) => {
    const m = /^fs:(read|write):(\/.*)$/.exec(s);
    return m ? [{ access: m[1] as 'read' | 'write', path: m[2]! }] : [];
  });
  const masked = new Set(effectiveFs(model).masked.map((x) => x.grant));
  const dropped: string[] = [];
  const keep = <T extends { source: { text: string } }>(list: T[], covered: (g: T) => boolean) =>
    list.filter((g) => {
      const ok = covered(g);
      if (!ok) dropped.push(g.source.text);
      return ok;
    });
  return {
    model: {
      ...model,
      grants: {
        fs: keep(model.grants.fs, (g) => masked.has(g) || fsScopes.some((s) => isWithin(g.path, s.path) && (s.access === 'write' || g.access === 'read'))),
        net: keep(model.grants.net, (g) => allowed.has(`net:connect:${g.hostKind === 'ipv6' ? `[${g.host}]` : g.host}:${g.port}`)),
        exec: keep(model.grants.exec, (g) => allowed.has(`exec:${g.path}`)),
      },
    },
    dropped,
  };
}
