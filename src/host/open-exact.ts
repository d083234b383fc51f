/**
 * Opening a path the way root must open anything an agent could shape: component by
 * component from `/`, each step relative to the previous fd (through /proc/self/fd) with
 * O_PATH|O_NOFOLLOW, so a symlink anywhere on the path fails instead of redirecting.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname } from 'node:path';
import { AgentboxError } from '../errors.js';

/** O_PATH: an fd naming a file without opening it for reading (not in node's constants). */
export const O_PATH = 0o10000000;


/** The path of an open fd as the kernel resolves it (a magic link, followed exactly). */
export const fdPath = (fd: number) => `/proc/self/fd/${fd}`;

/**
 * Opens an absolute path without following any symlink on it; undefined when it does
 * not exist. Throws CONTROL_UNAVAILABLE when a component is a symlink or not a directory
 * (the model resolved every link at load, so the path changed since).
 */
export function openExact(path: string): { fd: number; stat: Stats } | undefined {
  let fd = openSync('/', O_PATH | constants.O_DIRECTORY);
  const parts = path.split('/').filter(Boolean);
  try {
    for (let i = 0; i < parts.length; i++) {
      let next: number;
      try {
        next = openSync(`${fdPath(fd)}/${parts[i]}`, O_PATH | constants.O_NOFOLLOW);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
      closeSync(fd);
      fd = next;
      const st = fstatSync(fd);
      const here = `/${parts.slice(0, i + 1).join('/')}`;
      if (st.isSymbolicLink()) throw new AgentboxError('CONTROL_UNAVAILABLE', `${here} became a symbolic link after the manifest was loaded (a grant's path changed while agentbox launched); nothing was started`);
      if (i < parts.length - 1 && !st.isDirectory()) throw new AgentboxError('CONTROL_UNAVAILABLE', `${here} is no longer a directory (a grant's path changed while agentbox launched); nothing was started`);
    }
    const stat = fstatSync(fd);
    const out = { fd, stat };
    fd = -1;
    return out;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}


/**
 * Reads a regular file as root without following a symlink anywhere on its path
 * (openExact, then the fd reopened for reading): its bytes and the stat of what was read.
 * Undefined when it does not exist; throws when it is not a regular file.
 */
export function readFileNoFollow(path: string): { content: Buffer; stat: Stats } | undefined {
  const o = openExact(path);
  if (!o) return undefined;
  try {
    if (!o.stat.isFile()) throw new AgentboxError('CHECK_FAILED', `${path} is not a regular file`);
    // The magic link is followed exactly: it names the file openExact found, nothing else.
    const fd = openSync(fdPath(o.fd), constants.O_RDONLY);
    try {
      return { content: readFileSync(fd), stat: fstatSync(fd) };
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(o.fd);
  }
}

/**
 * Writes a file as root without following a symlink at its name or at a temporary name:
 * the content goes to a fresh `.NAME.RANDOM.tmp` created O_EXCL|O_NOFOLLOW with `mode`
 * beside it, then takes the name by rename (which replaces a link itself, never its
 * target), or by link (never over an existing file) when `replace` is false.
 */
export function writeFileNoFollow(path: string, content: string | Buffer, mode: number, replace: boolean): void {
  // The folder is opened component by component (openExact): a symlink anywhere above the
  // name fails; the temporary and the rename then go through that fd, never the path again.
  const parent = openExact(dirname(path));
  if (!parent || !parent.stat.isDirectory()) throw new AgentboxError('CONTROL_UNAVAILABLE', `${dirname(path)} is not a folder agentbox can write into; nothing was written`);
  const dir = fdPath(parent.fd);
  const name = basename(path);
  const tmp = `${dir}/.${name}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    try {
      writeSync(fd, typeof content === 'string' ? Buffer.from(content) : content);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
    try {
      if (replace) renameSync(tmp, `${dir}/${name}`);
      else linkSync(tmp, `${dir}/${name}`);
    } finally {
      if (!replace) rmSync(tmp, { force: true });
    }
  } finally {
    closeSync(parent.fd);
  }
}
