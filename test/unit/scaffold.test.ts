/**
 * `agentbox init`'s manifest (manifest/scaffold.ts).
 * Attack: a program path chosen to inject YAML (a newline and `capabilities:`, a quote)
 * so that the scaffold grants more than it says. Defence: every value is a JSON string
 * (a YAML double-quoted scalar); the scaffold loads to exactly the program given.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { agentName, scaffold } from '../../src/manifest/scaffold.js';
import { HOME, load, model } from '../helpers/load.js';
import { lexicalPath } from '../../src/model/paths.js';
import type { AgentProgram } from '../../src/model/types.js';

const prog = (path: string, over: Partial<AgentProgram> = {}): AgentProgram => ({ asWritten: path, path, link: undefined, viaPath: false, packageDir: undefined, interpreter: undefined, shebangVia: undefined, ...over });

describe('init scaffold', () => {
  it('a known CLI gets its config folders, hosts and inner-sandbox setting; the result loads', () => {
    const text = scaffold({ program: prog('codex', { path: '/usr/local/lib/node_modules/@openai/codex/bin/codex.js', link: '/usr/local/bin/codex', viaPath: true, packageDir: '/usr/local/lib/node_modules/@openai/codex', interpreter: '/usr/bin/node' }), existingConfig: [], now: '2026-12-02T00:00:00Z' });
    const m = model(text);
    expect(m.agent.command).toEqual(['/usr/local/bin/codex', '--sandbox', 'danger-full-access']);
    expect(m.grants.fs.map((g) => g.source.text)).toEqual(expect.arrayContaining(['fs:write:~/work', 'fs:write:~/.codex']));
    expect(m.grants.net.map((g) => `${g.host}:${g.port}`)).toEqual(['api.openai.com:443']);
    expect(text).toMatch(/in the package \/usr\/local\/lib\/node_modules\/@openai\/codex, run by \/usr\/bin\/node/);
  });
  it('an unknown CLI gets its existing config folder, or ~/.config/NAME', () => {
    expect(model(scaffold({ program: prog('/opt/tool/bin/My Tool'), existingConfig: ['~/.my-tool'], now: '2026' })).grants.fs.map((g) => g.source.text)).toContain('fs:write:~/.my-tool');
    expect(agentName('/opt/tool/bin/My Tool.exe')).toBe('my-tool');
    expect(agentName('/x/123')).toBe('agent');
  });
  it('property: whatever the path holds, the scaffold grants only what it lists and runs exactly that path', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (tail) => {
        const path = `/opt/${tail}`;
        const r = load(scaffold({ program: prog(path), existingConfig: [], now: '2026' }));
        // Either the loader refuses the path (control characters, quotes for systemd), or it runs exactly it.
        if (r.model) {
          const lex = lexicalPath(path, HOME);
          expect(lex.ok).toBe(true);
          if (lex.ok) expect(r.model.agent.command).toEqual([lex.literal]);
          expect(r.model.grants.fs.filter((g) => g.source.origin === 'manifest').map((g) => g.source.text)).toEqual(['fs:write:~/work', 'fs:write:~/.config/' + agentName(path)]);
        } else expect(r.errors.every((e) => e.pointer === 'agent.command[0]' || e.pointer === 'metadata.name')).toBe(true);
      }),
    );
  });
});
