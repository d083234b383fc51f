/**
 * The session's certificate authority, for the hosts the proxy decrypts.
 *
 * - One per session, made at launch with WebCrypto (node:crypto) and @peculiar/x509:
 *   an ECDSA P-256 key that is never extractable, so it never exists outside the
 *   launcher's memory (no file, no export), and a CA certificate limited to issuing
 *   server certificates (basicConstraints CA, pathLen 0; keyUsage keyCertSign).
 * - A leaf per host name the agent reaches, issued on first use and cached for the
 *   session: SAN = that one name (or address), serverAuth only, valid no longer than
 *   the CA. The leaves share one session key (also only in memory).
 * - `destroy()` drops every key and context at the session's end; nothing was written.
 */
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** The key and signature algorithm of every certificate agentbox makes (tests' CAs use it too). */
export const X509_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const ALG = X509_ALG;
const HOUR = 3600_000;

export interface Leaf {
  context: SecureContext;
  key: string;
  cert: string;
}

const serial = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1');

export class SessionCa {
  private readonly leaves = new Map<string, Promise<Leaf>>();
  private destroyed = false;

  private constructor(
    private caKeys: CryptoKeyPair | undefined,
    private leafKeys: CryptoKeyPair | undefined,
    private leafKeyPem: string | undefined,
    private readonly caCert: x509.X509Certificate,
    readonly notAfter: Date,
  ) {}

  /** A new CA for `session`, valid from an hour ago (clock skew) to `lifetimeMs` from now (at least a day). */
  static async create(session: string, lifetimeMs: number): Promise<SessionCa> {
    const caKeys = (await webcrypto.subtle.generateKey(ALG, false, ['sign', 'verify'])) as CryptoKeyPair;
    const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const notBefore = new Date(Date.now() - HOUR);
    const notAfter = new Date(Date.now() + Math.max(24 * HOUR, lifetimeMs + HOUR));
    // The session id is [a-z0-9-] (newSessionId): safe in a distinguished name.
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=agentbox session ${session.replace(/[^a-z0-9-]/g, '')}, O=agentbox`,
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey);
    const leafKeyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
    return new SessionCa(caKeys, leafKeys, leafKeyPem, cert, notAfter);
  }

  /** The CA certificate (PEM) the box trusts. */
  get certPem(): string {
    return this.caCert.toString('pem');
  }

  /** SHA-256 fingerprint of the CA certificate (for the audit log). */
  async fingerprint(): Promise<string> {
    return Buffer.from(await this.caCert.getThumbprint('SHA-256')).toString('hex');
  }

  /** The leaf for `host` (a canonical name or address): its TLS context, and key and certificate for a server's defaults. */
  leafFor(host: string): Promise<Leaf> {
    if (this.destroyed) return Promise.reject(new Error('the session CA was destroyed'));
    let c = this.leaves.get(host);
    if (!c) {
      c = this.issue(host);
      this.leaves.set(host, c);
      c.catch(() => this.leaves.delete(host));
    }
    return c;
  }

  private async issue(host: string): Promise<Leaf> {
    const ca = this.caKeys!;
    const leaf = this.leafKeys!;
    const san = isIP(host) ? { type: 'ip' as const, value: host } : { type: 'dns' as const, value: host };
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      // The SAN decides; the CN repeats a name only when it is plain DNS text (no DN syntax).
      subject: /^[a-z0-9._-]+$/.test(host) && !isIP(host) ? `CN=${host}, O=agentbox` : 'O=agentbox',
      issuer: this.caCert.subject,
      notBefore: new Date(Date.now() - HOUR),
      notAfter: this.notAfter,
      publicKey: leaf.publicKey,
      signingKey: ca.privateKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([san], false),
        await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey),
      ],
    });
    const pem = cert.toString('pem');
    return { context: createSecureContext({ key: this.leafKeyPem!, cert: pem, minVersion: 'TLSv1.2' }), key: this.leafKeyPem!, cert: pem };
  }

  /** Drops every key and context: nothing can be issued or presented after the session. */
  destroy(): void {
    this.destroyed = true;
    this.leaves.clear();
    this.caKeys = undefined;
    this.leafKeys = undefined;
    this.leafKeyPem = undefined;
  }
}
