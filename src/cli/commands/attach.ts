/**
 * `agentbox attach SESSION`: join a running session's terminal.
 */
import type { Command } from 'commander';
import { attach } from '../../actions/attach.js';
import type { Io } from '../io.js';

export function registerAttach(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('attach')
    .description('join a running session\'s terminal (one launched on a terminal); Ctrl-P Ctrl-Q detaches and the session goes on')
    .argument('<session>', 'session id from agentbox ps')
    .addHelpText('after', `
Needs root. Every attach and detach is audited with who did it. The micro-VM runtime has no terminal
to attach to (exit 4).

Examples:
  agentbox attach claude-code-3f9a12c0
  agentbox ps -q --filter agent=claude-code`)
    .action((id: string) =>
      run(async (io) => {
        const r = await attach(id);
        io.info(r.ended ? `agentbox: session ${id} ended` : `agentbox: detached from ${id}; it goes on (agentbox attach ${id} to return)`);
        return 0;
      }),
    );
}
