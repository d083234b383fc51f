/**
 * `agentbox init`: scaffold a manifest for a CLI as installed, or from a shipped profile.
 */
import type { Command } from 'commander';
import { init } from '../../actions/init.js';
import type { Io } from '../io.js';

export function registerInit(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('init')
    .description('write a commented manifest to start from: for a CLI as installed here (its resolved command, package folder, a work folder and a config folder), or a copy of a shipped profile')
    .option('--from <path-or-profile>', 'the program (a path, or a name on PATH) or a shipped profile name', 'claude')
    .option('--out <file>', 'write it here instead of printing it')
    .option('--force', 'overwrite --out if it exists')
    .option('--home <dir>', 'home directory that ~ means (default: yours)')
    .addHelpText('after', `
The manifest is checked by the loader before it is written.

Examples:
  agentbox init --from claude --out claude.yaml
  agentbox init --from ~/.npm-global/bin/codex
  agentbox init --from gemini-cli --out gemini.yaml`)
    .action((opts: { from: string; out?: string; force?: boolean; home?: string }) =>
      run(async (io) => {
        const r = init(opts.from, opts.out, Boolean(opts.force), ...(opts.home ? [opts.home] : []));
        if (r.out) io.info(`wrote ${r.out}; check it with: agentbox validate --host ${r.out}`);
        else process.stdout.write(r.text);
        return 0;
      }),
    );
}
