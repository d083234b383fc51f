/**
 * Reading the secrets agentbox brokers, at launch, in the launcher (never in the box):
 *
 * - a file (`/etc/agentbox/secrets/NAME` or a path the manifest names): opened
 *   component by component without following a symlink; the file must be a regular
 *   file owned by root (or by the user running agentbox) with no group or other
 *   permission (0600 or 0400), and every directory above it not writable by group or
 *   others; anything looser is refused, since another user could read or swap it;
 * - a credential helper (`[pass, show, anthropic]`, a Vault or 1Password CLI): run
 *   without a shell, with the launcher's environment, no stdin, a 15 s deadline; the
 *   first line of its output is the secret;
 * - the launching shell's environment, by the variable the manifest names.
 *
 * Failures are CONTROL_UNAVAILABLE (exit 4) naming the credential and what is wrong;
 * the message never contains the value.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { execa } from 'execa';
import { AgentboxError } from '../errors.js';
import type { CredentialSpec } from '../model/types.js';
import { fdPath, O_PATH } from './open-exact.js';

const MAX_SECRET = 64 * 1024;

function fail(spec: CredentialSpec, what: string): never {
  throw new AgentboxError('CONTROL_UNAVAILABLE', `credential ${spec.name} (${spec.source.pointer}) for ${spec.host}: ${what}; nothing was started`);
}

/** The secret's text: trailing newline removed; empty or multi-line values refused (header injection). */
function clean(spec: CredentialSpec, raw: string, firstLine: boolean): string {
  let v = firstLine ? (raw.split(/\r?\n/)[0] ?? '') : raw.replace(/\r?\n$/, '');
  v = v.trim();
  if (v === '') fail(spec, 'the secret is empty');
  if (/[\0-\x1f\x7f]/.test(v)) fail(spec, 'the secret contains a control character or a line break (a header value cannot carry it)');
  return v;
}

export function readSecretFile(spec: CredentialSpec, path: string): string {
  const me = process.geteuid?.() ?? 0;
  const parts = path.split('/').filter(Boolean);
  let fd = openSync('/', O_PATH | constants.O_DIRECTORY);
  // Whether the directory above may be changed by someone else, which then needs the
  // entry below it to be owned by root or by us (a sticky /tmp holding our own folder).
  let parentShared = false;
  try {
    for (let i = 0; i < parts.length; i++) {
      const here = `/${parts.slice(0, i + 1).join('/')}`;
      let next: number;
      try {
        next = openSync(`${fdPath(fd)}/${parts[i]}`, O_PATH | constants.O_NOFOLLOW);
      } catch (e) {
        fail(spec, (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${here} does not exist (create it as root, mode 0600)` : `${here} cannot be opened (${(e as NodeJS.ErrnoException).code})`);
      }
      closeSync(fd);
      fd = next;
      const st = fstatSync(fd);
      if (st.isSymbolicLink()) fail(spec, `${here} is a symbolic link; a secret's path must be the real one`);
      const last = i === parts.length - 1;
      const ours = st.uid === 0 || st.uid === me;
      if (parentShared && !ours) fail(spec, `${here} is owned by uid ${st.uid} inside a folder others can write; the secret could be swapped`);
      if (!last) {
        if (!st.isDirectory()) fail(spec, `${here} is not a directory`);
        if (!ours) fail(spec, `${here} is owned by uid ${st.uid}, who could swap the secret; every folder above it must be owned by root`);
        const shared = (st.mode & 0o022) !== 0;
        if (shared && !(st.mode & 0o1000)) fail(spec, `${here} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}), so the secret could be swapped`);
        parentShared = shared;
        continue;
      }
      if (!st.isFile()) fail(spec, `${here} is not a regular file`);
      if (st.uid !== 0 && st.uid !== me) fail(spec, `${here} is owned by uid ${st.uid}; it must be owned by root`);
      if ((st.mode & 0o077) !== 0) fail(spec, `${here} has mode ${(st.mode & 0o777).toString(8)}; a secret file must be 0600 or 0400 (chmod 600 ${here})`);
      if (st.size > MAX_SECRET) fail(spec, `${here} is over ${MAX_SECRET} bytes; it does not look like one secret`);
    }
    return clean(spec, readFileSync(fdPath(fd), 'utf8'), false);
  } finally {
    closeSync(fd);
  }
}

export async function readSecret(spec: CredentialSpec): Promise<string> {
  const s = spec.secret;
  if (s.kind === 'file') return readSecretFile(spec, s.path);
  if (s.kind === 'env') {
    const v = process.env[s.name];
    if (v === undefined || v === '') fail(spec, `the variable ${s.name} is not set in the launching environment`);
    return clean(spec, v, false);
  }
  const [cmd, ...args] = s.argv;
  const r = await execa(cmd!, args, { reject: false, stdin: 'ignore', timeout: 15_000, maxBuffer: MAX_SECRET, stripFinalNewline: false });
  if (r.failed || r.exitCode !== 0) {
    const why = r.timedOut ? 'did not finish within 15 s' : r.exitCode === undefined ? `could not be run (${(r as { code?: string }).code ?? 'not found'})` : `exited with ${r.exitCode}`;
    // Only the program is named: a helper's arguments can carry a token of their own.
    fail(spec, `the credential helper ${JSON.stringify(cmd)} (egress.credentials secret.helper) ${why}`);
  }
  return clean(spec, String(r.stdout), true);
}
