/**
 * "The internet" for HTTPS tests, on loopback only: a test CA (standing in for a public
 * root: the proxy trusts it through a private bundle, the box never does), server
 * certificates it issues (valid, expired), and a self-signed one it did not issue.
 * One HTTPS server (HTTP/1.1 and HTTP/2 by ALPN) records every request and answers:
 * - `/git/...`: `git http-backend` over CGI (a real git server);
 * - `/echo...`: method, path, headers and body as JSON;
 * - WebSocket upgrades: answered 101 and echoed raw.
 */
// First: the session CA's module sets up @peculiar/x509 (reflect-metadata, the provider); its algorithm is reused.
import { X509_ALG as ALG } from '../../src/egress/ca.js';
import * as x509 from '@peculiar/x509';
import { spawn } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

const DAY = 86400_000;

export interface Issued {
  cert: string;
  key: string;
}

async function keyPem(k: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');
}

/** A self-signed certificate for `name` with `extensions`, and its keys. */
async function selfSignedWith(name: string, serialNumber: string, extensions: x509.Extension[]): Promise<{ keys: CryptoKeyPair; cert: x509.X509Certificate }> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber, name: `CN=${name}`, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 30 * DAY), keys, signingAlgorithm: ALG, extensions });
  return { keys, cert };
}

export class TestCa {
  private constructor(private readonly keys: CryptoKeyPair, readonly cert: x509.X509Certificate) {}
  static async create(name = 'agentbox test internet root'): Promise<TestCa> {
    const { keys, cert } = await selfSignedWith(name, '01', [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)]);
    return new TestCa(keys, cert);
  }
  get pem(): string {
    return this.cert.toString('pem');
  }
  async issue(names: string[], opts: { expired?: boolean } = {}): Promise<Issued> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1'),
      subject: `CN=${names[0]}`,
      issuer: this.cert.subject,
      notBefore: new Date(opts.expired ? now - 10 * DAY : now - DAY),
      notAfter: new Date(opts.expired ? now - 2 * DAY : now + 10 * DAY),
      publicKey: keys.publicKey,
      signingKey: this.keys.privateKey,
      signingAlgorithm: ALG,
      extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]), new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: /^[0-9.]+$/.test(value) ? ('ip' as const) : ('dns' as const), value })))],
    });
    return { cert: cert.toString('pem'), key: await keyPem(keys.privateKey) };
  }
  /** A certificate for `name` signed by nobody the proxy trusts. */
  static async selfSigned(name: string): Promise<Issued> {
    const { keys, cert } = await selfSignedWith(name, '02', [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]), new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }])]);
    return { cert: cert.toString('pem'), key: await keyPem(keys.privateKey) };
  }

}

export interface Seen {
  method: string;
  url: string;
  version: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface TestSite {
  port: number;
  seen: Seen[];
  close(): Promise<void>;
}

/** Runs one `git http-backend` CGI request for a repository root. */
function gitBackend(root: string, req: IncomingMessage | Http2ServerRequest, body: Buffer, res: ServerResponse | Http2ServerResponse): void {
  const u = new URL(req.url ?? '/', 'https://x');
  const child = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: u.pathname.replace(/^\/git/, ''),
      QUERY_STRING: u.search.slice(1),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: String(req.headers['content-type'] ?? ''),
      CONTENT_LENGTH: String(body.length),
      REMOTE_USER: 'agent',
      REMOTE_ADDR: '127.0.0.1',
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.receivepack',
      GIT_CONFIG_VALUE_0: 'true',
    },
  });
  const out: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.on('close', () => {
    const all = Buffer.concat(out);
    const split = all.indexOf('\r\n\r\n') >= 0 ? all.indexOf('\r\n\r\n') : all.indexOf('\n\n');
    const sep = all.indexOf('\r\n\r\n') >= 0 ? 4 : 2;
    const head = all.subarray(0, split).toString();
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.split(/\r?\n/)) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const k = line.slice(0, i).trim().toLowerCase();
      const v = line.slice(i + 1).trim();
      if (k === 'status') status = Number(v.split(' ')[0]);
      else headers[k] = v;
    }
    res.writeHead(status, headers);
    res.end(all.subarray(split + sep));
  });
  child.stdin.end(body);
}

/** An HTTPS server with `cert`, on 127.0.0.1; `gitRoot` serves repositories under /git. */
export async function startSite(cert: Issued, gitRoot?: string): Promise<TestSite> {
  const seen: Seen[] = [];
  const server = createSecureServer({ allowHTTP1: true, key: cert.key, cert: cert.cert }, (req: Http2ServerRequest | IncomingMessage, res: Http2ServerResponse | ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method ?? '', url: req.url ?? '', version: req.httpVersion, headers: { ...req.headers }, body: body.toString('latin1') });
      if (gitRoot && (req.url ?? '').startsWith('/git/')) return gitBackend(gitRoot, req, body, res);
      const text = JSON.stringify({ method: req.method, url: req.url, version: req.httpVersion, headers: req.headers, body: body.toString() });
      // /reflect: a redirect that keeps what the request carried (a server reflecting a credential).
      if ((req.url ?? '').includes('/reflect')) res.setHeader('location', `/next?key=${String(req.headers['x-api-key'] ?? '')}`);
      res.writeHead(200, { 'content-type': 'application/json', 'alt-svc': 'h3=":443"' });
      res.end(text);
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', version: req.httpVersion, headers: { ...req.headers }, body: '' });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (d) => socket.write(d));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
