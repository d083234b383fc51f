/**
 * `agentbox image build --microvm`: the micro-VM runtime's kernel and initramfs, built
 * here with no registry. The kernel is Debian's linux-image-amd64 (downloaded with
 * apt-get download and unpacked, never installed on the host); the initramfs holds
 * busybox-static, the virtio/9p modules that kernel needs (in dependency order, read
 * from each module's own `depends=`), templates/microvm/init and the static
 * guest-exec. Then a boot probe decides the accelerator: KVM only if a guest boots
 * under it within the deadline, TCG otherwise.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentboxError } from '../../errors.js';
import { render } from '../../generate/template.js';
import { packageRoot } from '../../host/files.js';
import { whichSync } from '../../host/which.js';
import { sha256Hex } from '../../hash.js';

/** What guest-exec needs: virtio over MMIO, 9p shares, the network and the consoles. */
export const GUEST_MODULES = ['virtio_mmio', 'virtio_net', '9pnet_virtio', '9p', 'virtio_console'];

export interface MicrovmImage {
  kernel: string;
  initramfs: string;
  version: string;
  accel: 'kvm' | 'tcg';
  /** sha256 of what went into the initramfs (guest-exec, init, busybox): a change rebuilds it. */
  inputs: string;
}

function inputsDigest(): string {
  const files = [join(packageRoot(), 'dist', 'native', 'guest-exec'), join(packageRoot(), 'templates', 'microvm', 'init'), whichSync('busybox') ?? ''];
  return sha256Hex(Buffer.concat(files.map((f) => (existsSync(f) ? readFileSync(f) : Buffer.from(f)))));
}

export const microvmDir = (cache: string) => join(cache, 'microvm');

export function readMicrovmImage(cache: string): MicrovmImage | undefined {
  const dir = microvmDir(cache);
  try {
    return JSON.parse(readFileSync(join(dir, 'image.json'), 'utf8')) as MicrovmImage;
  } catch {
    return undefined;
  }
}

function modDepends(ko: string): string[] {
  const m = /depends=([A-Za-z0-9_,-]*)/.exec(readFileSync(ko, 'latin1'));
  return m && m[1] ? m[1].split(',').filter(Boolean) : [];
}

/** The modules to insmod, dependencies first. */
export function moduleOrder(find: (name: string) => string | undefined, wanted: readonly string[]): string[] {
  const order: string[] = [];
  const visit = (name: string, path: string[]) => {
    if (order.includes(name)) return;
    if (path.includes(name)) throw new AgentboxError('INTERNAL', `module dependency cycle: ${[...path, name].join(' → ')}`);
    const ko = find(name);
    if (!ko) return; // built into the kernel
    for (const d of modDepends(ko)) visit(d, [...path, name]);
    order.push(name);
  };
  for (const w of wanted) visit(w, []);
  return order;
}

export async function buildMicrovmImage(o: { cache: string; fresh: boolean; progress: (l: string) => void; probeSeconds?: number }): Promise<MicrovmImage> {
  const dir = microvmDir(o.cache);
  const have = readMicrovmImage(o.cache);
  const inputs = inputsDigest();
  if (have && existsSync(have.kernel) && existsSync(have.initramfs) && have.inputs === inputs && !o.fresh) {
    o.progress(`micro-VM: reusing ${dir} (kernel ${have.version}, ${have.accel})`);
    return have;
  }
  const gaps = ['qemu-system-x86_64', 'busybox', 'apt-get', 'dpkg-deb', 'gzip'].filter((c) => !whichSync(c));
  if (gaps.length) throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot build the micro-VM image: ${gaps.join(', ')} missing`, { details: ['apt-get install qemu-system-x86 busybox-static'] });
  const guestExec = join(packageRoot(), 'dist', 'native', 'guest-exec');
  if (!existsSync(guestExec)) throw new AgentboxError('CONTROL_UNAVAILABLE', 'dist/native/guest-exec is not built (npm run build; needs libc6-dev for a static binary)');
  mkdirSync(dir, { recursive: true });

  // The kernel package linux-image-amd64 points at, unpacked into the cache.
  const dep = /Depends: (linux-image-[0-9][^\s]*)/.exec(execFileSync('apt-cache', ['depends', 'linux-image-amd64'], { encoding: 'utf8' }))?.[1];
  if (!dep) throw new AgentboxError('CONTROL_UNAVAILABLE', 'apt knows no linux-image-amd64 (run apt-get update)');
  const version = dep.replace(/^linux-image-/, '');
  const unpacked = join(dir, `kernel-${version}`);
  if (!existsSync(join(unpacked, 'boot', `vmlinuz-${version}`))) {
    o.progress(`micro-VM: apt-get download ${dep}`);
    const dl = mkdtempSync(join(tmpdir(), 'agentbox-kernel-'));
    chmodSync(dl, 0o755);
    const r = spawnSync('apt-get', ['download', dep], { cwd: dl, encoding: 'utf8' });
    const deb = readdirSync(dl).find((f) => f.endsWith('.deb'));
    if (!deb) throw new AgentboxError('CONTROL_UNAVAILABLE', `apt-get download ${dep} failed: ${(r.stderr || '').trim().split('\n').pop()}`);
    rmSync(unpacked, { recursive: true, force: true });
    execFileSync('dpkg-deb', ['-x', join(dl, deb), unpacked]);
    rmSync(dl, { recursive: true, force: true });
  }
  // The uncompressed ELF kernel (QEMU boots it through its PVH entry) saves the 2 s the
  // bzImage spends decompressing itself under TCG; the bzImage is the fallback.
  const bz = join(unpacked, 'boot', `vmlinuz-${version}`);
  let kernel = join(dir, 'vmlinuz');
  copyFileSync(bz, kernel);
  const bytes = readFileSync(bz);
  const at = bytes.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
  if (at >= 0 && whichSync('xz')) {
    const r = spawnSync('xz', ['-dc', '--single-stream'], { input: bytes.subarray(at), maxBuffer: 512 * 1024 * 1024 });
    if (r.status === 0 && r.stdout.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
      kernel = join(dir, 'vmlinux');
      writeFileSync(kernel, r.stdout);
    }
  }

  // The initramfs tree.
  const modRoot = join(unpacked, 'lib', 'modules', version);
  const index = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.ko')) index.set(e.name.slice(0, -3).replace(/-/g, '_'), join(d, e.name));
    }
  };
  walk(modRoot);
  const order = moduleOrder((n) => index.get(n.replace(/-/g, '_')), GUEST_MODULES);
  const tree = mkdtempSync(join(tmpdir(), 'agentbox-initramfs-'));
  // The archive's "." is the guest's /: mkdtemp made it 0700, which would shut the agent out of everything.
  chmodSync(tree, 0o755);
  for (const d of ['modules', 'proc', 'sys', 'dev', 'tmp', 'usr', 'ctl', 'etc', 'run', 'root', 'var', 'var/tmp']) mkdirSync(join(tree, d), { recursive: true });
  for (const [l, t] of [['bin', 'usr/bin'], ['sbin', 'usr/sbin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64']]) symlinkSync(t!, join(tree, l!));
  copyFileSync(whichSync('busybox')!, join(tree, 'busybox'));
  chmodSync(join(tree, 'busybox'), 0o755);
  copyFileSync(guestExec, join(tree, 'guest-exec'));
  chmodSync(join(tree, 'guest-exec'), 0o755);
  for (const m of order) copyFileSync(index.get(m)!, join(tree, 'modules', `${m}.ko`));
  const init = render('microvm/init', readFileSync(join(packageRoot(), 'templates', 'microvm', 'init'), 'utf8'), { modules: order.join(' ') });
  writeFileSync(join(tree, 'init'), init, { mode: 0o755 });
  const initramfs = join(dir, 'initramfs.gz');
  execFileSync('/bin/sh', ['-c', `cd "$1" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$2"`, 'pack', tree, `${initramfs}.tmp`]);
  execFileSync('mv', [`${initramfs}.tmp`, initramfs]);
  rmSync(tree, { recursive: true, force: true });
  o.progress(`micro-VM: kernel ${version}, initramfs with ${order.join(', ')}`);

  const accel = probeKvm(kernel, initramfs, o.probeSeconds ?? 15, o.progress);
  const image: MicrovmImage = { kernel, initramfs, version, accel, inputs };
  writeFileSync(join(dir, 'image.json'), JSON.stringify(image, null, 2) + '\n');
  return image;
}

/** Boots the guest under KVM with a deadline; KVM is used only if it powers off on its own in time. */
function probeKvm(kernel: string, initramfs: string, seconds: number, progress: (l: string) => void): 'kvm' | 'tcg' {
  if (!existsSync('/dev/kvm')) {
    progress('micro-VM: no /dev/kvm; guests use TCG');
    return 'tcg';
  }
  progress(`micro-VM: boot probe under KVM (deadline ${seconds}s)`);
  const r = spawnSync('qemu-system-x86_64', ['-M', 'microvm,x-option-roms=off,rtc=off', '-accel', 'kvm', '-cpu', 'host', '-m', '256M', '-smp', '1', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-kernel', kernel, '-initrd', initramfs, '-append', 'console=ttyS0 quiet panic=-1 rdinit=/init', '-serial', 'stdio'], {
    timeout: seconds * 1000,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // With no /usr share the init powers the guest off: reaching that in time is the proof it runs.
  const ok = r.status === 0 && !r.error;
  progress(ok ? 'micro-VM: KVM boots guests here; using it' : `micro-VM: KVM did not boot a guest within ${seconds}s (${r.error ? 'timed out' : `exit ${r.status}`}); using TCG`);
  return ok ? 'kvm' : 'tcg';
}
