/**
 * Brokered secrets and the session CA, with real files, processes and certificates.
 *
 * Attacks and defences:
 * - a secret file another user can read, or a directory above it another user can
 *   write or owns (swap the file), or a symlink to somewhere else: refused (exit 4), the message
 *   names the path and the fix and never contains the value;
 * - a secret with a line break (header injection into the upstream request): refused;
 * - a credential helper that fails or hangs: refused with its exit, not its output;
 * - the session CA's key leaving the launcher: it is generated non-extractable; leaves
 *   name exactly one host, are for serverAuth only, and chain to the session CA only;
 *   nothing is issued after destroy().
 */
import { X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSecret } from '../../src/host/secrets.js';
import { SessionCa } from '../../src/egress/ca.js';
import type { CredentialSpec, SecretSource } from '../../src/model/types.js';

const dir = mkdtempSync(join(tmpdir(), 'agentbox-secrets-'));
chmodSync(dir, 0o755);
const VALUE = 'sk-value-never-printed-8c1e';
const spec = (secret: SecretSource): CredentialSpec => ({ name: 'k', host: 'api.example.com', inject: { kind: 'header', name: 'x-api-key' }, env: undefined, secret, source: { origin: 'manifest', file: 'm.yaml', pointer: 'egress.credentials[0]', text: 'k' } });

async function refused(s: SecretSource, why: RegExp): Promise<void> {
  const e = await readSecret(spec(s)).then(() => undefined, (x: Error & { code?: string }) => x);
  expect(e, JSON.stringify(s)).toBeDefined();
  expect(e!.message).toMatch(/^credential k \(egress\.credentials\[0\]\) for api\.example\.com: /);
  expect(e!.message).toMatch(why);
  expect(e!.message).not.toContain(VALUE);
  expect((e as { code?: string }).code).toBe('CONTROL_UNAVAILABLE');
}

describe('secret files', () => {
  it('reads a root-only 0600 file, trailing newline removed', async () => {
    const f = join(dir, 'good');
    writeFileSync(f, `${VALUE}\n`, { mode: 0o600 });
    expect(await readSecret(spec({ kind: 'file', path: f }))).toBe(VALUE);
  });

  it('refuses a looser mode, a writable directory above, a symlink, a missing file, a line break', async () => {
    const loose = join(dir, 'loose');
    writeFileSync(loose, VALUE, { mode: 0o600 });
    chmodSync(loose, 0o640);
    await refused({ kind: 'file', path: loose }, /mode 640; a secret file must be 0600 or 0400 \(chmod 600 /);
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    writeFileSync(join(open, 's'), VALUE, { mode: 0o600 });
    await refused({ kind: 'file', path: join(open, 's') }, /open is writable by group or others \(mode 777\), so the secret could be swapped/);
    const link = join(dir, 'link');
    symlinkSync(join(dir, 'good'), link);
    await refused({ kind: 'file', path: link }, /link is a symbolic link/);
    await refused({ kind: 'file', path: join(dir, 'missing') }, /missing does not exist \(create it as root, mode 0600\)/);
    // A folder another user owns (mode 0755 is not enough: its owner can rename entries).
    const theirs = join(dir, 'theirs');
    mkdirSync(theirs, { mode: 0o755 });
    writeFileSync(join(theirs, 's'), VALUE, { mode: 0o600 });
    chownSync(theirs, 1234, 1234);
    await refused({ kind: 'file', path: join(theirs, 's') }, /theirs is owned by uid 1234, who could swap the secret/);
    // Under a sticky, world-writable folder, an entry someone else owns is refused too.
    const sticky = join(dir, 'sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    mkdirSync(join(sticky, 'x'));
    writeFileSync(join(sticky, 'x', 's'), VALUE, { mode: 0o600 });
    chownSync(join(sticky, 'x'), 1234, 1234);
    await refused({ kind: 'file', path: join(sticky, 'x', 's') }, /x is owned by uid 1234 inside a folder others can write/);
    const two = join(dir, 'two');
    writeFileSync(two, `${VALUE}\nx-evil: 1\n`, { mode: 0o600 });
    await refused({ kind: 'file', path: two }, /line break/);
  });
});

describe('credential helpers and the environment', () => {
  it('a helper\'s first line is the secret; a failing or missing one is refused without its output', async () => {
    expect(await readSecret(spec({ kind: 'helper', argv: ['/bin/sh', '-c', `printf '%s\\nlogin: me\\n' ${VALUE}`] }))).toBe(VALUE);
    await refused({ kind: 'helper', argv: ['/bin/sh', '-c', `echo ${VALUE} >&2; exit 3`] }, /exited with 3/);
    await refused({ kind: 'helper', argv: ['/nonexistent/helper'] }, /could not be run/);
  });

  it('the launching environment, by the name the manifest gives', async () => {
    process.env.AGENTBOX_TEST_SECRET_X = VALUE;
    expect(await readSecret(spec({ kind: 'env', name: 'AGENTBOX_TEST_SECRET_X' }))).toBe(VALUE);
    delete process.env.AGENTBOX_TEST_SECRET_X;
    await refused({ kind: 'env', name: 'AGENTBOX_TEST_SECRET_X' }, /AGENTBOX_TEST_SECRET_X is not set/);
  });
});

describe('the session CA', () => {
  it('issues a leaf for one name, serverAuth only, chained to the session CA, and nothing after destroy', async () => {
    const ca = await SessionCa.create('s-1', 3600_000);
    const root = new X509Certificate(ca.certPem);
    expect(root.ca).toBe(true);
    const leaf = new X509Certificate((await ca.leafFor('api.example.com')).cert);
    expect(leaf.ca).toBe(false);
    expect(leaf.subjectAltName).toBe('DNS:api.example.com');
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.checkIssued(root)).toBe(true);
    expect(new Date(leaf.validTo).getTime()).toBeLessThanOrEqual(new Date(root.validTo).getTime());
    expect(new X509Certificate((await ca.leafFor('127.0.0.1')).cert).subjectAltName).toBe('IP Address:127.0.0.1');
    // Same host, same leaf (cached for the session).
    expect(new X509Certificate((await ca.leafFor('api.example.com')).cert).fingerprint256).toBe(leaf.fingerprint256);
    ca.destroy();
    await expect(ca.leafFor('other.example.com')).rejects.toThrow(/destroyed/);
  });

  it('the CA key cannot be exported: it never exists outside the launcher\'s memory', async () => {
    const ca = await SessionCa.create('s-2', 3600_000);
    const keys = (ca as unknown as { caKeys: CryptoKeyPair }).caKeys;
    expect(keys.privateKey.extractable).toBe(false);
    await expect(crypto.subtle.exportKey('pkcs8', keys.privateKey)).rejects.toThrow();
    ca.destroy();
  });
});
