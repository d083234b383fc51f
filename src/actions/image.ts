/**
 * `image build`: the container runtime's base image, built offline from a debootstrap
 * rootfs and imported into the Docker Engine; or the micro-VM's kernel and initramfs.
 */
import { AgentboxError } from '../errors.js';
import { debianMirror, imageCache } from '../env.js';
import { dockerClient } from '../runtimes/container/engine.js';
import { buildRootfs, importRootfs } from '../runtimes/container/image.js';

export { BASE_IMAGE } from '../runtimes/container/image.js';

export async function buildMicrovm(fresh: boolean, progress: (line: string) => void) {
  const { buildMicrovmImage } = await import('../runtimes/microvm/image.js');
  return buildMicrovmImage({ cache: imageCache(), fresh, progress });
}

export async function buildContainerImage(tag: string, fresh: boolean, progress: (line: string) => void): Promise<{ id: string; rootfs: string }> {
  if (!/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]{1,128})?$/.test(tag)) throw new AgentboxError('USAGE', `--tag ${tag}: an image name such as agentbox/base:1 (lowercase name, optional :tag)`);
  const o = { tag, cache: imageCache(), mirror: debianMirror(), fresh, progress };
  const docker = await dockerClient();
  try {
    await docker.ping();
  } catch (e) {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `the Docker Engine does not answer (${(e as Error).message.split('\n')[0]})`, { details: ['start dockerd, or set DOCKER_HOST'] });
  }
  const rootfs = await buildRootfs(o);
  return { id: await importRootfs(docker, rootfs, o), rootfs };
}
