/**
 * `agentbox image build`: the container runtime's base image, built offline from a
 * debootstrap rootfs and imported into the Docker Engine.
 */
import type { Command } from 'commander';
import { BASE_IMAGE, buildContainerImage, buildMicrovm } from '../../actions/image.js';
import type { Io } from '../io.js';

export async function imageBuildCommand(opts: { tag: string; fresh?: boolean; microvm?: boolean }, io: Io): Promise<number> {
  const progress = (l: string) => io.info(io.style.dim(l));
  const t0 = Date.now();
  if (opts.microvm) {
    const img = await buildMicrovm(Boolean(opts.fresh), progress);
    if (io.json) io.data({ ...img, seconds: (Date.now() - t0) / 1000 });
    else io.out(`micro-VM kernel ${img.version} and initramfs ready (${img.accel}) in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${img.kernel}, ${img.initramfs}`);
    return 0;
  }
  const { id, rootfs } = await buildContainerImage(opts.tag, Boolean(opts.fresh), progress);
  if (io.json) io.data({ tag: opts.tag, id, rootfs, seconds: (Date.now() - t0) / 1000 });
  else io.out(`${opts.tag} ${id.slice(0, 19)} built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return 0;
}

export function registerImage(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  const image = program.command('image').description('container images for the container runtime');
  image
    .command('build')
    .description(`build the base image (${BASE_IMAGE}) offline: a debootstrap rootfs (cached) imported into the Docker Engine`)
    .option('--tag <name>', 'image name', BASE_IMAGE)
    .option('--fresh', 'rebuild the cached rootfs too')
    .option('--microvm', 'build the micro-VM kernel (Debian linux-image-amd64, downloaded, not installed) and initramfs instead')
    .addHelpText('after', `
The rootfs is Debian bookworm minbase plus python3 and socat, cached in
$AGENTBOX_IMAGE_CACHE (default /var/cache/agentbox); the mirror is
$AGENTBOX_DEBIAN_MIRROR (default http://deb.debian.org/debian). DOCKER_HOST selects the Engine.

Examples:
  agentbox image build
  DOCKER_HOST=unix:///run/my-docker.sock agentbox image build --tag agentbox/base:1
  agentbox image build --fresh --json
  agentbox image build --microvm`)
    .action((opts: { tag: string; fresh?: boolean; microvm?: boolean }) => run((io) => imageBuildCommand(opts, io)));
}
