/**
 * egress.http: the rule grammar, the request path as rules see it, and decisions.
 *
 * Attack: walking around a method/path rule by spelling the path differently (dot
 * segments, percent-encoding, encoded slashes, backslashes, doubled slashes), or
 * stalling the proxy with a pattern of many `**`.
 * Defence: the path is normalised as servers resolve it before matching; anything a
 * server could read differently is refused; `**` is matched by a reachable-set walk
 * (linear per segment), never by backtracking. Property tests check that a path and
 * its dot-segment and encoded spellings decide alike.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideHttp, inspection, normaliseRequestPath, parseHttpRule, pathMatches } from '../../src/model/http.js';
import { model } from '../helpers/load.js';

const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: rules }
agent: { command: [/bin/true] }
capabilities:
  - net:connect:api.github.com:443
  - net:connect:pinned.example.com:443
  - net:connect:plain.example.com:443
egress:
  http:
    - host: api.github.com
      allow: ["GET /repos/**", "POST /repos/*/issues", "GET /files/*.json"]
      deny: ["DELETE /**", "* /repos/secret/**"]
    - host: pinned.example.com
      inspect: false
`);
const gh = m.egress.http.filter((e) => e.host === 'api.github.com');

describe('rule grammar', () => {
  it('parses METHOD /glob and refuses what cannot be a rule, saying why', () => {
    expect(parseHttpRule('GET /repos/**')).toEqual({ ok: true, method: 'GET', segments: ['repos', '**'] });
    expect(parseHttpRule('* /')).toEqual({ ok: true, method: '*', segments: [] });
    for (const [bad, why] of [
      ['get /x', /capitals/],
      ['GET repos', /not a rule/],
      ['GET /a?b=1', /query/],
      ['GET /a/../b', /\. or \.\./],
      ['GET /a%2Fb', /percent-escape/],
      ['GET /a**b', /stands alone/],
    ] as const) {
      const r = parseHttpRule(bad);
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.message, bad).toMatch(why);
    }
  });

  it('manifest errors point at the entry', () => {
    expect(() =>
      model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: bad }
agent: { command: [/bin/true] }
capabilities: [net:connect:a.example.com:443]
egress:
  http:
    - { host: a.example.com, inspect: false, deny: ["DELETE /**"] }
    - { host: a.example.com }
    - { host: "a b", allow: ["GET /x"] }
  credentials:
    - { host: "*.example.com", header: x-api-key, secret: k }
    - { host: a.example.com, secret: { env: K } }
    - { host: a.example.com, header: host, name: h, secret: k2, env: HTTPS_PROXY }
`),
    ).toThrowError(/egress\.http\[0\]\.inspect[\s\S]*egress\.http\[1\]: says nothing[\s\S]*egress\.http\[2\]\.host[\s\S]*wildcard[\s\S]*exactly one of header[\s\S]*needs a name[\s\S]*host is not a credential header[\s\S]*HTTPS_PROXY is set by agentbox/);
  });
});

describe('request paths as rules see them', () => {
  it('resolves dot segments and percent-encoding; refuses ambiguous spellings', () => {
    expect(normaliseRequestPath('/a/./b//c/../d')).toEqual({ ok: true, segments: ['a', 'b', 'd'] });
    expect(normaliseRequestPath('/%72epos/x')).toEqual({ ok: true, segments: ['repos', 'x'] });
    for (const p of ['/a/%2F/b', '/a%5cb', '/a\\b', '/..', '/a/../../b', '/%zz', '/a%00b', 'x/y']) expect(normaliseRequestPath(p).ok, p).toBe(false);
  });

  it('a path decides the same however it is spelled (dot segments, encoding)', () => {
    const seg = fc.stringMatching(/^[a-z0-9._-]{1,8}$/).filter((s) => s !== '.' && s !== '..');
    fc.assert(
      fc.property(fc.array(seg, { minLength: 1, maxLength: 6 }), fc.constantFrom('GET', 'POST', 'DELETE', 'PUT'), fc.nat(5), (segs, method, junk) => {
        const plain = `/${segs.join('/')}`;
        const dotted = `/${segs.map((s, i) => (i === junk % segs.length ? `${s}/./x/..` : s)).join('/')}`;
        const encoded = `/${segs.map((s) => [...s].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('')).join('/')}`;
        const a = decideHttp(gh, method, plain);
        expect(decideHttp(gh, method, dotted).allow).toBe(a.allow);
        expect(decideHttp(gh, method, encoded).allow).toBe(a.allow);
      }),
      { numRuns: 500 },
    );
  });

  it('** does not backtrack: many ** against a long path answers (a backtracking matcher would not finish)', () => {
    const pattern = Array.from({ length: 40 }, () => '**').concat(['x']);
    const path = Array.from({ length: 2000 }, () => 'a');
    expect(pathMatches(pattern, path)).toBe(false);
    expect(pathMatches(pattern, [...path, 'x'])).toBe(true);
    expect(pathMatches(['**', 'b', '**', 'd'], ['a', 'b', 'c', 'd'])).toBe(true);
    expect(pathMatches(['**', 'b', '**', 'd'], ['a', 'c', 'd'])).toBe(false);
  });
});

describe('decisions', () => {
  it('deny wins, then allow lists; the refusal names the rule and its place', () => {
    expect(decideHttp(gh, 'GET', '/repos/o/r/pulls')).toEqual({ allow: true, rule: '"GET /repos/**" (egress.http[0].allow[0])' });
    expect(decideHttp(gh, 'POST', '/repos/o/issues').allow).toBe(true);
    expect(decideHttp(gh, 'POST', '/repos/o/r/issues')).toMatchObject({ allow: false, reason: expect.stringMatching(/matches no allow rule for this host \(egress\.http\[0\]\.allow\)/) });
    expect(decideHttp(gh, 'DELETE', '/repos/o/r')).toMatchObject({ allow: false, rule: '"DELETE /**" (egress.http[0].deny[0])' });
    expect(decideHttp(gh, 'GET', '/repos/secret/x')).toMatchObject({ allow: false, rule: '"* /repos/secret/**" (egress.http[0].deny[1])' });
    expect(decideHttp(gh, 'GET', '/files/a.json').allow).toBe(true);
    expect(decideHttp(gh, 'GET', '/files/a.yaml').allow).toBe(false);
    expect(decideHttp([], 'DELETE', '/anything').allow).toBe(true);
    // Without rules for the host, no spelling is refused; with rules, ambiguous ones are.
    expect(decideHttp([], 'GET', '/a;b').allow).toBe(true);
    for (const p of ['/repos/x#/../../admin', '/admin;x/users', '/repos/%252e%252e/admin', '/repos/a%3Bb']) expect(decideHttp(gh, 'GET', p).allow, p).toBe(false);
  });

  it('which hosts are decrypted: rules and credentials always; inspect: false otherwise wins over DLP', () => {
    expect(inspection(m, 'api.github.com')).toBe('rules');
    expect(inspection(m, 'pinned.example.com')).toBeUndefined();
    expect(inspection(m, 'plain.example.com')).toBeUndefined();
    const withDlp = { egress: { ...m.egress, dlp: { detectors: ['private-key' as const], written: ['private-key'], custom: [], from: 'test' } } };
    expect(inspection(withDlp, 'plain.example.com')).toBe('dlp');
    expect(inspection(withDlp, 'pinned.example.com')).toBeUndefined();
  });
});
