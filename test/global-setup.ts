/** Builds dist/ (tsc, the precompiled validator, the bundle, landlock-exec) once, so the CLI tests run what ships. */
import { execa } from 'execa';
import { join } from 'node:path';

export default async function setup(): Promise<void> {
  await execa('npm', ['run', '--silent', 'build'], { cwd: join(import.meta.dirname, '..'), stdio: 'inherit' });
}
