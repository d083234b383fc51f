/**
 * `agentbox userns-profile`: the AppArmor profile that lets bubblewrap create user
 * namespaces on hosts that restrict them (Ubuntu 24.04's
 * kernel.apparmor_restrict_unprivileged_userns), instead of an opaque bwrap error.
 */
import type { Command } from 'commander';
import { usernsProfile } from '../../actions/userns.js';
import type { Io } from '../io.js';

export async function usernsProfileCommand(opts: { bwrap?: string }, io: Io): Promise<number> {
  io.out(usernsProfile(opts.bwrap));
  return 0;
}

export function registerUserns(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('userns-profile')
    .description('print the AppArmor profile that lets bubblewrap create user namespaces where the kernel restricts them')
    .option('--bwrap <path>', 'the bwrap to allow (default: the one on PATH)')
    .addHelpText('after', `
agentbox doctor says when this is needed (the userns probe).

Examples:
  agentbox userns-profile | sudo tee /etc/apparmor.d/agentbox-bwrap
  sudo apparmor_parser -r /etc/apparmor.d/agentbox-bwrap`)
    .action((opts: { bwrap?: string }) => run((io) => usernsProfileCommand(opts, io)));
}
