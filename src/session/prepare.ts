/**
 * What every runtime does before it builds a box: the session's directories, the grants
 * opened by fd, the unix sockets inside them found and covered, a warning for a grant
 * another process of the agent's account could swap, and the writable layers on their
 * size-bounded file system. Everything made here is undone if a later step fails.
 */
import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { posix } from 'node:path';
import { AgentboxError } from '../errors.js';
import { isWithin } from '../model/paths.js';
import type { Model } from '../model/types.js';
import { effectiveFs } from '../model/grants.js';
import type { GrantFact, SessionPaths } from '../box/common.js';
import { closeGrants, findSockets, openGrants, swappableAncestor, type OpenedGrant } from './grants.js';
import { createLayers, diskLimit, dropLayers, removeSessionDir, type SessionLayers } from './layers.js';
import { termSafe } from '../escape/terminal.js';

/** At most this many entries are walked inside the grants looking for unix sockets. */
export const SOCKET_SCAN_LIMIT = 200_000;

/** Where a session's directories go: the record's under STATE, the box's mount sources under /run/agentbox as root. */
export function sessionPaths(state: string, id: string, root: boolean): SessionPaths {
  return { dir: posix.join(state, 'sessions', id), run: root ? posix.join('/run/agentbox', id) : posix.join(state, 'run', id) };
}

export interface Prepared {
  paths: SessionPaths;
  opened: OpenedGrant[];
  /** The opened grants as the plans see them (grant i is opened[i]). */
  grants: GrantFact[];
  socketMasks: string[];
  layers: SessionLayers | null;
  /** Closes the grant fds (once the engine has bound them) and, on failure, undoes the rest. */
  release(): void;
  undo(): void;
}

export interface PrepareOptions {
  state: string;
  id: string;
  root: boolean;
  uid: number;
  gid: number;
  dryRun: boolean;
  log: (line: string) => void;
  /** The runtime binds unix sockets through (process, container); 9p does not carry them (micro-VM). */
  socketsReachable: boolean;
}

const statOf = (p: string) => {
  try {
    const s = lstatSync(p);
    return { uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
  } catch {
    return undefined;
  }
};

export function prepareSession(model: Model, o: PrepareOptions): Prepared {
  const paths = sessionPaths(o.state, o.id, o.root);
  const fs = effectiveFs(model).fs;
  const opened = openGrants(fs);
  let layers: SessionLayers | null = null;
  const undo = () => {
    closeGrants(opened);
    if (layers) dropLayers(layers);
    if (!o.dryRun) {
      removeSessionDir(paths.run);
      removeSessionDir(paths.dir);
    }
  };
  try {
    // Another process of the agent's uid could swap a grant in a directory it can write.
    if (o.uid !== 0) {
      for (const g of opened) {
        const at = swappableAncestor(g.grant.path, o.uid, o.gid, statOf);
        if (at) o.log(`agentbox: warning: ${termSafe(g.grant.source.text)}: uid ${o.uid} can rename entries in ${termSafe(at)}, so another process of that account could swap the grant; agentbox binds what it opened, but keep grants in folders only trusted accounts can write`);
      }
    }
    const grants: GrantFact[] = [];
    let layerIndex = 0;
    const writes: { opened: OpenedGrant; index: number }[] = [];
    for (const g of opened) {
      const fact: GrantFact = { path: g.grant.path, access: g.grant.access, kind: g.kind };
      if (g.grant.access === 'write' && g.kind !== 'socket') {
        fact.layer = layerIndex;
        writes.push({ opened: g, index: layerIndex++ });
      }
      grants.push(fact);
    }
    // Unix sockets inside grants reach host services around the egress proxy: covered,
    // unless a grant names the socket itself. Denied subtrees are masked anyway.
    let socketMasks: string[] = [];
    if (o.socketsReachable) {
      const denied = (p: string) => model.denies.fs.some((d) => d.access === 'all' && isWithin(p, d.path));
      const scan = findSockets(opened, denied, SOCKET_SCAN_LIMIT, o.uid);
      if (!scan.complete) {
        throw new AgentboxError('CONTROL_UNAVAILABLE', `the grants hold more than ${SOCKET_SCAN_LIMIT} entries, too many to check for unix sockets (a host socket in a grant would bypass the egress proxy); nothing was started`, { details: ['grant narrower folders'] });
      }
      socketMasks = scan.sockets.filter((s) => !opened.some((g) => g.grant.path === s));
    }
    if (!o.dryRun) {
      for (const d of [paths.dir, paths.run]) {
        mkdirSync(d, { recursive: true, mode: 0o711 });
        chmodSync(d, 0o711);
      }
      // The box (as the agent's uid) reaches its mount sources through the run dir.
      chmodSync(posix.dirname(paths.run), 0o711);
      if (writes.length > 0) layers = createLayers(paths, writes, diskLimit(o.state, model.limits.diskBytes));
    }
    return {
      paths,
      opened,
      grants,
      socketMasks,
      layers,
      release: () => closeGrants(opened),
      undo,
    };
  } catch (e) {
    undo();
    throw e;
  }
}
