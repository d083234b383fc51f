/**
 * TLS termination for an admitted CONNECT to a host the manifest inspects.
 *
 * 1. Before the agent hears anything, the proxy opens its own TLS to the admitted
 *    address, verified against the host's trust store (and egress.trust): an upstream
 *    whose certificate fails is refused with 502 and its reason code in the status line
 *    (`upstream-certificate`), audited; the agent is never offered that server.
 * 2. The CONNECT is answered 200 and the agent's TLS is terminated with a leaf of the
 *    session CA for the CONNECT host. The SNI name must be that host (absent SNI gets
 *    the same leaf); any other name is refused in the handshake and audited
 *    (`sni-mismatch`): one admitted tunnel cannot be used to reach another name.
 * 3. ALPN offers h2 and http/1.1; each request (either protocol) goes to
 *    decrypted.ts, and to the upstream as HTTP/1.1 over the pinned, verified
 *    connection (the first one is the connection made in step 1).
 */
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Leaf } from './ca.js';
import type { Duplex } from 'node:stream';
import type { Admitted } from './admission.js';
import type { ProxyContext } from './context.js';
import { handleDecrypted, type Inspected } from './decrypted.js';
import { relayUpgrade } from './upgrade.js';
import { refusal } from './reasons.js';
import { connected, upstreamRefusal, type UpstreamTls } from './upstream.js';
import { plainHttpTunnel } from './forward.js';

/** OpenSSL's answer when the server's first bytes are not a TLS record (plain HTTP, a banner). */
const NOT_TLS = /WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|RECORD_LAYER|HTTP_REQUEST/;

/**
 * The upstream connections of one agent connection: the verified first one, then more
 * on demand (an h2 agent's parallel streams), all to the admitted address.
 */
class PinnedAgent extends HttpsAgent {
  constructor(private first: TLSSocket | undefined, opts: AgentOptions) {
    super(opts);
  }
  override createConnection(options: object, cb: (e: Error | null, s: Duplex) => void): Duplex | undefined {
    const s = this.first;
    if (s && !s.destroyed) {
      this.first = undefined;
      return s;
    }
    // @ts-expect-error: https.Agent.prototype.createConnection exists (it is tls.connect).
    return super.createConnection(options, cb);
  }
}

function dial(ctx: ProxyContext, host: string, address: string, port: number): Promise<TLSSocket> {
  const servername = isIP(host) ? undefined : host;
  return connected(ctx, tlsConnect({ host: address, port, ...(servername ? { servername } : {}), secureContext: ctx.tls!.upstream, ALPNProtocols: ['http/1.1'], timeout: ctx.connectTimeoutMs }), 'secureConnect');
}

export async function terminateTls(ctx: ProxyContext, client: Socket, head: Buffer, verdict: Admitted, port: number, why: string): Promise<void> {
  const host = verdict.host;
  let first: TLSSocket;
  try {
    first = await dial(ctx, host, verdict.address, port);
  } catch (e) {
    // An upstream that answers a TLS hello with plaintext speaks plain HTTP inside the
    // tunnel (an http:// URL through CONNECT): its requests go through the plain-HTTP
    // path, scanned and decided the same way. Never with a brokered key (it would travel
    // in clear text), never for a host whose rules need TLS to be enforced.
    if (NOT_TLS.test((e as NodeJS.ErrnoException).code ?? '') && why !== 'credential') return plainHttpTunnel(ctx, client, head, verdict, port, why);
    const r = upstreamRefusal(host, port, e as NodeJS.ErrnoException);
    ctx.event({ action: 'egress.connect', host, port, decision: 'deny', code: r.code, reason: r.reason, rule: r.rule, address: verdict.address, details: { ...verdict.details, ...r.details, inspected: why } });
    const body = `agentbox: ${r.reason}\n`;
    if (!client.destroyed) client.end(`HTTP/1.1 502 ${r.code === 'upstream-certificate' ? 'Upstream certificate refused by agentbox (upstream-certificate)' : 'Upstream unreachable (agentbox)'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    return;
  }
  first.on('error', () => undefined);
  if (client.destroyed) {
    first.destroy();
    return;
  }
  let leaf: Leaf;
  try {
    leaf = await ctx.tls!.ca.leafFor(host);
  } catch {
    first.destroy();
    client.destroy();
    return;
  }
  ctx.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address, details: { ...verdict.details, inspected: why } });
  const servername = isIP(host) ? undefined : host;
  const agent = new PinnedAgent(first, { keepAlive: true, maxSockets: 16, secureContext: ctx.tls!.upstream, ...(servername ? { servername } : {}), ALPNProtocols: ['http/1.1'] } as AgentOptions);
  const upstream: UpstreamTls = { connect: () => dial(ctx, host, verdict.address, port), agent, servername };
  const conn: Inspected = { host, port, address: verdict.address, rule: verdict.rule, meterKey: verdict.meterKey, inspected: why, upstream };
  const t = ctx.trackOpen({ kind: 'tunnel', host, port, address: verdict.address });
  let sniRefused = false;

  const server = createSecureServer(
    {
      allowHTTP1: true,
      ALPNProtocols: ['h2', 'http/1.1'],
      // HTTP/2's default 64 KiB stream window holds an upload to a window per round trip.
      // At most 32 streams per connection (each window is data Node accepts outside the body budget).
      settings: { initialWindowSize: 4 * 1024 * 1024, maxConcurrentStreams: 32 },
      minVersion: 'TLSv1.2',
      SNICallback: (name, cb) => {
        if (ctx.canonical(name) === host) return cb(null, leaf.context);
        sniRefused = true;
        const r = refusal('sni-mismatch', `the TLS server name ${JSON.stringify(name.slice(0, 253))} is not the host the tunnel was opened to (${host}); one tunnel cannot reach another name`);
        ctx.event({ action: 'egress.connect', host, port, decision: 'deny', code: r.code, reason: r.reason, rule: undefined, address: verdict.address, details: { sni: name.slice(0, 253) } });
        cb(new Error(r.reason));
      },
      // A client that sends no SNI (an address, an old client) is answered for the CONNECT host.
      key: leaf.key,
      cert: leaf.cert,
    },
    (req: Http2ServerRequest | IncomingMessage, res: Http2ServerResponse | import('node:http').ServerResponse) => void handleDecrypted(ctx, conn, t, req, res).catch(() => res.destroy()),
  );
  server.on('upgrade', (req: IncomingMessage, socket: Socket, upgradeHead: Buffer) => void relayUpgrade(ctx, { ...conn, tls: true, connect: conn.upstream.connect }, t, req, socket, upgradeHead).catch(() => socket.destroy()));
  server.on('tlsClientError', () => client.destroy());
  server.on('sessionError', () => undefined);
  server.on('secureConnection', (s: TLSSocket) => {
    s.on('error', () => undefined);
    ctx.sockets.add(s);
    s.once('close', () => ctx.sockets.delete(s));
  });
  const cleanup = () => {
    agent.destroy();
    first.destroy();
    ctx.trackClose(t);
    if (!sniRefused) ctx.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'closed', rule: verdict.rule, address: verdict.address, bytesIn: t.bytesIn, bytesOut: t.bytesOut });
  };
  client.once('close', cleanup);
  client.setNoDelay(true);
  client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) client.unshift(head);
  server.emit('connection', client);
}

