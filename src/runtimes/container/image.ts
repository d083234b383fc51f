/**
 * `agentbox image build`: the container runtime's base image, built here with no
 * registry. A Debian bookworm rootfs from debootstrap (minbase plus python3 and socat:
 * socat forwards the box's loopback proxy port to the session's proxy socket), cached
 * so a rebuild only re-imports it, then imported into the Docker Engine with its
 * /tmp at 1777 and without /srv, /opt, /mnt, /media or anything under /home.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { AgentboxError } from '../../errors.js';
import { whichSync } from '../../host/which.js';

export const BASE_IMAGE = 'agentbox/base:1';
// libstdc++6: the host's node, bound in with an npm agent, needs it.
export const IMAGE_PACKAGES = ['python3', 'socat', 'libstdc++6'];

export interface ImageBuildOptions {
  tag: string;
  /** Where the rootfs is cached (AGENTBOX_IMAGE_CACHE, default /var/cache/agentbox). */
  cache: string;
  mirror: string;
  /** Rebuild the rootfs even if cached. */
  fresh: boolean;
  progress: (line: string) => void;
}

function run(cmd: string, args: string[], progress: (l: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const onData = (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (line.trim()) {
          progress(line.trim());
          tail = `${tail}\n${line}`.slice(-2000);
        }
      }
    };
    c.stdout.on('data', onData);
    c.stderr.on('data', onData);
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}:${tail}`))));
  });
}

/** Builds (or reuses) the rootfs; returns its directory. */
export async function buildRootfs(o: ImageBuildOptions): Promise<string> {
  const dir = join(o.cache, 'rootfs-bookworm-agent');
  const marker = join(dir, 'usr/bin/socat');
  if (existsSync(marker) && !o.fresh) {
    o.progress(`rootfs: reusing ${dir}`);
    return dir;
  }
  if (!whichSync('debootstrap')) throw new AgentboxError('CONTROL_UNAVAILABLE', 'cannot build the base image: debootstrap is not installed', { details: ['apt-get install debootstrap'] });
  mkdirSync(o.cache, { recursive: true, mode: 0o755 });
  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  o.progress(`rootfs: debootstrap bookworm (minbase + ${IMAGE_PACKAGES.join(', ')}) from ${o.mirror}; about a minute`);
  try {
    await run('debootstrap', ['--variant=minbase', `--include=${IMAGE_PACKAGES.join(',')}`, 'bookworm', partial, o.mirror], (l) => o.progress(`  ${l}`));
  } catch (e) {
    rmSync(partial, { recursive: true, force: true });
    throw new AgentboxError('CONTROL_UNAVAILABLE', `debootstrap failed: ${(e as Error).message.split('\n')[0]}`, { details: [`is ${o.mirror} reachable? set AGENTBOX_DEBIAN_MIRROR to a mirror that is`] });
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  return dir;
}

// Folders an agent has no business finding (nothing of the host is there, and their
// absence keeps "ls /srv" failing as in the process runtime), caches, and the mount points the runtime fills.
const EXCLUDE = ['./srv', './opt', './mnt', './media', './home/*', './var/cache/apt/*', './var/lib/apt/lists/*', './dev/*', './proc/*', './sys/*', './run/*', './tmp/*'];

/** Imports the rootfs as `tag` through the Engine API (POST /images/create?fromSrc=-). */
export async function importRootfs(docker: Docker, dir: string, o: ImageBuildOptions): Promise<string> {
  const tar = spawn('tar', ['-C', dir, '--numeric-owner', ...EXCLUDE.flatMap((e) => ['--exclude', e]), '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const [repo, tag] = o.tag.includes(':') ? [o.tag.slice(0, o.tag.lastIndexOf(':')), o.tag.slice(o.tag.lastIndexOf(':') + 1)] : [o.tag, 'latest'];
  o.progress(`import: ${dir} → ${o.tag}`);
  const stream = await docker.importImage(tar.stdout as unknown as NodeJS.ReadableStream, {
    repo,
    tag,
    changes: ['CMD ["/bin/sh"]', 'WORKDIR /', 'LABEL org.agentbox.base=1', `LABEL org.agentbox.packages=${IMAGE_PACKAGES.join(',')}`],
  } as unknown as Record<string, unknown>);
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve()), (ev: { status?: string; error?: string }) => {
      if (ev.error) o.progress(`  ${ev.error}`);
    }),
  );
  const img = await docker.getImage(o.tag).inspect();
  o.progress(`image: ${o.tag} ${img.Id.slice(0, 19)} (${(img.Size / 1024 / 1024).toFixed(0)} MiB)`);
  return img.Id;
}
