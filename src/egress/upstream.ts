/**
 * The proxy's own TLS towards an upstream: the failure classes (a certificate that does
 * not verify is refused and says so; a server that cannot be reached is a 502), and the
 * handle a decrypted tunnel keeps to its pinned, verified upstream.
 */
import type { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { refusal, type Refusal } from './reasons.js';

/** TLS errors that mean the upstream's certificate was not acceptable. */
// Node reports OpenSSL's X509_V_ERR_* names without the prefix, and ERR_TLS_CERT_ALTNAME_INVALID for a name mismatch.
const CERT_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_|ALTNAME|HOSTNAME|KEY_TOO_SMALL|INVALID_(CA|PURPOSE)|PATH_LENGTH|CRL|UNTRUSTED|REJECTED|REVOKED|SIGNATURE|ERROR_IN_|CHAIN/;

export function upstreamRefusal(host: string, port: number, e: NodeJS.ErrnoException): Refusal {
  const code = e.code ?? 'error';
  if (CERT_ERRORS.test(code)) return refusal('upstream-certificate', `the certificate of ${host}:${port} failed verification (${code}); agentbox does not connect to it, and the agent cannot be made to accept it`, 'upstream TLS verification', { tlsError: code });
  return refusal('upstream-failed', `${host}:${port} could not be reached over TLS (${code})`, undefined, { tlsError: code });
}

export interface UpstreamTls {
  /** Connects to address:port verifying `host`'s certificate. */
  connect(): Promise<TLSSocket>;
  agent: HttpsAgent;
  servername: string | undefined;
}


/** The error an upstream connection or request is destroyed with once egress is cut. */
export const egressCutError = () => Object.assign(new Error('egress is cut for this session'), { code: 'EGRESS_CUT' });

/**
 * Ends an upstream connection or request the proxy has just created when egress was cut
 * meanwhile (a quarantine made while this request waited on DNS, consent or a stopped
 * process): destroyed before its first byte, its connect(2) never made. True when it was.
 */
export function cutBeforeDial(ctx: { cut(): boolean }, upstream: { destroy(e?: Error): unknown }): boolean {
  if (!ctx.cut()) return false;
  upstream.destroy(egressCutError());
  return true;
}

/**
 * A connection the proxy opened upstream, tracked in `sockets` until it closes: resolves
 * once `ready` fires (connect, or secureConnect for TLS), rejects on error or timeout
 * (and at once when egress was cut: the connection is never made).
 */
export function connected<T extends Socket>(ctx: { sockets: Set<Socket>; cut(): boolean }, s: T, ready: 'connect' | 'secureConnect'): Promise<T> {
  const { sockets } = ctx;
  if (cutBeforeDial(ctx, s)) return Promise.reject(egressCutError());
  return new Promise((resolve, reject) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.once(ready, () => {
      s.setTimeout(0);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('timeout', () => {
      s.destroy();
      reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }));
    });
    s.once('error', reject);
  });
}
