/**
 * The socket facts Node cannot reach, from dist/native/sockets.node (src/native/sockets.c):
 * the kernel's credentials of a unix socket's peer (SO_PEERCRED), and the egress
 * connections of another process cut from outside (pidfd_getfd + shutdown).
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { AgentboxError } from '../errors.js';
import { packageRoot } from './files.js';

interface Addon {
  peerCred(fd: number): PeerCred;
  sever(pid: number, path: string): Severed[];
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export interface Severed {
  fd: number;
  family: 'unix' | 'tcp' | 'tcp6';
  peer: string;
}

let addon: Addon | undefined;
function load(): Addon {
  if (addon) return addon;
  const file = join(packageRoot(), 'dist', 'native', 'sockets.node');
  try {
    addon = createRequire(import.meta.url)(file) as Addon;
  } catch (e) {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `${file} could not be loaded (${(e as Error).message.split('\n')[0]}); npm run build makes it (needs Node's headers: the nodejs package)`);
  }
  return addon;
}

/** The peer of a connected unix socket, as the kernel recorded it at connect(2). */
export function peerCred(socket: Socket): PeerCred {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new AgentboxError('INTERNAL', 'the control connection has no file descriptor');
  return load().peerCred(fd);
}

/**
 * Cuts every connected TCP socket of `pid` and every connection it accepted on the unix
 * socket bound at `proxySocket`, whether or not the process runs (a SIGSTOPped one included).
 */
export function severEgress(pid: number, proxySocket: string): Severed[] {
  return load().sever(pid, proxySocket);
}
