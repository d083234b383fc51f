/**
 * Once before any test: builds dist/ (tsc, the precompiled validator, the bundle,
 * landlock-exec) so the CLI tests run what ships; starts the Docker Engine the
 * container-runtime tests use and builds agentbox's base image into it offline (the
 * rootfs is cached in AGENTBOX_IMAGE_CACHE), and the micro-VM kernel and initramfs;
 * installs the pinned real agent CLIs from npm into the cache (test/helpers/agents.ts),
 * so every test file that runs one finds it whatever order files run in; stops that
 * dockerd afterwards.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { installAgent, PINNED, type Agent } from './helpers/agents.js';
import { startDockerd } from './helpers/docker.js';

const ROOT = join(import.meta.dirname, '..');
let stop: (() => Promise<void>) | undefined;

export default async function setup(): Promise<() => Promise<void>> {
  await execa('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  const docker = await startDockerd();
  stop = docker.stop;
  process.env.DOCKER_HOST = docker.host;
  process.env.AGENTBOX_IMAGE_CACHE ??= process.env.AGENTBOX_TEST_CACHE ?? '/var/cache/agentbox-test';
  await execa(process.execPath, [join(ROOT, 'bin', 'agentbox.js'), 'image', 'build'], { stdio: 'inherit', env: { NO_COLOR: '1' } });
  await execa(process.execPath, [join(ROOT, 'bin', 'agentbox.js'), 'image', 'build', '--microvm'], { stdio: 'inherit', env: { NO_COLOR: '1' } });
  for (const a of Object.keys(PINNED) as Agent[]) await installAgent(a);
  return async () => {
    await stop?.();
  };
}
