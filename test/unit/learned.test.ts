/**
 * The manifest `agentbox learn` proposes (generate/learned.ts): uses become the smallest
 * readable grants, each commented with what used it; what the presets do not allow is
 * not proposed; the proposal loads and validates.
 *
 * Attack: an agent names its files and hosts so that the proposal's comments break out
 * into YAML (a newline then `capabilities:` or `- fs:write:/`), widening what the
 * administrator is asked to approve. Defence: every comment is one escaped line and a
 * path the grant grammar cannot carry is only listed, JSON-quoted; the property test
 * holds the parsed proposal's keys and grants to exactly what was used.
 */
import fc from 'fast-check';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { HOME, load, model } from '../helpers/load.js';
import { grantPathFor, proposeManifest, type Learned } from '../../src/generate/learned.js';

const ORIGINAL = `apiVersion: agentbox/v1
kind: Agent
metadata:
  name: learner
  description: learns
extends: [organizer]
agent:
  command: [/bin/sh]
  env: { TOOL_MODE: quiet }
capabilities:
  - fs:read:~/Documents
`;

const base: Learned = { session: 'learner-1', command: ['/bin/sh', '-c', 'x'], paths: [], changes: [], programs: [], hosts: [], denials: [], at: '2026-12-03T00:00:00.000Z' };
const use = (path: string, over: Partial<Learned['paths'][number]> = {}) => ({ path, reads: 1, writes: 0, execs: 0, opens: 1, ...over });

describe('grant paths', () => {
  it('a file in the home is itself; deeper, the home\'s folder; under shared folders, the application\'s', () => {
    expect(grantPathFor(`${HOME}/.gitconfig`, HOME)).toEqual({ path: `${HOME}/.gitconfig`, kind: 'file' });
    expect(grantPathFor(`${HOME}/work/a/b.txt`, HOME)).toEqual({ path: `${HOME}/work`, kind: 'dir' });
    expect(grantPathFor(`${HOME}/.config/gh/hosts.yml`, HOME)).toEqual({ path: `${HOME}/.config/gh`, kind: 'dir' });
    expect(grantPathFor(`${HOME}/.local/share/app/db/x`, HOME)).toEqual({ path: `${HOME}/.local/share/app`, kind: 'dir' });
    expect(grantPathFor(`${HOME}/.config/user-dirs.dirs`, HOME)).toEqual({ path: `${HOME}/.config/user-dirs.dirs`, kind: 'file' });
    expect(grantPathFor('/etc/hosts', HOME)).toBeUndefined();
    expect(grantPathFor(HOME, HOME)).toBeUndefined();
  });
});

describe('the proposal', () => {
  const m = model(ORIGINAL);

  it('replaces the capabilities with what was used, says what used each, keeps the rest, and validates', () => {
    const text = proposeManifest(ORIGINAL, m, {
      ...base,
      paths: [use(`${HOME}/work/notes.md`, { reads: 3 }), use(`${HOME}/work/out/r.txt`, { reads: 0, writes: 1 }), use(`${HOME}/.gitconfig`, { reads: 2 })],
      programs: [{ path: '/usr/bin/git', runs: 2 }, { path: '/bin/sh', runs: 1 }, { path: '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', runs: 5 }],
      hosts: [{ host: 'api.example.com', port: 443, count: 4 }],
      denials: ['read ~/.ssh/id_ed25519 ×2 (deny fs:~/.ssh from preset organizer)'],
    }, () => true);
    const doc = parse(text) as { capabilities: string[]; agent: { env: Record<string, string> }; metadata: { description: string } };
    expect(doc.capabilities).toEqual(['fs:read:~/.gitconfig', 'fs:write:~/work', 'exec:/usr/bin/git', 'net:connect:api.example.com:443']);
    expect(doc.agent.env).toEqual({ TOOL_MODE: 'quiet' });
    expect(doc.metadata.description).toBe('learns');
    expect(text).toMatch(/# 2 files used \(3 reads, 1 write\), e\.g\. ~\/work\/notes\.md\n\s+- fs:write:~\/work/);
    expect(text).toMatch(/# ran 2 times\n\s+- exec:\/usr\/bin\/git/);
    expect(text).toMatch(/# 4 connections and requests through the proxy\n\s+- net:connect:api\.example\.com:443/);
    expect(text).toMatch(/^# Not used while learning, so not proposed:\n#\s+fs:read:~\/Documents$/m);
    expect(text).toMatch(/^# Denied while learning.*\n#\s+read ~\/\.ssh\/id_ed25519 ×2/m);
    const r = load(text);
    expect(r.errors).toEqual([]);
  });

  it('asks for write only where the presets allow it, and says what was left out', () => {
    const viewer = ORIGINAL.replace('[organizer]', '[viewer]');
    const text = proposeManifest(viewer, model(viewer), { ...base, paths: [use(`${HOME}/work/a`, { writes: 1 })], hosts: [{ host: 'x.example', port: 443, count: 1 }] }, () => true);
    expect((parse(text) as { capabilities: string[] }).capabilities).toEqual(['fs:read:~/work']);
    expect(text).toMatch(/it also wrote here, which preset viewer does not allow/);
    expect(text).toMatch(/net:connect:x\.example:443: not allowed by the presets/);
    expect(load(text).errors).toEqual([]);
  });

  it('says when a used folder did not exist before learning', () => {
    const text = proposeManifest(ORIGINAL, m, { ...base, changes: [{ kind: 'created', path: `${HOME}/.tool/state.json` }] }, (p) => p !== `${HOME}/.tool`);
    expect(text).toMatch(/1 change to files.*did not exist before learning: create it/);
    expect((parse(text) as { capabilities: string[] }).capabilities).toEqual(['fs:write:~/.tool']);
  });

  it('no used name, host or denial can add a key or a grant to the proposal', () => {
    const nasty = fc.array(fc.constantFrom('a', '/', '\n', '\r', '#', ':', '-', ' ', '"', "'", '\u2028', '\u001b', 'capabilities', '- fs:write:/', '\t', '{', '}', '\\'), { maxLength: 40 }).map((a) => a.join(''));
    fc.assert(
      fc.property(fc.array(nasty, { maxLength: 4 }), nasty, fc.array(nasty, { maxLength: 3 }), (names, host, denials) => {
        const used = names.map((n) => `${HOME}/work/${n}`);
        const text = proposeManifest(ORIGINAL, m, { ...base, paths: used.map((p) => use(p)), hosts: [{ host: `h${host.replace(/[^a-z.]/g, '')}.example`, port: 443, count: 1 }], denials, programs: [{ path: `/usr/bin/${names[0] ?? 'x'}`, runs: 1 }] }, () => true);
        const doc = parse(text) as Record<string, unknown>;
        expect(Object.keys(doc).sort()).toEqual(['agent', 'apiVersion', 'capabilities', 'extends', 'kind', 'metadata']);
        const caps = doc.capabilities as string[];
        for (const c of caps) expect(c).toMatch(/^(fs:read:~\/work|exec:\/usr\/bin\/[^\n]*|net:connect:h[a-z.]*\.example:443)$/);
        // Every line that is not YAML content is a comment: nothing spills out of one.
        for (const line of text.split('\n')) expect(line).toMatch(/^(\s*#.*|[a-zA-Z]+:.*|\s+.*|)$/);
      }),
      { numRuns: 300 },
    );
  });
});
