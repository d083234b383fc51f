/**
 * Attacks on capability tokens: a forged or altered token, another device's key, an
 * expired token, a revoked one, and a token for one agent used to launch another.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkToken, intersect, mintToken, modelScopes } from '../../src/audit/token.js';
import { model } from '../helpers/load.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: t }
extends: [organizer]
agent: { command: [/usr/bin/true] }
capabilities: [fs:read:~/Documents, fs:write:~/out, net:connect:api.example.com:443, "net:connect:[::1]:8080", exec:/usr/bin/python3]
`);

describe('capability tokens', () => {
  it('mints the effective grants as normalised scopes, and verifies', () => {
    const { token, claims } = mintToken(privateKey, { sub: 't', sid: 's1', scopes: modelScopes(m), exp: null });
    expect(claims.scopes).toEqual(['fs:read:/home/user/Documents', 'fs:write:/home/user/out', 'net:connect:api.example.com:443', 'net:connect:[::1]:8080', 'exec:/usr/bin/python3']);
    expect(checkToken(token, publicKey, new Set())).toMatchObject({ ok: true, claims: { sub: 't', sid: 's1' } });
  });
  it('refuses an altered payload, another key, expiry and revocation', () => {
    const { token, claims } = mintToken(privateKey, { sub: 't', sid: 's1', scopes: ['fs:read:/x'], exp: 2000, now: 1000 });
    const [h, p, s] = token.split('.');
    const widened = Buffer.from(JSON.stringify({ ...claims, scopes: ['fs:write:/'] })).toString('base64url');
    expect(checkToken(`${h}.${widened}.${s}`, publicKey, new Set(), 1500)).toMatchObject({ ok: false, reason: expect.stringMatching(/signature does not match/) });
    expect(checkToken(token, generateKeyPairSync('ed25519').publicKey, new Set(), 1500).ok).toBe(false);
    expect(checkToken(token, publicKey, new Set(), 2000)).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(checkToken(token, publicKey, new Set([claims.jti]), 1500)).toMatchObject({ ok: false, reason: expect.stringMatching(/revoked/) });
    expect(checkToken(`${h}.${p}`, publicKey, new Set()).ok).toBe(false);
  });
  it('a launch under a token gets exactly the intersection of token and manifest', () => {
    const { model: narrowed, dropped } = intersect(m, ['fs:read:/home/user/Documents', 'net:connect:api.example.com:443', 'fs:write:/etc']);
    expect(narrowed.grants.fs.map((g) => g.source.text)).toEqual(['fs:read:~/Documents']);
    expect(narrowed.grants.net.map((g) => g.host)).toEqual(['api.example.com']);
    expect(narrowed.grants.exec).toEqual([]);
    expect(dropped).toEqual(['fs:write:~/out', 'net:connect:[::1]:8080', 'exec:/usr/bin/python3']);
  });
});
