/**
 * The host side of the runtimes whose engine takes paths (container, micro-VM): the
 * grants the launcher opened are bound, by fd and read-only, under the session's run
 * directory, and each writable grant's layer is assembled there (an overlay whose lower
 * layer is such a read-only bind, or a file's session copy). No bind of a granted
 * folder is ever writable: only an overlay's merged view is, and writing through it
 * changes the upper layer, never the grant. Everything here lives under the run
 * directory and comes off with `unmountUnder(run)`.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import type { Model } from '../model/types.js';
import { layerNeedsExec, overlayOptions, type LayerPaths, type PathKind } from '../box/common.js';
import type { OpenedGrant } from '../session/grants.js';

/** What is at a path on the host (following links), for the plans' `kind` fact. */
export function pathKind(p: string): PathKind {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'file';
  } catch {
    return 'missing';
  }
}

const run = (args: string[], fd?: number) => execFileSync('mount', args, { stdio: fd === undefined ? ['ignore', 'ignore', 'pipe'] : ['ignore', 'ignore', 'pipe', fd] });

/** A mount point of the right kind (a file is bound onto a file). */
function mountPoint(at: string, kind: 'dir' | 'file' | 'socket'): void {
  if (kind === 'dir') mkdirSync(at, { recursive: true, mode: 0o755 });
  else {
    mkdirSync(posix.dirname(at), { recursive: true, mode: 0o711 });
    closeSync(openSync(at, 'a', 0o600));
  }
}

/** Binds the opened grant (fd 3 of mount(8), exactly the file the launcher opened) at `at`, read-only. */
export function bindOpened(o: OpenedGrant, at: string, readOnly = true): void {
  mountPoint(at, o.kind);
  run(['--no-canonicalize', '--bind', '/proc/self/fd/3', at], o.fd);
  if (readOnly) run(['-o', 'remount,bind,ro', at]);
}

/** Mounts each layer on the host: overlays (lower = read-only bind of the opened grant) and file copies. */
export function mountLayers(model: Model, command: readonly string[], layers: readonly LayerPaths[], openedFor: (layer: number) => OpenedGrant): void {
  for (const l of layers) {
    if (l.kind === 'dir') {
      bindOpened(openedFor(l.index), l.lower);
      mountPoint(l.merged, 'dir');
      run(['-t', 'overlay', 'agentbox', '-o', overlayOptions(l, !layerNeedsExec(model, command, l.path)), l.merged]);
    } else {
      mountPoint(l.file, 'file');
      run(['--bind', l.copy, l.file]);
    }
  }
}

/** Binds a file (a writable file's session copy) at `at`. */
export function bindPath(source: string, at: string): void {
  mountPoint(at, 'file');
  run(['--bind', source, at]);
}
