/**
 * Shell completion and the man page come from the command definitions (cli/docs.ts).
 * Checked with the real bash (the completion function completes commands, options and
 * profile names) and the real man/groff; the escaping is checked as a property.
 * Attack: a description or profile name carrying shell or roff syntax (a profile file
 * named `$(id)`, a `.so /etc/shadow` roff request). Defence: words from a plain alphabet
 * only; descriptions quoted for fish and escaped for roff.
 */
import { execa } from 'execa';
import { Command } from 'commander';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bashCompletion, commandTree, fishCompletion, manPage, roff } from '../../src/cli/docs.js';
import { registerLaunch } from '../../src/cli/commands/launch.js';
import { registerSessions } from '../../src/cli/commands/sessions.js';

function program(): Command {
  const p = new Command('agentbox').description('Run agents inside a box.');
  const run = async () => undefined;
  registerLaunch(p, run);
  registerSessions(p, run);
  return p;
}

async function complete(script: string, words: string[]): Promise<string[]> {
  const body = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _agentbox; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await execa('bash', ['-c', body]);
  return String(r.stdout).split('\n').filter(Boolean);
}

describe('shell completion', () => {
  const script = bashCompletion(commandTree(program()), ['claude-code', 'codex', '$(touch /tmp/pwned)', 'shell']);
  it('bash: commands, sub-commands, options and profile names', async () => {
    expect(await complete(script, ['agentbox', 'la'])).toEqual(['launch']);
    expect(await complete(script, ['agentbox', 'launch', 'c'])).toEqual(['claude-code', 'codex']);
    expect(await complete(script, ['agentbox', 'launch', 'shell', '--env-'])).toEqual(['--env-file']);
    expect(await complete(script, ['agentbox', 'ps', 'p'])).toEqual(['prune']);
    expect(await complete(script, ['agentbox', 'ps', 'prune', '--o'])).toEqual(['--older-than']);
    // After --, the words are the agent command's: nothing of agentbox's is offered.
    expect(await complete(script, ['agentbox', 'launch', 'shell', '--', '--'])).toEqual([]);
  });
  it('a profile name that is not a plain word never reaches the script', () => {
    expect(script).not.toContain('$(touch');
  });
  it('fish: every description is one single-quoted word, whatever it holds', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (d) => {
        const p = new Command('agentbox');
        p.command('x').description(d).option('--y', d);
        for (const line of fishCompletion(commandTree(p), []).split('\n').filter((l) => l.includes(' -d '))) {
          const quoted = line.slice(line.indexOf(' -d ') + 4);
          // Inside the quotes only \\ and \' escapes; the word ends at the last character.
          expect(quoted).toMatch(/^'(?:[^'\\\n]|\\\\|\\')*'$/);
        }
      }),
    );
  });
});

describe('man page', () => {
  it('renders with man, and carries every command with its options and examples', async () => {
    const page = manPage(commandTree(program()), '0.1.0', 'Run agents inside a box.');
    const r = await execa('man', ['-l', '-Tutf8', '-'], { input: page, env: { MANWIDTH: '100' } });
    const text = String(r.stdout).replace(/.\x08/g, '');
    expect(text).toMatch(/agentbox launch \[options\] <agent\|file> \[cmd\.\.\.\]/);
    expect(text).toMatch(/--env-file value/);
    expect(text).toMatch(/agentbox ps prune --older-than 168h/);
  });
  it('roff escaping: no text line becomes a request, whatever the text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (t) => {
        for (const line of roff(`${t}\n.so /etc/shadow\n'br`).split('\n')) expect(line).not.toMatch(/^[.']/);
      }),
    );
  });
});
