/**
 * Organisation policy with the real Cedar engine: loading (located parse and
 * validation errors), the shipped seed policies over manifests, fail-closed evaluation
 * errors, and a property that manifest values reach Cedar only as data.
 */
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findSegments, readPolicyDir, schemaSource, SEGMENT_SEARCH } from '../../src/host/policy-files.js';
import { checkManifest } from '../../src/policy/check.js';
import { PolicyEngine } from '../../src/host/cedar-engine.js';
import { agentEntity, connectRequest, fsRequest, hostCovered, NO_LABELS, type AgentFacts } from '../../src/policy/entities.js';
import { model as loadText, ROOT } from '../helpers/load.js';

const SHIPPED = join(ROOT, 'profiles', 'policies');
const shipped = readPolicyDir(SHIPPED);
const engine = (() => {
  const r = PolicyEngine.load(shipped.sources, shipped.schema);
  if (!r.engine) throw new Error(JSON.stringify(r.problems));
  return r.engine;
})();

const facts: AgentFacts = { name: 't', classification: 'unclassified', presets: [], ttlSeconds: 600, hasNetwork: true, consent: false, dlp: false, runtime: 'process', snapshot: 'revert' };

function load(text: string) {
  return PolicyEngine.load([{ file: '/org/p.cedar', text }], schemaSource());
}

describe('loading policies', () => {
  it('names policies by @id, else FILE#N, and keeps their @reason and line', () => {
    const r = load('@id("a")\n@reason("why a")\nforbid (principal, action, resource) when { principal.name == "x" };\n\nforbid (principal, action, resource) when { principal.name == "y" };\n');
    expect(r.engine).toBeDefined();
    expect([...r.engine!.policies.values()]).toEqual([
      { id: 'a', effect: 'forbid', reason: 'why a', file: '/org/p.cedar', line: 1 },
      { id: 'p.cedar#2', effect: 'forbid', reason: undefined, file: '/org/p.cedar', line: 5 },
    ]);
  });

  it('a syntax error is located by file, line and column', () => {
    const r = load('forbid (principal, action, resource)\n  when { 1 + };\n');
    expect(r.engine).toBeUndefined();
    expect(r.problems[0]).toMatchObject({ file: '/org/p.cedar', line: 2, column: 14 });
  });

  it('a misspelt attribute fails schema validation with a suggestion, instead of never matching', () => {
    const r = load('@id("typo")\nforbid (principal, action, resource is Agentbox::Host) when { resource.nmae == "x" };');
    expect(r.engine).toBeUndefined();
    expect(r.problems[0]).toMatchObject({ policy: 'typo', line: 2 });
    expect(r.problems[0]!.message).toMatch(/did you mean `name`/);
  });

  it('duplicate ids and the reserved implicit-permit id are refused', () => {
    expect(load('@id("d") forbid (principal, action, resource);\n@id("d") forbid (principal, action, resource);').problems[0]!.message).toMatch(/also used at \/org\/p.cedar:1/);
    expect(load('@id("agentbox.manifest-grant") forbid (principal, action, resource);').problems[0]!.message).toMatch(/reserved/);
  });
});

describe('deciding', () => {
  it('what the manifest grants is allowed unless a forbid matches (deny wins)', () => {
    const agent = agentEntity(facts);
    expect(engine.authorize(connectRequest(agent, 'git.corp.example.com', 443, shipped.labels, 'run', false)).decision).toBe('allow');
    const v = engine.authorize(connectRequest(agent, 'paste.example.net', 443, shipped.labels, 'run', false));
    expect(v.decision).toBe('deny');
    expect(v.forbiddenBy.map((p) => p.id)).toEqual(['network-only-corporate']);
    expect(v.forbiddenBy[0]!.reason).toMatch(/corporate domains/);
  });

  it('a policy that errors while evaluated denies and is named (Cedar alone would skip it)', () => {
    // Long overflow: Cedar reports an evaluation error and ignores the policy.
    const r = load('@id("overflow")\nforbid (principal, action == Agentbox::Action::"launch", resource) when { principal.ttlSeconds * 1000000000000000 < 0 };');
    expect(r.engine).toBeDefined();
    const agent = agentEntity({ ...facts, ttlSeconds: 86400 });
    const v = r.engine!.authorize({ text: 'launch', source: undefined, principal: agent.uid, action: { type: 'Agentbox::Action', id: 'launch' }, resource: agent.uid, context: { phase: 'check' }, entities: [agent] });
    expect(v.decision).toBe('deny');
    expect(v.errors.map((e) => e.id)).toEqual(['overflow']);
    // The same policy on a value that does not overflow: no error, and it does not match.
    const ok = agentEntity({ ...facts, ttlSeconds: 60 });
    expect(r.engine!.authorize({ text: 'launch', source: undefined, principal: ok.uid, action: { type: 'Agentbox::Action', id: 'launch' }, resource: ok.uid, context: { phase: 'check' }, entities: [ok] }).decision).toBe('allow');
  });

  it('the shipped seed policies against the cowork profile: ttl 1h and a grant reaching a Sensitive folder are forbidden', () => {
    const home = mkdtempSync(join(tmpdir(), 'agentbox-policy-home-'));
    mkdirSync(join(home, 'Documents', 'Finance', 'Sensitive'), { recursive: true });
    mkdirSync(join(home, 'Documents', 'Cowork'), { recursive: true });
    const model = loadText(readFileSync(join(ROOT, 'profiles/agents/cowork.yaml'), 'utf8'), { home });
    const c = checkManifest(engine, model, shipped.labels, findSegments);
    expect(c.forbidden.map((f) => [f.request.text, f.request.source?.pointer, f.verdict.forbiddenBy.map((p) => p.id)])).toEqual([
      ['launch', 'ttl', ['token-ttl-at-most-15m']],
      [`fs:read:${home}/Documents`, 'capabilities[0]', ['no-upload-from-sensitive']],
    ]);
    // Without the Sensitive folder on disk, only the ttl remains.
    const home2 = mkdtempSync(join(tmpdir(), 'agentbox-policy-home-'));
    mkdirSync(join(home2, 'Documents', 'Cowork'), { recursive: true });
    const c2 = checkManifest(engine, loadText(readFileSync(join(ROOT, 'profiles/agents/cowork.yaml'), 'utf8'), { home: home2 }), shipped.labels, findSegments);
    expect(c2.forbidden.map((f) => f.request.text)).toEqual(['launch']);
  });

  it('a folder search that cannot finish marks the grant unscanned, which the seed rule refuses', () => {
    const root = mkdtempSync(join(tmpdir(), 'agentbox-deep-'));
    let p = root;
    for (let i = 0; i < SEGMENT_SEARCH.maxDepth + 2; i++) mkdirSync((p = join(p, `d${i}`)));
    expect(findSegments(root, ['Sensitive']).complete).toBe(false);
    const agent = agentEntity(facts);
    const v = engine.authorize(fsRequest(agent, 'read', root, '/home/nobody', shipped.labels, findSegments, 'check'));
    expect(v.forbiddenBy.map((x) => x.id)).toEqual(['no-upload-from-sensitive']);
    // Offline, the same grant is fine.
    expect(engine.authorize(fsRequest(agentEntity({ ...facts, hasNetwork: false }), 'read', root, '/home/nobody', shipped.labels, findSegments, 'check')).decision).toBe('allow');
  });
});

describe('host labels cover grants only when every name the grant can reach is covered', () => {
  it.each([
    ['*.corp.example.com', 'a.corp.example.com', true],
    ['*.corp.example.com', '*.corp.example.com', true],
    ['*.corp.example.com', '*.x.corp.example.com', true],
    ['*.corp.example.com', '*.example.com', false],
    ['*.corp.example.com', 'corp.example.com', false],
    ['corp.example.com', '*.corp.example.com', false],
    ['*.corp.example.com', 'evilcorp.example.com', false],
  ])('%s covers %s: %s', (pattern, grant, expected) => {
    expect(hostCovered(pattern, grant)).toBe(expected);
  });
});

describe('manifest values are data to Cedar, never policy text', () => {
  it('any path string decides exactly as the policy says, whatever quotes, braces or Cedar syntax it holds', () => {
    const r = load('@id("s")\nforbid (principal, action == Agentbox::Action::"read", resource is Agentbox::Path) when { resource.path like "*secret*" };');
    const e = r.engine!;
    const hostile = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.constantFrom('"; permit(principal, action, resource); //', '*secret*', 'x" || true || "', '\\"secret\\"', '}; forbid', 'sec\u0000ret'));
    fc.assert(
      fc.property(hostile, hostile, (a, b) => {
        const path = `/home/u/${a}/${b}`;
        const v = e.authorize(fsRequest(agentEntity({ ...facts, name: b }), 'read', path, '/home/u', NO_LABELS, undefined, 'check'));
        return v.errors.length === 0 && v.decision === (path.includes('secret') ? 'deny' : 'allow');
      }),
      { numRuns: 400 },
    );
  });
});

describe('the policy directory', () => {
  it('labels.yaml is validated and located', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentbox-pol-'));
    writeFileSync(join(dir, 'a.cedar'), 'forbid (principal, action, resource) when { false };');
    writeFileSync(join(dir, 'labels.yaml'), 'paths:\n  - prefix: relative/path\n    labels: [x]\n');
    expect(() => readPolicyDir(dir)).toThrow(/labels.yaml: not a valid labels file/);
    writeFileSync(join(dir, 'labels.yaml'), 'paths:\n  - prefix: ~/A\n    segment: B\n    labels: [x]\n');
    expect(() => readPolicyDir(dir)).toThrow(/exactly one of prefix/);
  });
});
