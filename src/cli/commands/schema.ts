/**
 * `agentbox schema`: print the manifest JSON Schema (the same as profiles/agentbox.schema.json).
 */
import type { Command } from 'commander';
import { manifestSchema } from '../../manifest/schema.js';
import type { Io } from '../io.js';

export function schemaText(): string {
  return JSON.stringify(manifestSchema, null, 2) + '\n';
}

export function registerSchema(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('schema')
    .description('print the manifest JSON Schema for editors and CI')
    .addHelpText('after', `
Examples:
  agentbox schema > agentbox.schema.json
  # then, first line of a manifest:  # yaml-language-server: $schema=./agentbox.schema.json`)
    .action(() =>
      run(async (io) => {
        io.out(schemaText().trimEnd());
        return 0;
      }),
    );
}
