/**
 * What the three box plans share (pure): the facts a host gives them about the granted
 * paths, where a session keeps its writable layers, the in-box proxy forwarder, and the
 * check that no grant overlaps what a runtime builds itself.
 */
import { posix } from 'node:path';
import { isWithin } from '../model/paths.js';
import type { Model } from '../model/types.js';
import { effectiveFs } from '../model/grants.js';

export const BOX_PROXY_PORT = 3128;
export const BOX_RUN = '/run/agentbox';

export type PathKind = 'dir' | 'file' | 'missing';

/**
 * A granted path as the host opened it (session/grants.ts): the plans bind what was
 * opened, never a path string looked up again. Only grants that exist are given.
 */
export interface GrantFact {
  path: string;
  access: 'read' | 'write';
  kind: 'dir' | 'file' | 'socket';
  /** The writable layer that holds the agent's writes (write grants on a directory or file). */
  layer?: number;
}

/**
 * One writable grant's layer in the session directory. A directory is an overlay:
 * `upper` and `work` live on the session's size-bounded layers file system (root only),
 * `lower` is a read-only bind of the opened grant, `merged` what the box binds. A file
 * is a copy on the layers file system (`copy`), bound at `file` for the box.
 */
export interface LayerPaths {
  index: number;
  kind: 'dir' | 'file';
  /** The granted path. */
  path: string;
  upper: string;
  work: string;
  lower: string;
  merged: string;
  copy: string;
  file: string;
}

/**
 * A session's two directories. `dir` (STATE/sessions/ID) keeps what must survive the
 * launcher: the record's files and the layers image. `run` (/run/agentbox/ID as root)
 * holds the mount points and sources the box sees (proxy socket, binds, masks), so
 * what a box can read about its mounts names nothing but the session id.
 */
export interface SessionPaths {
  dir: string;
  run: string;
}

/** Where a session's layers file system is mounted (0700, root): under the run dir, so an overlay's options name nothing but the session. */
export const layersMount = (s: SessionPaths) => posix.join(s.run, 'layers');
/** The sparse image that holds it. */
export const layersImage = (s: SessionPaths) => posix.join(s.dir, 'layers.img');
/** The directory bound at /run/agentbox in the box: the proxy socket. */
export const proxyDir = (s: SessionPaths) => posix.join(s.run, 'proxy');
/** The empty, mode-000 directory bound over denied directories (container runtime). */
export const denyDir = (s: SessionPaths) => posix.join(s.run, 'denied-dir');
/** An empty mode-000 file bound over unix sockets inside grants (gVisor's gofer cannot mount a device node there). */
export const maskFile = (s: SessionPaths) => posix.join(s.run, 'masked');
/** Where the host binds the opened grant i for an engine that takes paths (container, micro-VM). */
export const grantBind = (s: SessionPaths, i: number) => posix.join(s.run, 'binds', String(i));

export function layerPaths(s: SessionPaths, index: number, kind: 'dir' | 'file', path: string): LayerPaths {
  const l = layersMount(s);
  const m = posix.join(s.run, 'mnt', String(index));
  return {
    index,
    kind,
    path,
    upper: posix.join(l, 'upper', String(index)),
    work: posix.join(l, 'work', String(index)),
    copy: posix.join(l, 'files', String(index)),
    lower: posix.join(m, 'lower'),
    merged: posix.join(m, 'merged'),
    file: posix.join(m, 'file'),
  };
}

/** The layers the facts' write grants need, in the facts' order. */
export function layersFor(s: SessionPaths, grants: readonly GrantFact[]): LayerPaths[] {
  return grants.flatMap((g) => (g.layer !== undefined && g.kind !== 'socket' ? [layerPaths(s, g.layer, g.kind, g.path)] : []));
}

/**
 * Overlay mount options. No redirects and no metadata-only copy-ups: every change the
 * agent makes is then a complete entry in the upper layer, which is what the commit
 * applies. Session paths come from a checked alphabet (no ',' or ':').
 */
export function overlayOptions(l: LayerPaths, noexec: boolean): string {
  return `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.work},redirect_dir=off,metacopy=off,index=off,xino=off,nosuid,nodev${noexec ? ',noexec' : ''}`;
}

/**
 * True when a writable grant must stay executable: the agent's command or an exec grant
 * lies inside it. Every other writable place is mounted noexec.
 */
export function layerNeedsExec(model: Model, command: readonly string[], path: string): boolean {
  return [command[0] ?? '', ...model.grants.exec.map((g) => g.path)].some((p) => p !== '' && (isWithin(p, path) || isWithin(path, p)));
}

/**
 * The box's first step when it has network: socat forwards the box's loopback proxy port
 * to the session's proxy socket (bound at BOX_RUN), and the agent starts once it
 * listens (state 0A in /proc/net/tcp). Shared by the process and container runtimes.
 */
export function forwarderInit(socat: string): string {
  const hexPort = BOX_PROXY_PORT.toString(16).toUpperCase().padStart(4, '0');
  return [
    `${socat} -b 262144 TCP-LISTEN:${BOX_PROXY_PORT},bind=127.0.0.1,reuseaddr,fork,nodelay UNIX-CONNECT:${BOX_RUN}/proxy.sock 2>/dev/null &`,
    `i=0; while [ $i -lt 2500 ] && ! grep -q ' 0100007F:${hexPort} 00000000:0000 0A' /proc/net/tcp; do i=$((i+1)); sleep 0.002; done`,
    'exec "$@"',
  ].join('\n');
}

/**
 * Grants that overlap paths a runtime builds itself: a grant on or inside one would be
 * shadowed or expose the host, one above it would replace it. Below the paths in
 * `bindableBelow` (a private /tmp) a grant is fine: it is bound over them.
 */
export function reservedOverlaps(model: Model, reserved: readonly string[], bindableBelow: readonly string[], why: string): string[] {
  const out: string[] = [];
  for (const g of effectiveFs(model).fs) {
    const r = reserved.find((x) => isWithin(x, g.path) || (!bindableBelow.includes(x) && isWithin(g.path, x)));
    if (r) out.push(`grant ${g.source.text} overlaps ${r}, ${why}`);
  }
  return out;
}

/** Denied paths that a grant makes visible (deny wins: the runtimes cover each). */
export function visibleDenies(model: Model, grants: readonly GrantFact[]): Model['denies']['fs'] {
  return model.denies.fs.filter((d) => grants.some((g) => isWithin(d.path, g.path)));
}

/**
 * What the box gets from the session's egress materials: the CA bundle (the host's
 * system roots with the session CA appended, a host file in the session's proxy dir)
 * when anything is decrypted, and the brokered credentials' placeholders.
 */
export interface BoxEgress {
  caBundle: string | undefined;
  placeholders: Record<string, string>;
}

/** The bundle's name in the session's proxy dir (the box sees that dir at BOX_RUN). */
export const CA_BUNDLE_NAME = 'ca-bundle.crt';
