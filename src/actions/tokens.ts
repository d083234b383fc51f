/**
 * Capability tokens as a person uses them: mint one for a later launch, verify one,
 * revoke one by id, and check the token a launch runs under (its scopes intersected
 * with the manifest). Every mint and revocation is audited.
 */
import { readFileSync } from 'node:fs';
import { AgentboxError } from '../errors.js';
import { AuditSink, deviceKey } from '../audit/sink.js';
import { checkToken, intersect, mintToken, modelScopes, readRevoked, revoke, type TokenCheck, type TokenClaims } from '../tokens/token.js';
import type { Model } from '../model/types.js';
import { stateDir } from '../session/state.js';
import type { Notify } from './notify.js';

/** Reads a token given inline or as @FILE (or a path to a file holding it). */
export function readTokenArg(arg: string): string {
  if (arg.startsWith('@')) return readFileSync(arg.slice(1), 'utf8').trim();
  if (arg.split('.').length === 3 && !arg.includes('/')) return arg.trim();
  return readFileSync(arg, 'utf8').trim();
}

export async function mintFor(model: Model, seconds: number | undefined): Promise<{ token: string; claims: TokenClaims }> {
  const state = stateDir();
  const minted = await mintToken(deviceKey(state).privateKey, { sub: model.name, sid: '-', scopes: modelScopes(model), exp: seconds !== undefined ? Math.floor(Date.now() / 1000) + seconds : null });
  new AuditSink(state).append({ session: '-', agent: model.name, action: 'token.minted', resource: minted.claims.jti, decision: 'info', reason: 'minted for a later launch', details: { scopes: minted.claims.scopes, exp: minted.claims.exp } });
  return minted;
}

export async function verifyToken(arg: string): Promise<TokenCheck> {
  const state = stateDir();
  return checkToken(readTokenArg(arg), deviceKey(state).publicKey, readRevoked(state));
}

/** Revokes a token id; false when it was already revoked. */
export function revokeId(jti: string, reason: string): boolean {
  if (!/^[0-9a-f-]{36}$/.test(jti)) throw new AgentboxError('USAGE', `${jti} is not a token id (a UUID)`);
  const state = stateDir();
  const added = revoke(state, jti, reason);
  if (added) new AuditSink(state).append({ session: '-', agent: '-', action: 'token.revoked', resource: jti, decision: 'deny', reason });
  return added;
}

/** The model a launch under `--token` runs with: exactly the token's scopes within the manifest's (exit 3 if refused). */
export async function narrowToToken(model: Model, arg: string, notify: Notify): Promise<{ model: Model; exp: number | null }> {
  const check = await verifyToken(arg);
  if (!check.ok) throw new AgentboxError('DENIED', `--token refused: ${check.reason}`);
  if (check.claims.sub !== model.name) throw new AgentboxError('DENIED', `--token refused: it was minted for agent ${check.claims.sub}, not ${model.name}`);
  const narrowed = intersect(model, check.claims.scopes);
  for (const d of narrowed.dropped) notify.warn(`${d}: not in the token's scopes; not granted`);
  return { model: narrowed.model, exp: check.claims.exp };
}
