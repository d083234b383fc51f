/**
 * A Debian rootfs with systemd for booting generated units under a real systemd
 * (systemd-nspawn --boot), with nftables. Built once with debootstrap (about 30 s) and cached in
 * AGENTBOX_TEST_CACHE (default /var/cache/agentbox-test); each test boots an overlay
 * over it, so the cache is never modified.
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CACHE = process.env.AGENTBOX_TEST_CACHE ?? '/var/cache/agentbox-test';
// nftables: the agent's firewall unit loads its rules with nft at boot.
const ROOTFS = join(CACHE, 'rootfs-bookworm-nft');

export async function ensureRootfs(): Promise<string> {
  if (existsSync(join(ROOTFS, 'usr/lib/systemd/systemd'))) return ROOTFS;
  mkdirSync(CACHE, { recursive: true });
  const partial = `${ROOTFS}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  await execa('debootstrap', ['--variant=minbase', '--include=systemd,systemd-sysv,nftables', 'bookworm', partial, 'http://deb.debian.org/debian'], { stdio: 'inherit' });
  renameSync(partial, ROOTFS);
  return ROOTFS;
}

/** An overlay over the cached rootfs; `dispose` unmounts and removes it. */
export async function overlayRoot(): Promise<{ root: string; dispose: () => Promise<void> }> {
  const lower = await ensureRootfs();
  const w = mkdtempSync(join(tmpdir(), 'agentbox-nspawn-'));
  for (const d of ['upper', 'work', 'merged']) mkdirSync(join(w, d));
  await execa('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(w, 'upper')},workdir=${join(w, 'work')}`, join(w, 'merged')]);
  return {
    root: join(w, 'merged'),
    dispose: async () => {
      await execa('umount', [join(w, 'merged')], { reject: false });
      rmSync(w, { recursive: true, force: true });
    },
  };
}

/** Boots the root with systemd as PID 1 until it powers itself off (or the deadline). */
export async function bootUntilPoweroff(root: string, seconds = 90, extra: readonly string[] = []): Promise<{ code: number; log: string }> {
  const r = await execa('systemd-nspawn', ['-D', root, '--boot', '--register=no', '--keep-unit', '--quiet', '--private-network', ...extra], { reject: false, stdin: 'ignore', timeout: seconds * 1000, all: true });
  return { code: r.exitCode ?? -1, log: String(r.all) };
}
