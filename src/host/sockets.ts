/**
 * The socket facts Node cannot reach, from dist/native/sockets.node (src/native/sockets.c):
 * the kernel's credentials of a unix socket's peer (SO_PEERCRED), and the egress
 * connections of another process cut from outside (pidfd_getfd + shutdown).
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
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

/** An address in /proc/net/tcp's hex form: IPv4 as one little-endian word, IPv6 as four. */
function procHex(address: string): string[] {
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/i.exec(address);
  const hex2 = (n: number) => n.toString(16).toUpperCase().padStart(2, '0');
  if (v4) {
    const b = v4.slice(1).map(Number);
    const word = [b[3]!, b[2]!, b[1]!, b[0]!].map(hex2).join('');
    // The same peer seen by a dual-stack socket: ::ffff:a.b.c.d in tcp6.
    return [word, `0000000000000000FFFF0000${word}`];
  }
  if (address === '::1') return ['00000000000000000000000001000000'];
  return [];
}

/** The rows of /proc/net/tcp and tcp6 (this network namespace), split into fields. */
function* tcpRows(procNet: string): Generator<string[]> {
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(join(procNet, file), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 8) yield f.map((x, i) => (i === 1 || i === 2 ? x.toUpperCase() : x));
    }
  }
}

/** `address:port` keys in /proc/net/tcp's form, for every way the kernel may list the address. */
const procKeys = (address: string, port: number): Set<string> => new Set(procHex(address).map((a) => `${a}:${port.toString(16).toUpperCase().padStart(4, '0')}`));

/**
 * The uid owning the TCP socket whose local end is `peer` and remote end is `local`: for
 * a connection accepted on loopback, the uid of the process that connected (the kernel
 * records it per socket in /proc/net/tcp and tcp6, column 8). Unix sockets have
 * SO_PEERCRED; TCP has only this, and only for a peer on this host in this network
 * namespace. Undefined when no such socket is listed.
 */
export function tcpOwnerUid(local: { address: string; port: number }, peer: { address: string; port: number }, procNet = '/proc/net'): number | undefined {
  const peerKeys = procKeys(peer.address, peer.port);
  const localKeys = procKeys(local.address, local.port);
  for (const f of tcpRows(procNet)) if (peerKeys.has(f[1]!) && localKeys.has(f[2]!)) return Number(f[7]);
  return undefined;
}

/**
 * True when a TCP socket listens on address:port in this network namespace
 * (/proc/net/tcp and tcp6, state 0A). Read rather than connected to, so asking never
 * shows up as a connection at the listener.
 */
export function tcpListening(address: string, port: number, procNet = '/proc/net'): boolean {
  const keys = procKeys(address, port);
  for (const f of tcpRows(procNet)) if (f[3] === '0A' && keys.has(f[1]!)) return true;
  return false;
}
