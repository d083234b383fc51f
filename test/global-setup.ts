/** Builds dist/ once so the CLI tests run the same code the package ships. */
import { execa } from 'execa';
import { join } from 'node:path';

export default async function setup(): Promise<void> {
  const root = join(import.meta.dirname, '..');
  await execa(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
}
