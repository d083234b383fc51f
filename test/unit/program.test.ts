/**
 * Finding the agent program at load time (manifest/program.ts) with an in-memory file
 * system: PATH lookup, npm's links into a package, `#!` interpreters through env, and
 * what each implies (grants, container binds).
 */
import fc from 'fast-check';
import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageDirOf, resolveProgram, type ProgramResolver } from '../../src/manifest/program.js';
import { programBinds } from '../../src/box/container.js';
import { load, model, HOME } from '../helpers/load.js';

/** Files (with an optional #! line) and links, as a global npm install lays them out. */
function fakeFs(files: Record<string, string>, links: Record<string, string>): ProgramResolver {
  const real = (p: string): string | undefined => {
    for (let i = 0; i < 40; i++) {
      const parts = p.split('/');
      let changed = false;
      for (let k = 1; k <= parts.length; k++) {
        const prefix = parts.slice(0, k).join('/') || '/';
        const to = links[prefix];
        if (to !== undefined) {
          p = posix.join(to.startsWith('/') ? to : posix.join(posix.dirname(prefix), to), ...parts.slice(k));
          changed = true;
          break;
        }
      }
      if (!changed) return p in files ? p : undefined;
    }
    return undefined;
  };
  return {
    find: (name, dirs) => dirs.map((d) => `${d}/${name}`).find((p) => real(p) !== undefined),
    real,
    shebang: (p) => {
      const m = /^#!(\S+)(?:\s+(.*))?/.exec(files[p] ?? '');
      return m ? [m[1]!, m[2]] : undefined;
    },
  };
}

const npm = fakeFs(
  {
    '/usr/local/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe': '\x7fELF',
    [`${HOME}/.npm-global/lib/node_modules/@openai/codex/bin/codex.js`]: '#!/usr/bin/env node\n',
    '/usr/local/lib/node_modules/cowork/cli.js': '#!/usr/bin/node\n',
    '/usr/bin/env': '\x7fELF',
    '/usr/bin/node': '\x7fELF',
    '/usr/bin/python3.11': '\x7fELF',
    '/opt/tool/run.sh': '#!/usr/bin/env nosuch\n',
  },
  {
    '/usr/local/bin/claude': '../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe',
    '/usr/local/bin/cowork': '../lib/node_modules/cowork/cli.js',
    [`${HOME}/.npm-global/bin/codex`]: '../lib/node_modules/@openai/codex/bin/codex.js',
    '/usr/bin/python3': 'python3.11',
  },
);
const agent = (command: string) => `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nextends: [organizer]\nagent: { command: ${command} }\n`;

describe('the agent program', () => {
  it('SPEC §2: a bare name is looked up on PATH and recorded as the real file', () => {
    const m = model(agent('[cowork, --headless]'), { programs: npm });
    expect(m.agent.command).toEqual(['/usr/local/lib/node_modules/cowork/cli.js', '--headless']);
    expect(m.agent.program).toMatchObject({ asWritten: 'cowork', viaPath: true, link: '/usr/local/bin/cowork', packageDir: '/usr/local/lib/node_modules/cowork', interpreter: '/usr/bin/node' });
  });

  it('an npm link under /usr/local: its package folder may be run (it is already visible read-only)', () => {
    const m = model(agent('[/usr/local/bin/claude]'), { programs: npm });
    expect(m.agent.command[0]).toBe('/usr/local/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe');
    expect(m.grants.exec.map((g) => [g.path, g.implied, g.source.pointer])).toContainEqual(['/usr/local/lib/node_modules/@anthropic-ai/claude-code', 'package', 'agent.command[0]']);
    expect(m.grants.fs.some((g) => g.path.startsWith('/usr/'))).toBe(false);
  });

  it('an npm link in the home: package read and exec, the #! interpreter found through env', () => {
    const m = model(agent('[~/.npm-global/bin/codex]'), { programs: npm });
    const pkg = `${HOME}/.npm-global/lib/node_modules/@openai/codex`;
    expect(m.agent.command[0]).toBe(`${pkg}/bin/codex.js`);
    expect(m.grants.exec.map((g) => [g.path, g.implied])).toEqual(expect.arrayContaining([[pkg, 'package'], ['/usr/bin/env', 'via'], ['/usr/bin/node', 'interpreter']]));
    expect(m.grants.fs.map((g) => [g.path, g.access])).toContainEqual([pkg, 'read']);
    // The container binds the package and node, not env (the image has its own).
    expect(programBinds(m, m.agent.command, [])).toEqual([pkg, '/usr/bin/node']);
  });

  it('a link is resolved even when it stays in its folder (python3 -> python3.11)', () => {
    expect(model(agent('[python3]'), { programs: npm }).agent.command[0]).toBe('/usr/bin/python3.11');
  });

  it('a #! interpreter that cannot be found is a located error with the fix', () => {
    const r = load(agent('[/opt/tool/run.sh]'), { programs: npm });
    expect(r.errors[0]).toMatchObject({ pointer: 'agent.command[0]', message: expect.stringMatching(/"nosuch" was not found on PATH .*change agent.command to \[INTERPRETER, \/opt\/tool\/run.sh\]/) });
  });

  it('a name that is not a plain program name is refused before any lookup', () => {
    for (const bad of ['co$work', 'a b', '-rf']) {
      const r = resolveProgram(bad, HOME, ['/usr/bin'], npm);
      if (bad === '-rf') expect(r.ok).toBe(false);
      else expect(r).toMatchObject({ ok: false, message: expect.stringMatching(/neither an absolute path nor a program name/) });
    }
  });

  it('a link resolving to a path outside the checked alphabet is refused', () => {
    const evil = fakeFs({ '/opt/x\nExecStartPre=/bin/sh': '' }, { '/usr/local/bin/evil': '/opt/x\nExecStartPre=/bin/sh' });
    const r = load(agent('[/usr/local/bin/evil]'), { programs: evil });
    expect(r.errors[0]?.pointer).toBe('agent.command[0]');
  });
});

describe('packageDirOf', () => {
  const seg = fc.stringMatching(/^[a-z][a-z0-9._-]{0,12}$/);
  it('is the outermost node_modules/[@scope/]name holding the file', () => {
    fc.assert(
      fc.property(fc.array(seg, { maxLength: 3 }), fc.option(seg, { nil: undefined }), seg, fc.array(seg, { minLength: 1, maxLength: 4 }), fc.boolean(), (prefix, scope, name, rest, nested) => {
        const pkg = ['', ...prefix, 'node_modules', ...(scope ? [`@${scope}`] : []), name].join('/');
        const tail = nested ? ['node_modules', 'dep', ...rest] : rest;
        expect(packageDirOf([pkg, ...tail].join('/'))).toBe(pkg);
      }),
    );
  });
  it('is undefined outside any package', () => {
    expect(packageDirOf('/usr/bin/python3')).toBeUndefined();
    expect(packageDirOf('/x/node_modules/file.js')).toBeUndefined();
  });
});
