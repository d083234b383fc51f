/**
 * Attacks on capability tokens: a forged or altered token, another device's key, an
 * expired token, a revoked one, a token for one agent used to launch another, and a
 * token respelled so it still decodes (junk characters, padding, a space, non-zero
 * trailing bits, another header) — the attack review found those verified.
 * Defence: jose with the algorithm fixed, and one accepted spelling per token: every
 * part strict canonical base64url and the header exactly agentbox's.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalBase64url, checkToken, intersect, mintToken, modelScopes } from '../../src/tokens/token.js';
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
  it('mints the effective grants as normalised scopes, and verifies', async () => {
    const { token, claims } = await mintToken(privateKey, { sub: 't', sid: 's1', scopes: modelScopes(m), exp: null });
    expect(claims.scopes).toEqual(['fs:read:/home/user/Documents', 'fs:write:/home/user/out', 'net:connect:api.example.com:443', 'net:connect:[::1]:8080', 'exec:/usr/bin/python3']);
    expect(await checkToken(token, publicKey, new Set())).toMatchObject({ ok: true, claims: { sub: 't', sid: 's1' } });
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString())).toEqual({ alg: 'EdDSA', typ: 'JWT' });
  });

  it('refuses an altered payload, another key, expiry and revocation', async () => {
    const { token, claims } = await mintToken(privateKey, { sub: 't', sid: 's1', scopes: ['fs:read:/x'], exp: 2000, now: 1000 });
    const [h, p, s] = token.split('.');
    const widened = Buffer.from(JSON.stringify({ ...claims, scopes: ['fs:write:/'] })).toString('base64url');
    expect(await checkToken(`${h}.${widened}.${s}`, publicKey, new Set(), 1500)).toMatchObject({ ok: false, reason: expect.stringMatching(/signature does not match/) });
    expect((await checkToken(token, generateKeyPairSync('ed25519').publicKey, new Set(), 1500)).ok).toBe(false);
    expect(await checkToken(token, publicKey, new Set(), 2000)).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(await checkToken(token, publicKey, new Set([claims.jti]), 1500)).toMatchObject({ ok: false, reason: expect.stringMatching(/revoked/) });
    expect((await checkToken(`${h}.${p}`, publicKey, new Set())).ok).toBe(false);
  });

  it('accepts a token in exactly one spelling: junk, padding, whitespace, trailing bits or another header are refused', async () => {
    const { token } = await mintToken(privateKey, { sub: 't', sid: 's1', scopes: ['fs:read:/x'], exp: null });
    const [h, p, s] = token.split('.') as [string, string, string];
    const mid = Math.floor(s.length / 2);
    // A 64-byte signature is 86 characters: the last one carries 2 bits and 4 spare ones.
    const ALPHA = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const spare = ALPHA[ALPHA.indexOf(s[s.length - 1]!) ^ 1]!;
    expect(Buffer.from(`${s.slice(0, -1)}${spare}`, 'base64url').equals(Buffer.from(s, 'base64url'))).toBe(true);
    const respelled = [
      `${h}.${p}.${s.slice(0, mid)} ${s.slice(mid)}`, // a space inside the signature
      `${h}.${p}.${s}=`, // padding
      `${h}.${p}.${s}==`,
      `${h}.${p}.${s.slice(0, mid)}!${s.slice(mid)}`, // a junk character
      `${h}.${p}.${s}\n`, // a trailing newline
      ` ${token}`,
      `${h}.${p}.${s.slice(0, -1)}${spare}`, // the same signature bytes, other spare bits
      `${Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'EdDSA' })).toString('base64url')}.${p}.${s}`, // the same header, reordered
      `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${p}.`, // alg none
      `${h}.${p}.${s.replace(/-/g, '+').replace(/_/g, '/')}${/[-_]/.test(s) ? '' : '+'}`, // the standard base64 alphabet
    ];
    for (const t of respelled) {
      const r = await checkToken(t, publicKey, new Set());
      expect(r.ok, JSON.stringify(t)).toBe(false);
    }
  });

  it('canonical base64url: any byte string has one accepted spelling (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 80 }), fc.string({ minLength: 1, maxLength: 3 }), (bytes, junk) => {
        const canon = Buffer.from(bytes).toString('base64url');
        expect(canonicalBase64url(canon)).toBe(true);
        const spelled = canon + junk;
        // Any other spelling is refused unless it is itself the canonical form of its bytes.
        return !canonicalBase64url(spelled) || Buffer.from(spelled, 'base64url').toString('base64url') === spelled;
      }),
      { numRuns: 500 },
    );
  });

  it('a launch under a token gets exactly the intersection of token and manifest', () => {
    const { model: narrowed, dropped } = intersect(m, ['fs:read:/home/user/Documents', 'net:connect:api.example.com:443', 'fs:write:/etc']);
    expect(narrowed.grants.fs.map((g) => g.source.text)).toEqual(['fs:read:~/Documents']);
    expect(narrowed.grants.net.map((g) => g.host)).toEqual(['api.example.com']);
    expect(narrowed.grants.exec).toEqual([]);
    expect(dropped).toEqual(['fs:write:~/out', 'net:connect:[::1]:8080', 'exec:/usr/bin/python3']);
  });

  it('a nested grant the token covers through the grant above it is kept, not warned about', () => {
    const nested = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: t }
extends: [editor]
agent: { command: [/usr/bin/true] }
capabilities: [fs:write:~/work, fs:read:~/work/docs, fs:write:~/work/out]
`);
    // The token carries the effective grants: the two nested ones fold into ~/work.
    expect(modelScopes(nested).filter((s) => s.startsWith('fs:'))).toEqual(['fs:write:/home/user/work']);
    const { model: narrowed, dropped } = intersect(nested, modelScopes(nested));
    expect(dropped).toEqual([]);
    expect(narrowed.grants.fs).toHaveLength(3);
    // A read scope does not cover a write grant below it.
    expect(intersect(nested, ['fs:read:/home/user/work']).dropped).toEqual(['fs:write:~/work', 'fs:write:~/work/out']);
  });
});
