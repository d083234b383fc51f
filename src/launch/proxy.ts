/**
 * The session's egress proxy: the box's only route out. HTTP CONNECT tunnels and
 * plain HTTP (absolute-form) requests, each decided against the manifest's net rules.
 *
 * - Every decision becomes an event (host, port, allowed/denied, reason, bytes).
 * - A denial answers 403 with a plain-language body: what was refused, by which rule,
 *   and that an administrator can widen the manifest.
 * - Names are resolved once, the addresses checked (no loopback/private/link-local
 *   unless that address is itself granted), and the checked address is the one dialled,
 *   so a second lookup cannot rebind it.
 * - Plain HTTP: the Host header must name the same host and port as the request URL,
 *   so an allowed host cannot be used to address another. A CONNECT tunnel is pinned
 *   to its target; bytes inside it are never parsed as further proxy requests.
 */
import { lookup } from 'node:dns/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, isIP, type Socket } from 'node:net';
import { decideEgressFor, pickAddress, type EgressRules } from './egress-policy.js';

export interface EgressEvent {
  action: 'egress.connect' | 'egress.http';
  host: string;
  port: number;
  decision: 'allow' | 'deny';
  reason: string;
  rule: string | undefined;
  address: string | undefined;
  bytesOut: number;
  bytesIn: number;
}

export type Resolve = (host: string) => Promise<string[]>;

export interface ProxyOptions {
  rules: EgressRules;
  agent: string;
  /** Called for every decision, and again with byte counts when an allowed exchange ends. */
  onEvent: (e: EgressEvent) => void;
  /** DNS resolution (default: the system resolver, all addresses). */
  resolve?: Resolve;
  /** Upstream connect timeout. */
  connectTimeoutMs?: number;
}

const systemResolve: Resolve = async (host) => (await lookup(host, { all: true, verbatim: true })).map((r) => r.address);

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

function denyBody(agent: string, host: string, port: number, reason: string): string {
  return [
    `agentbox refused the connection to ${host}:${port}.`,
    `Reason: ${reason}.`,
    `The agent "${agent}" may only reach the hosts its manifest grants (net:connect:HOST:PORT).`,
    'An administrator can widen the manifest if this connection is needed.',
    '',
  ].join('\n');
}

/** Splits `host:port` / `[v6]:port` as in a CONNECT target or Host header. */
export function splitAuthority(authority: string, defaultPort: number): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s]+)(?::([0-9]{1,5}))?$/.exec(authority.trim());
  if (!m) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, '').toLowerCase(), port };
}

export class EgressProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly opts: Required<Omit<ProxyOptions, 'resolve'>> & { resolve: Resolve };
  private closed = false;

  constructor(opts: ProxyOptions) {
    this.opts = { connectTimeoutMs: 10_000, resolve: systemResolve, ...opts };
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => void this.onConnect(req, socket, head));
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('clientError', (_e, s: Socket) => s.destroy());
  }

  /** Listens on a unix socket path, or on host:port (port 0 picks one). Returns the address. */
  async listen(where: { path: string } | { host: string; port: number }): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      if ('path' in where) this.server.listen(where.path, resolve);
      else this.server.listen(where.port, where.host, resolve);
    });
    const a = this.server.address();
    return typeof a === 'string' ? a : `${a!.address}:${a!.port}`;
  }

  /** Stops forwarding at once: refuses new connections and cuts every open tunnel. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private event(e: Omit<EgressEvent, 'bytesIn' | 'bytesOut'> & Partial<Pick<EgressEvent, 'bytesIn' | 'bytesOut'>>): void {
    this.opts.onEvent({ bytesIn: 0, bytesOut: 0, ...e });
  }

  /** Decision plus DNS check; returns the address to dial or the refusal. */
  private async admit(host: string, port: number): Promise<{ ok: true; address: string; rule: string } | { ok: false; reason: string; rule: string | undefined }> {
    if (this.closed) return { ok: false, reason: 'egress is cut for this session', rule: undefined };
    const d = decideEgressFor(this.opts.rules, host, port);
    if (!d.allow) return { ok: false, reason: d.reason, rule: d.rule ? `${d.rule.text} (${d.rule.pointer})` : undefined };
    const rule = `${d.rule.text} (${d.rule.pointer})`;
    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else {
      try {
        addresses = await this.opts.resolve(host);
      } catch (e) {
        return { ok: false, reason: `${host} does not resolve (${(e as NodeJS.ErrnoException).code ?? 'error'})`, rule };
      }
    }
    const pick = pickAddress(this.opts.rules, addresses, port);
    return pick.ok ? { ok: true, address: pick.address, rule } : { ok: false, reason: pick.reason, rule };
  }

  private async onConnect(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    const target = splitAuthority(req.url ?? '', 443);
    if (!target) {
      client.end('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nagentbox: CONNECT needs host:port\n');
      return;
    }
    const { host, port } = target;
    const verdict = await this.admit(host, port);
    if (!verdict.ok) {
      this.event({ action: 'egress.connect', host, port, decision: 'deny', reason: verdict.reason, rule: verdict.rule, address: undefined });
      const body = denyBody(this.opts.agent, host, port, verdict.reason);
      client.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    this.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address });
    const upstream = connect({ host: verdict.address, port, timeout: this.opts.connectTimeoutMs });
    this.sockets.add(upstream);
    let bytesOut = head.length;
    let bytesIn = 0;
    const finish = () => {
      upstream.destroy();
      client.destroy();
    };
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      client.on('data', (c: Buffer) => (bytesOut += c.length));
      upstream.on('data', (c: Buffer) => (bytesIn += c.length));
      client.pipe(upstream);
      upstream.pipe(client);
    });
    upstream.once('timeout', finish);
    upstream.once('error', () => {
      if (!client.destroyed && bytesIn === 0 && bytesOut === head.length) client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n');
      finish();
    });
    client.once('error', finish);
    upstream.once('close', () => {
      this.sockets.delete(upstream);
      client.destroy();
      this.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'closed', rule: verdict.rule, address: verdict.address, bytesIn, bytesOut });
    });
    client.once('close', () => upstream.destroy());
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refuse = (status: number, host: string, port: number, reason: string, rule: string | undefined) => {
      this.event({ action: 'egress.http', host, port, decision: 'deny', reason, rule, address: undefined });
      const body = status === 403 ? denyBody(this.opts.agent, host, port, reason) : `agentbox: ${reason}\n`;
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
      res.end(body);
    };
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      return refuse(400, '-', 0, 'a proxy request needs an absolute URL (http://host/path)', undefined);
    }
    if (url.protocol !== 'http:') return refuse(400, url.hostname, 0, `only http:// is proxied in plain form; use CONNECT for ${url.protocol}`, undefined);
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const port = url.port === '' ? 80 : Number(url.port);
    const hostHeader = req.headers.host === undefined ? undefined : splitAuthority(req.headers.host, 80);
    if (!hostHeader || hostHeader.host !== host || hostHeader.port !== port) {
      return refuse(403, host, port, `the Host header (${req.headers.host ?? 'missing'}) does not match the request target ${host}:${port}; relaying through an allowed host is refused`, undefined);
    }
    const verdict = await this.admit(host, port);
    if (!verdict.ok) return refuse(403, host, port, verdict.reason, verdict.rule);
    this.event({ action: 'egress.http', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address });

    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.includes(k)) headers[k] = v;
    let bytesOut = 0;
    let bytesIn = 0;
    const up = httpRequest({ host: verdict.address, port, method: req.method, path: `${url.pathname}${url.search}`, headers, timeout: this.opts.connectTimeoutMs, setHost: false }, (upRes) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined && !HOP_BY_HOP.includes(k)) out[k] = v;
      res.writeHead(upRes.statusCode ?? 502, out);
      upRes.on('data', (c: Buffer) => (bytesIn += c.length));
      upRes.pipe(res);
      upRes.on('end', () => this.event({ action: 'egress.http', host, port, decision: 'allow', reason: 'closed', rule: verdict.rule, address: verdict.address, bytesIn, bytesOut }));
    });
    up.on('timeout', () => up.destroy(new Error('upstream timeout')));
    up.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
        res.end(`agentbox: ${host}:${port} did not answer\n`);
      } else res.destroy();
    });
    req.on('data', (c: Buffer) => (bytesOut += c.length));
    req.pipe(up);
  }
}
