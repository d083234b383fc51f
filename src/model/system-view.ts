/**
 * What every box shows besides the grants, per runtime, as `explain` and `describe`
 * state it and the box plans build it. Pure data.
 *
 * - process runtime: the host's /usr, /etc and top-level system folders read-only, with
 *   secrets in /etc covered (files by /dev/null, folders by empty read-only tmpfs);
 * - micro-VM: the host's /usr read-only; /etc and the rest are the guest's own;
 * - container: the image's system folders (not this host's), read-only root;
 * - all: a private /tmp, /var/tmp and /dev/shm, empty at start, noexec, gone at the end.
 */
import { isWithin } from './paths.js';
import type { RuntimeKind } from './types.js';

/** Top-level system folders (or merged-/usr links) the process runtime binds read-only. */
export const SYSTEM_TOP = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/** Secrets in /etc the process runtime covers. */
export const ETC_FILE_MASKS = ['/etc/shadow', '/etc/shadow-', '/etc/gshadow', '/etc/gshadow-', '/etc/sudoers', '/etc/security/opasswd'];
export const ETC_DIR_MASKS = ['/etc/sudoers.d', '/etc/ssh', '/etc/ssl/private', '/etc/docker', '/etc/agentbox/secrets'];
/** The session's own writable places. */
export const PRIVATE_WRITABLE = ['/tmp', '/var/tmp', '/dev/shm'];

export type SystemAnswer = { kind: 'masked' | 'system' | 'private'; reason: string } | undefined;

/** How the box itself answers a read or write of `path`, before any grant; undefined when only grants decide. */
export function systemView(runtime: RuntimeKind, path: string, access: 'read' | 'write'): SystemAnswer {
  if (PRIVATE_WRITABLE.some((p) => isWithin(path, p))) {
    return { kind: 'private', reason: `${path.split('/').slice(0, 2).join('/') === '/dev' ? '/dev/shm' : path.startsWith('/var/tmp') ? '/var/tmp' : '/tmp'} is the session's own (empty at start, noexec, discarded at the end), not the host's` };
  }
  // The process box mounts no /sys: the kernel's and the devices' details stay the host's.
  if (runtime === 'process' && isWithin(path, '/sys')) return { kind: 'masked', reason: 'the box has no /sys: the kernel\'s and the devices\' details stay the host\'s' };
  const secret = ETC_FILE_MASKS.includes(path) || ETC_DIR_MASKS.some((d) => isWithin(path, d));
  if (secret && runtime === 'process') return { kind: 'masked', reason: `the box covers ${path} (secrets in /etc are hidden even though /etc is visible)` };
  if (secret && runtime === 'container') return { kind: 'masked', reason: `${path} is the image's, and only root may read it; the agent never runs as root` };
  const roots = runtime === 'process' ? ['/usr', '/etc', ...SYSTEM_TOP] : runtime === 'microvm' ? ['/usr'] : ['/usr', '/etc', ...SYSTEM_TOP];
  if (!roots.some((r) => isWithin(path, r))) return undefined;
  const whose = runtime === 'container' ? "the image's (not this host's)" : "this host's";
  return access === 'read'
    ? { kind: 'system', reason: `system folders are visible read-only in the box: ${path} is ${whose}` }
    : { kind: 'system', reason: `system folders are read-only in the box: ${path} is ${whose}, and cannot be changed` };
}
