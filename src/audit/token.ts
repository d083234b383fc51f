/**
 * Capability tokens: every session's scopes, lifetime and identity, signed by the device
 * key (ed25519). Compact JWS (`header.payload.signature`, alg EdDSA), so standard JWT
 * tooling can read them. Revocation is a list of jti in STATE/revoked.json, written
 * atomically; a revoked or expired token ends its session.
 */
import { randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../model/types.js';
import { effectiveFs } from '../plan/plan.js';

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

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const HEADER = b64u(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' }));

/** The normalised scopes a model grants (after presets and denies). */
export function modelScopes(model: Model): string[] {
  const { fs } = effectiveFs(model);
  return [
    ...fs.map((g) => `fs:${g.access}:${g.path}`),
    ...model.grants.net.map((g) => `net:connect:${g.hostKind === 'ipv6' ? `[${g.host}]` : g.host}:${g.port}`),
    ...model.grants.exec.map((g) => `exec:${g.path}`),
  ];
}

export function mintToken(key: KeyObject, claims: Omit<TokenClaims, 'jti' | 'iat' | 'iss'> & { now?: number }): { token: string; claims: TokenClaims } {
  const now = claims.now ?? Math.floor(Date.now() / 1000);
  const full: TokenClaims = { jti: randomUUID(), sub: claims.sub, sid: claims.sid, scopes: claims.scopes, iat: now, exp: claims.exp, iss: 'agentbox' };
  const payload = b64u(JSON.stringify(full));
  const sig = b64u(sign(null, Buffer.from(`${HEADER}.${payload}`), key));
  return { token: `${HEADER}.${payload}.${sig}`, claims: full };
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; reason: string; claims?: TokenClaims };

export function checkToken(token: string, key: KeyObject, revoked: ReadonlySet<string>, now = Math.floor(Date.now() / 1000)): TokenCheck {
  const parts = token.trim().split('.');
  if (parts.length !== 3 || parts[0] !== HEADER) return { ok: false, reason: 'not an agentbox token (expected header.payload.signature with alg EdDSA)' };
  let good = false;
  try {
    good = verify(null, Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2]!, 'base64url'));
  } catch {
    good = false;
  }
  if (!good) return { ok: false, reason: 'the signature does not match this device key (forged or altered)' };
  let claims: TokenClaims;
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as TokenClaims;
  } catch {
    return { ok: false, reason: 'the payload is not JSON' };
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

/** Narrows a model to the token's scopes: a grant survives only if the token names it. */
export function intersect(model: Model, scopes: readonly string[]): { model: Model; dropped: string[] } {
  const allowed = new Set(scopes);
  const dropped: string[] = [];
  const keep = <T extends { source: { text: string } }>(list: T[], scope: (g: T) => string) =>
    list.filter((g) => {
      const ok = allowed.has(scope(g));
      if (!ok) dropped.push(g.source.text);
      return ok;
    });
  return {
    model: {
      ...model,
      grants: {
        fs: keep(model.grants.fs, (g) => `fs:${g.access}:${g.path}`),
        net: keep(model.grants.net, (g) => `net:connect:${g.hostKind === 'ipv6' ? `[${g.host}]` : g.host}:${g.port}`),
        exec: keep(model.grants.exec, (g) => `exec:${g.path}`),
      },
    },
    dropped,
  };
}
