/**
 * `launch AGENT [options] CMD...`: agentbox's options stop at the first argument after the
 * agent name (cli/argv.ts), against launch's real command definition.
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { splitLaunchArgs, stopOptionsAtCommand } from '../../src/cli/argv.js';
import { registerLaunch } from '../../src/cli/commands/launch.js';

const launch = (() => {
  const program = new Command('agentbox');
  registerLaunch(program, async () => undefined);
  return program.commands.find((c) => c.name() === 'launch')!;
})();
const split = (...a: string[]) => stopOptionsAtCommand(['node', 'agentbox', ...a], launch).slice(2);

describe('launch argument splitting', () => {
  it('the first argument after the agent name starts the command', () => {
    expect(split('launch', 'shell', 'ls', '-la')).toEqual(['launch', 'shell', '--', 'ls', '-la']);
    expect(split('launch', 'shell', 'ls', '--verbose')).toEqual(['launch', 'shell', '--', 'ls', '--verbose']);
  });
  it('options before the command stay agentbox\'s, values included', () => {
    expect(split('launch', 'shell', '--home', '/h', '--verbose', 'ls')).toEqual(['launch', 'shell', '--home', '/h', '--verbose', '--', 'ls']);
    expect(split('launch', '--runtime', 'container', 'shell', 'sh', '-c', 'x')).toEqual(['launch', '--runtime', 'container', 'shell', '--', 'sh', '-c', 'x']);
    expect(split('launch', 'shell', '--home=/h', 'ls')).toEqual(['launch', 'shell', '--home=/h', '--', 'ls']);
  });
  it('an explicit -- and other commands are left alone', () => {
    expect(split('launch', 'x', '--verbose', '--', 'python3', 'a.py')).toEqual(['launch', 'x', '--verbose', '--', 'python3', 'a.py']);
    expect(split('launch', 'shell')).toEqual(['launch', 'shell']);
    expect(split('--json', 'launch', 'shell', 'id')).toEqual(['--json', 'launch', 'shell', '--', 'id']);
    expect(split('validate', 'a.yaml', 'b.yaml')).toEqual(['validate', 'a.yaml', 'b.yaml']);
  });
  it('agentbox options that change the box, written after the command without --, are caught', () => {
    const sh = (...a: string[]) => splitLaunchArgs(['node', 'agentbox', ...a], launch).shadowed;
    expect(sh('launch', 'x', 'cmd', '--token', 't.jws')).toEqual(['--token']);
    expect(sh('launch', 'x', 'cmd', '--dry-run', '--policy=/p')).toEqual(['--dry-run', '--policy=/p']);
    expect(sh('launch', 'x', '--', 'aws', '--profile', 'prod')).toEqual([]);
    expect(sh('launch', 'x', 'ls', '--verbose')).toEqual([]);
  });
});
