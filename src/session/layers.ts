/**
 * A session's writable layers: where the agent's writes go instead of the granted
 * folders, and how they come back (snapshot: persist) or go away (revert).
 *
 * - All of a session's layers live on one file system of `limits.disk` bytes: a sparse
 *   ext4 image loop-mounted at STATE/sessions/ID/layers (root, 0700), or a tmpfs of that
 *   size where the host has no loop devices. A write past the limit fails with ENOSPC
 *   inside the box; the host's disk is never filled by the agent.
 * - A writable directory is an overlay (upper and work on the layers file system, its
 *   lower a read-only bind of the fd opened at launch); a writable file is a copy on the
 *   layers file system, bound in its place.
 * - Listing and committing are done by the native overlay-commit helper, which walks by
 *   fd without following links and writes as the agent's uid, confined by Landlock to
 *   the grant (see src/native/overlay-commit/); reverting is unmounting the layers and
 *   deleting one image file, whatever the agent wrote.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { AgentboxError } from '../errors.js';
import { layerPaths, layersImage, layersMount, type LayerPaths, type SessionPaths } from '../box/common.js';
import { fdPath, type OpenedGrant } from './grants.js';
import { mountsUnder } from '../host/proc.js';
import { packageRoot } from '../host/files.js';

export const DEFAULT_DISK_BYTES = 4 * 1024 ** 3;
const MIN_DISK_BYTES = 16 * 1024 ** 2;

export interface Change {
  path: string;
  kind: 'added' | 'modified' | 'deleted' | 'skipped';
}

/** A layer as the session record keeps it (enough to list, commit or drop it later). */
export interface LayerRecord extends LayerPaths {
  /** The granted file's identity when the session started (a file layer commits only into it). */
  dev?: number;
  ino?: number;
}

export interface SessionLayers {
  fs: 'ext4-image' | 'tmpfs';
  /** Bytes the agent may write in all (limits.disk). */
  limitBytes: number;
  image: string | null;
  mount: string;
  layers: LayerRecord[];
}

const overlayHelper = () => posix.join(packageRoot(), 'dist', 'native', 'overlay-commit');

/** The disk limit a session gets: the manifest's, or the default capped at half the free space. */
export function diskLimit(state: string, requested: number | undefined): number {
  let free = Number.MAX_SAFE_INTEGER;
  try {
    const s = statfsSync(state);
    free = s.bavail * s.bsize;
  } catch {
    // unknown: the request stands
  }
  if (requested !== undefined) {
    if (requested > free) throw new AgentboxError('CONTROL_UNAVAILABLE', `limits.disk asks for ${requested} bytes but ${state} has ${free} free; nothing was started`, { details: ['lower limits.disk, or free space on the state directory\'s file system'] });
    return requested;
  }
  const limit = Math.min(DEFAULT_DISK_BYTES, Math.floor(free / 2));
  if (limit < MIN_DISK_BYTES) throw new AgentboxError('CONTROL_UNAVAILABLE', `${state} has ${free} bytes free: too little for the session's writable layers; nothing was started`);
  return limit;
}

/** Creates and mounts the layers file system, and each writable grant's layer. */
export function createLayers(paths: SessionPaths, writes: readonly { opened: OpenedGrant; index: number }[], limitBytes: number): SessionLayers {
  const mount = layersMount(paths);
  const image = layersImage(paths);
  mkdirSync(posix.dirname(mount), { recursive: true, mode: 0o711 });
  mkdirSync(mount, { recursive: true, mode: 0o700 });
  chmodSync(mount, 0o700);
  let fs: SessionLayers['fs'] = 'ext4-image';
  try {
    writeFileSync(image, '', { mode: 0o600 });
    execFileSync('truncate', ['-s', String(limitBytes), image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-E', 'nodiscard,lazy_itable_init=1,root_owner=0:0', '-m', '0', image], { stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync('mount', ['-o', 'loop,nosuid,nodev,noexec', image, mount], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    // No loop device (a container host): a tmpfs of the same size bounds the writes too.
    rmSync(image, { force: true });
    fs = 'tmpfs';
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${limitBytes},mode=0700,nosuid,nodev,noexec`, 'agentbox-layers', mount], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot create the session's size-bounded writable layers (neither a loop-mounted image nor a tmpfs): ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}; nothing was started`);
    }
  }
  chmodSync(mount, 0o700);
  const layers: LayerRecord[] = [];
  for (const { opened: o, index } of writes) {
    const l: LayerRecord = layerPaths(paths, index, o.kind === 'dir' ? 'dir' : 'file', o.grant.path);
    if (l.kind === 'dir') {
      for (const d of [l.upper, l.work]) mkdirSync(d, { recursive: true, mode: 0o700 });
      // The overlay's root shows the upper layer's owner and mode: the grant's own.
      chownSync(l.upper, o.uid, o.gid);
      chmodSync(l.upper, o.mode);
    } else {
      mkdirSync(posix.dirname(l.copy), { recursive: true, mode: 0o700 });
      // The copy is read through the fd opened at launch, so it is the granted file.
      copyFileSync(fdPath(o.fd), l.copy);
      chownSync(l.copy, o.uid, o.gid);
      chmodSync(l.copy, o.mode & 0o777);
      l.dev = o.dev;
      l.ino = o.ino;
    }
    layers.push(l);
  }
  return { fs, limitBytes, image: fs === 'ext4-image' ? image : null, mount, layers };
}

/** Directories and files the engine mounts onto; created before the box starts. */
export function makeMountPoints(dirs: readonly string[], files: readonly string[]): void {
  for (const d of dirs) {
    mkdirSync(d, { recursive: true, mode: 0o755 });
    for (let p = posix.dirname(d); p.length > 1 && p.includes('/mnt'); p = posix.dirname(p)) chmodSync(p, 0o711);
  }
  for (const f of files) {
    mkdirSync(posix.dirname(f), { recursive: true, mode: 0o711 });
    closeSync(openSync(f, 'w', 0o600));
  }
}

function runHelper(args: string[]): { status: number; records: [string, string][] } {
  let out: Buffer;
  let status = 0;
  try {
    out = execFileSync(overlayHelper(), args, { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { status?: number; stdout?: Buffer; stderr?: Buffer };
    status = err.status ?? 2;
    out = err.stdout ?? Buffer.alloc(0);
    if (status === 2 && !out.length) throw new AgentboxError('INTERNAL', `overlay-commit ${args[0]}: ${String(err.stderr ?? '').trim() || 'failed'}`);
  }
  const parts = out.toString('utf8').split('\0');
  const records: [string, string][] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) records.push([parts[i]!, parts[i + 1]!]);
  return { status, records };
}

const absolute = (l: LayerRecord, rel: string) => (rel === '.' ? l.path : posix.join(l.path, rel));

/** What the agent changed, per layer (read-only; the box must have ended). */
export function layerChanges(layers: readonly LayerRecord[]): Change[] {
  const out: Change[] = [];
  for (const l of layers) {
    const r = l.kind === 'dir' ? (existsSync(l.upper) ? runHelper(['diff', l.upper, l.path]) : { status: 0, records: [] }) : runHelper(['diff-file', l.copy, l.path]);
    for (const [kind, rel] of r.records) if (kind === 'added' || kind === 'modified' || kind === 'deleted' || kind === 'skipped') out.push({ path: absolute(l, rel), kind });
  }
  return out;
}

export interface CommitResult {
  ok: boolean;
  committed: number;
  /** What could not be committed (FIFOs, sockets, devices), and leftovers a failed cleanup kept. */
  skipped: string[];
  failures: string[];
  /** A failure whose rollback was incomplete: the grant may be part-changed. */
  partial: boolean;
}

/** Commits every layer into its grant as the agent's uid (snapshot: persist). */
export function commitLayers(layers: readonly LayerRecord[], uid: number, gid: number): CommitResult {
  const res: CommitResult = { ok: true, committed: 0, skipped: [], failures: [], partial: false };
  for (const l of layers) {
    const r = l.kind === 'dir' ? runHelper(['commit', l.upper, l.path, String(uid), String(gid)]) : runHelper(['commit-file', l.copy, l.path, String(uid), String(gid), String(l.dev ?? 0), String(l.ino ?? 0)]);
    for (const [kind, rel] of r.records) {
      if (kind === 'skipped' || kind === 'leftover') res.skipped.push(absolute(l, rel));
      else if (kind === 'committed') res.committed += Number(rel);
      else if (kind === 'failed') res.failures.push(`${l.path}: ${rel}`);
    }
    if (r.status !== 0) {
      res.ok = false;
      if (r.status === 3) res.partial = true;
      if (!r.records.some(([k]) => k === 'failed')) res.failures.push(`${l.path}: the commit failed (overlay-commit exit ${r.status})`);
    }
  }
  return res;
}

/** Unmounts everything mounted under `dir`, deepest first (lazily when busy), except the mount points in `keep`. */
export function unmountUnder(dir: string, keep: readonly string[] = []): void {
  for (const m of mountsUnder(dir)) {
    if (keep.includes(m)) continue;
    try {
      execFileSync('umount', [m], { stdio: 'ignore' });
    } catch {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
}

/** Unmounts what a box mounted under the session's run dir; the layers stay for listing and commit. */
export function unmountBox(paths: SessionPaths): void {
  unmountUnder(paths.run, [layersMount(paths)]);
}

/** Mounts a kept layers image again (an orphaned session's layers, for kill to finish). */
export function remountLayers(s: SessionLayers): void {
  if (mountsUnder(s.mount).includes(s.mount)) return;
  if (!s.image || !existsSync(s.image)) throw new AgentboxError('CONTROL_UNAVAILABLE', `the session's layers (${s.mount}) are gone${s.fs === 'tmpfs' ? ' (they were in memory)' : ''}`);
  mkdirSync(s.mount, { recursive: true, mode: 0o700 });
  execFileSync('mount', ['-o', 'loop,nosuid,nodev,noexec', s.image, s.mount], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Drops the layers: unmounted, the image deleted. Nothing the agent wrote survives it. */
export function dropLayers(s: SessionLayers): void {
  unmountUnder(s.mount);
  if (s.image) rmSync(s.image, { force: true });
}

/**
 * Removes a session directory, but never through a mount: anything still mounted below
 * it (a grant's bind, an overlay) is unmounted first, and if something stays mounted the
 * directory is kept rather than risk deleting a user's file through it.
 */
export function removeSessionDir(dir: string): boolean {
  unmountUnder(dir);
  if (mountsUnder(dir).length > 0) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}
