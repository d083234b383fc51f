/**
 * `agentbox completion bash|zsh|fish` and `agentbox man`: generated from the command
 * definitions themselves (cli/docs.ts).
 */
import type { Command } from 'commander';
import { AgentboxError } from '../../errors.js';
import { agentProfiles } from '../../actions/load.js';
import { VERSION } from '../../version.js';
import { bashCompletion, commandTree, fishCompletion, manPage, zshCompletion } from '../docs.js';
import type { Io } from '../io.js';

const SHELLS = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion } as const;

export function registerCompletion(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('completion')
    .description('print the shell completion script for bash, zsh or fish')
    .argument('<shell>', 'bash, zsh or fish')
    .addHelpText('after', `
Examples:
  agentbox completion bash | sudo tee /etc/bash_completion.d/agentbox
  agentbox completion zsh > "\${fpath[1]}/_agentbox"
  agentbox completion fish > ~/.config/fish/completions/agentbox.fish`)
    .action((shell: string) =>
      run(async (io) => {
        const gen = SHELLS[shell as keyof typeof SHELLS];
        if (!gen) throw new AgentboxError('USAGE', `completion ${JSON.stringify(shell).slice(0, 40)}: valid shells are bash, zsh, fish`);
        process.stdout.write(gen(commandTree(program), agentProfiles()));
        return io ? 0 : 0;
      }),
    );
  program
    .command('man')
    .description('print agentbox\'s man page (roff), generated from the same definitions as --help')
    .addHelpText('after', `
Examples:
  agentbox man | man -l -
  agentbox man | sudo tee /usr/local/share/man/man1/agentbox.1`)
    .action(() =>
      run(async () => {
        process.stdout.write(manPage(commandTree(program), VERSION, program.description()));
        return 0;
      }),
    );
}
