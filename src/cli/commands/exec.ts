/**
 * `agentbox exec SESSION -- CMD`: run a command inside a running session's box.
 */
import type { Command } from 'commander';
import { execInSession } from '../../actions/exec.js';
import type { Io } from '../io.js';

export function registerExec(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('exec')
    .description('run a command inside a running session\'s box, as its agent runs: same namespaces, uid, cgroup, seccomp and Landlock (process runtime), or the same container')
    .argument('<session>', 'session id from agentbox ps')
    .argument('<cmd...>', 'the command, after --')
    .addHelpText('after', `
Needs root. Every exec is audited (session.exec, with who ran it, and its exit code). The command's
exit code is this command's. A quarantined (frozen) session is refused (exit 1); the
micro-VM runtime is refused (exit 4: its guest cannot start processes after boot).

Examples:
  agentbox exec cowork-3f9a12c0 -- ls -la ~/Documents
  agentbox exec codex-81c2aa10 -- cat /proc/self/status`)
    .action((id: string, cmd: string[]) => run((io) => execInSession(id, cmd, io)));
}
