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
 *
 * On top of the manifest allowlist, in this order (the first refusal wins):
 * 1. explicit denies, then grants; a host outside the grants that the manifest marks
 *    `consent: ask` goes on to 2 and 3 instead of being refused;
 * 2. organisation policy (Cedar), once per (host, port) for the session's life;
 * 3. consent: the connection is held while a person is asked (coalesced per host:port);
 * 4. the DNS rebinding check on the address actually dialled;
 * 5. for plain HTTP, DLP over URL, headers and body (decoded), and for every exchange
 *    the upload threshold per destination and window; a violation can quarantine.
 */
import { lookup } from 'node:dns/promises';
import { createServer, request as httpRequest, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, isIP, type Socket } from 'node:net';
import { canonicalHost, hostMatches } from '../model/decide.js';
import type { ConsentHost } from '../model/types.js';
import { scanRequest, type Detector, type UploadMeter } from '../policy/dlp.js';
import type { ConsentAnswer } from './consent.js';
import { PolicyCache } from './policy-cache.js';
import { decideEgressFor, isInternalAddress, pickAddress, type EgressRules } from './addresses.js';

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
  /** Anything else the audit record should carry (policy ids, consent, DLP detector). */
  details?: Record<string, unknown>;
}

/** The organisation policy's answer for one (host, port). */
export interface PolicyAnswer {
  allow: boolean;
  /** The policies that decided (the forbidding ones on a deny). */
  ids: string[];
  reason: string;
}

export interface Violation {
  kind: 'dlp' | 'upload-limit';
  host: string;
  port: number;
  reason: string;
  details: Record<string, unknown>;
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
  /** Organisation policy per (host, port); the proxy caches each answer for its life (one session). */
  policy?: (host: string, port: number, consented: boolean) => PolicyAnswer;
  /** Hosts outside the grants a person is asked about, and how to ask. */
  consent?: { hosts: readonly ConsentHost[]; ask: (host: string, port: number, purpose: string) => Promise<ConsentAnswer & { id: string }> };
  /** DLP detectors for plain-HTTP requests. */
  dlp?: readonly Detector[];
  /** Largest plain-HTTP body buffered for scanning; larger bodies are refused (default 16 MiB). */
  maxScanBytes?: number;
  /** egress.maxUploadBytes per window per destination. */
  upload?: UploadMeter;
  /** Keyed hash of a DLP match (the match itself is never recorded). */
  digest?: (match: string) => string;
  /** A DLP match or an upload over the threshold (after it was blocked). */
  onViolation?: (v: Violation) => void;
}

type Admission =
  | { ok: true; address: string; rule: string; details: Record<string, unknown> }
  | { ok: false; reason: string; rule: string | undefined; details: Record<string, unknown> };

const DEFAULT_MAX_SCAN = 16 * 1024 * 1024;
/** Questions one session may have waiting at once: an agent cannot flood a person with them. */
export const MAX_PENDING_CONSENT = 4;

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
  // Host names as DNS writes them (letters, digits, - _ .), IPv4, or a bracketed IPv6:
  // nothing else reaches a decision, a log line or a consent question (a control
  // character in a CONNECT target could rewrite the question on a terminal).
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?$/.exec(authority.trim());
  if (!m) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, '').toLowerCase(), port };
}

export class EgressProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly upstreamRequests = new Set<ClientRequest>();
  private readonly opts: ProxyOptions & { resolve: Resolve; connectTimeoutMs: number };
  private closed = false;
  private readonly policy: PolicyCache | undefined;
  /** Consent given or refused for the session, per host:port. */
  private readonly consentFor = new Map<string, 'session' | 'deny'>();
  /** Requests being asked now, per host:port: a second connection waits for the same answer. */
  private readonly asking = new Map<string, Promise<ConsentAnswer & { id: string }>>();

  constructor(opts: ProxyOptions) {
    this.opts = { connectTimeoutMs: 10_000, resolve: systemResolve, ...opts };
    this.policy = opts.policy ? new PolicyCache(opts.policy) : undefined;
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
    for (const r of this.upstreamRequests) r.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private event(e: Omit<EgressEvent, 'bytesIn' | 'bytesOut'> & Partial<Pick<EgressEvent, 'bytesIn' | 'bytesOut'>>): void {
    this.opts.onEvent({ bytesIn: 0, bytesOut: 0, ...e });
  }

  private consentHost(host: string, port: number): ConsentHost | undefined {
    return this.opts.consent?.hosts.find((c) => (c.hostKind === 'any' || hostMatches(c.host, host)) && (c.port === 'any' || c.port === port));
  }

  /** Allowlist, policy, consent and DNS check; returns the address to dial or the refusal. */
  private async admit(rawHost: string, port: number, purpose: string): Promise<Admission> {
    const host = canonicalHost(rawHost);
    const details: Record<string, unknown> = {};
    if (this.closed) return { ok: false, reason: 'egress is cut for this session', rule: undefined, details };
    const d = decideEgressFor(this.opts.rules, host, port);
    const explicitDeny = !d.allow && d.rule !== undefined;
    const ask = !d.allow && !explicitDeny ? this.consentHost(host, port) : undefined;
    if (!d.allow && !ask) return { ok: false, reason: d.reason, rule: d.rule ? `${d.rule.text} (${d.rule.pointer})` : undefined, details };
    let rule = d.allow ? `${d.rule.text} (${d.rule.pointer})` : `${ask!.source.text} (${ask!.source.pointer})`;
    // Only an entry naming the literal address may ask about an internal one (loopback,
    // private, link-local such as cloud metadata): `*` or a name never reaches them.
    const askLiteral = ask !== undefined && (ask.hostKind === 'ipv4' || ask.hostKind === 'ipv6');
    if (ask && isIP(host) && isInternalAddress(host) && !askLiteral) {
      return { ok: false, reason: `${host} is an internal address; consent for it needs an entry naming it in egress.consent.ask`, rule, details };
    }

    const p = this.policy?.decide(host, port, Boolean(ask));
    if (p) {
      details.policy = { decision: p.answer.allow ? 'allow' : 'deny', ids: p.answer.ids, cached: p.cached };
      if (!p.answer.allow) return { ok: false, reason: `organisation policy forbids it: ${p.answer.reason}`, rule: p.answer.ids.join(', ') || undefined, details };
    }

    if (ask) {
      const key = `${host}:${port}`;
      const earlier = this.consentFor.get(key);
      if (earlier === 'deny') {
        details.consent = { answer: 'deny', remembered: true };
        return { ok: false, reason: 'a person denied this host earlier in the session', rule, details };
      }
      if (earlier === 'session') details.consent = { answer: 'session', remembered: true };
      else {
        let a: ConsentAnswer & { id: string };
        for (;;) {
          let pending = this.asking.get(key);
          const mine = pending === undefined;
          if (!pending && this.asking.size >= MAX_PENDING_CONSENT) {
            return { ok: false, reason: `${MAX_PENDING_CONSENT} consent questions are already waiting for an answer; this one was not asked`, rule, details };
          }
          if (!pending) {
            pending = this.opts.consent!.ask(host, port, purpose);
            this.asking.set(key, pending);
            void pending.finally(() => this.asking.delete(key));
          }
          a = await pending;
          // "Allow once" admits the connection that asked; one that waited alongside asks anew.
          if (a.answer === 'once' && !mine && !this.closed) continue;
          break;
        }
        details.consent = { id: a.id, answer: a.answer, by: a.by, via: a.via };
        if (a.answer === 'session' || a.answer === 'deny') this.consentFor.set(key, a.answer);
        if (this.closed) return { ok: false, reason: 'egress is cut for this session', rule, details };
        if (a.answer === 'timeout') return { ok: false, reason: 'nobody answered the consent request in time (no answer is a deny)', rule, details };
        if (a.answer === 'deny') return { ok: false, reason: `${a.by} denied the consent request`, rule, details };
      }
      rule = `${rule}, consent ${(details.consent as { answer: string }).answer}`;
    }

    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else {
      try {
        addresses = await this.opts.resolve(host);
      } catch (e) {
        return { ok: false, reason: `${host} does not resolve (${(e as NodeJS.ErrnoException).code ?? 'error'})`, rule, details };
      }
    }
    // The literal address a person approved is dialled as it is; a name admitted by
    // consent may resolve to an internal address only where a grant names that address.
    if (askLiteral) return { ok: true, address: host, rule, details };
    const pick = pickAddress(this.opts.rules, addresses, port);
    return pick.ok ? { ok: true, address: pick.address, rule, details } : { ok: false, reason: pick.reason, rule, details };
  }

  private violation(v: Violation): void {
    this.opts.onViolation?.(v);
  }

  private async onConnect(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    const target = splitAuthority(req.url ?? '', 443);
    if (!target) {
      client.end('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nagentbox: CONNECT needs host:port\n');
      return;
    }
    const { host, port } = target;
    client.on('error', () => client.destroy());
    const verdict = await this.admit(host, port, 'over an encrypted tunnel (what it sends cannot be inspected)');
    if (!verdict.ok) {
      this.event({ action: 'egress.connect', host, port, decision: 'deny', reason: verdict.reason, rule: verdict.rule, address: undefined, details: verdict.details });
      const body = denyBody(this.opts.agent, host, port, verdict.reason);
      if (!client.destroyed) client.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    if (client.destroyed) return;
    this.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address, details: verdict.details });
    const upstream = connect({ host: verdict.address, port, timeout: this.opts.connectTimeoutMs });
    this.sockets.add(upstream);
    const dest = `${host}:${port}`;
    let bytesOut = 0;
    let bytesIn = 0;
    let cut = false;
    const finish = () => {
      upstream.destroy();
      client.destroy();
    };
    /** Forwards agent bytes while the destination stays under the upload threshold. */
    const send = (c: Buffer): boolean => {
      if (cut) return false;
      if (this.opts.upload && !this.opts.upload.take(dest, c.length, Date.now())) {
        cut = true;
        const reason = `upload to ${dest} would pass ${this.opts.upload.limit} bytes within ${this.opts.upload.windowMs / 1000}s (egress.maxUploadBytes); the tunnel was cut`;
        this.event({ action: 'egress.connect', host, port, decision: 'deny', reason, rule: 'egress.maxUploadBytes', address: verdict.address, bytesIn, bytesOut, details: { sentInWindow: this.opts.upload.used(dest, Date.now()), refusedChunk: c.length } });
        this.violation({ kind: 'upload-limit', host, port, reason, details: { limit: this.opts.upload.limit, windowSeconds: this.opts.upload.windowMs / 1000, sentInWindow: this.opts.upload.used(dest, Date.now()) } });
        finish();
        return false;
      }
      bytesOut += c.length;
      if (!upstream.write(c)) client.pause();
      return true;
    };
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0 && !send(head)) return;
      client.on('data', (c: Buffer) => void send(c));
      client.on('end', () => upstream.end());
      upstream.on('drain', () => client.resume());
      upstream.on('data', (c: Buffer) => (bytesIn += c.length));
      upstream.pipe(client);
    });
    upstream.once('timeout', finish);
    upstream.once('error', () => {
      if (!client.destroyed && bytesIn === 0 && bytesOut === 0) client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n');
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

  /** The request body, whole (for DLP and the upload threshold), or why it cannot be inspected. */
  private readBody(req: IncomingMessage): Promise<{ ok: true; body: Buffer } | { ok: false; reason: string }> {
    const limit = this.opts.maxScanBytes ?? DEFAULT_MAX_SCAN;
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
        if (n > limit) {
          req.destroy();
          resolve({ ok: false, reason: `the request body is over ${limit} bytes, more than agentbox scans for data-loss prevention; it was not sent` });
        } else chunks.push(c);
      });
      req.on('end', () => resolve({ ok: true, body: Buffer.concat(chunks) }));
      req.on('error', () => resolve({ ok: false, reason: 'the request body could not be read' }));
    });
  }

  /** The body as a detector should see it: decoded per Content-Encoding (bounded), or why not. */
  private async decoded(body: Buffer, encoding: string | undefined): Promise<{ ok: true; text: string } | { ok: false; reason: string }> {
    const limit = this.opts.maxScanBytes ?? DEFAULT_MAX_SCAN;
    const enc = (encoding ?? 'identity').trim().toLowerCase();
    const { brotliDecompressSync, gunzipSync, inflateSync } = await import('node:zlib');
    try {
      const opts = { maxOutputLength: limit };
      const out = enc === 'identity' || enc === '' ? body : enc === 'gzip' || enc === 'x-gzip' ? gunzipSync(body, opts) : enc === 'deflate' ? inflateSync(body, opts) : enc === 'br' ? brotliDecompressSync(body, opts) : undefined;
      if (!out) return { ok: false, reason: `the body's Content-Encoding ${JSON.stringify(enc)} cannot be inspected for data-loss prevention; it was not sent` };
      return { ok: true, text: out.toString('utf8') };
    } catch {
      return { ok: false, reason: `the ${enc} body does not decode within ${limit} bytes, so it cannot be inspected; it was not sent` };
    }
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refuse = (status: number, host: string, port: number, reason: string, rule: string | undefined, details?: Record<string, unknown>) => {
      this.event({ action: 'egress.http', host, port, decision: 'deny', reason, rule, address: undefined, ...(details ? { details } : {}) });
      const body = status === 403 ? denyBody(this.opts.agent, host, port, reason) : `agentbox: ${reason}\n`;
      if (res.headersSent || res.destroyed) return;
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
    const method = req.method ?? 'GET';
    const verb = ['POST', 'PUT', 'PATCH'].includes(method) ? 'to upload' : ['GET', 'HEAD'].includes(method) ? 'to download' : 'to send a request';
    const shownPath = url.pathname.length > 60 ? `${url.pathname.slice(0, 57)}...` : url.pathname;
    const verdict = await this.admit(host, port, `${verb} (${method} ${shownPath})`);
    if (!verdict.ok) return refuse(403, host, port, verdict.reason, verdict.rule, verdict.details);

    // Inspect before anything leaves: with DLP the whole body is read (and counted) first;
    // with only the threshold it is counted as it streams, and cut at the limit.
    let body: Buffer | undefined;
    if (this.opts.dlp && this.opts.dlp.length > 0) {
      const read = await this.readBody(req);
      if (!read.ok) return refuse(403, host, port, read.reason, 'egress.dlp');
      body = read.body;
      const text = await this.decoded(body, req.headers['content-encoding'] as string | undefined);
      if (!text.ok) return refuse(403, host, port, text.reason, 'egress.dlp');
      const headers = Object.entries(req.headers).flatMap(([k, v]) => (k === 'host' || v === undefined ? [] : (Array.isArray(v) ? v : [v]).map((x) => [k, x] as [string, string])));
      const hit = scanRequest(this.opts.dlp, { url: req.url ?? '', headers, body: text.text });
      if (hit) {
        const reason = `data-loss prevention: the request's ${hit.where} matches detector ${hit.detector}; it was not sent`;
        const d = { detector: hit.detector, where: hit.where, digest: this.opts.digest ? this.opts.digest(hit.match) : undefined, method, path: url.pathname };
        refuse(403, host, port, reason, `egress.dlp ${hit.detector}`, { ...verdict.details, dlp: d });
        this.violation({ kind: 'dlp', host, port, reason, details: d });
        return;
      }
      if (this.opts.upload && !this.opts.upload.take(`${host}:${port}`, body.length, Date.now())) {
        const reason = `upload to ${host}:${port} would pass ${this.opts.upload.limit} bytes within ${this.opts.upload.windowMs / 1000}s (egress.maxUploadBytes); it was not sent`;
        const d = { limit: this.opts.upload.limit, windowSeconds: this.opts.upload.windowMs / 1000, sentInWindow: this.opts.upload.used(`${host}:${port}`, Date.now()), refused: body.length };
        refuse(403, host, port, reason, 'egress.maxUploadBytes', d);
        this.violation({ kind: 'upload-limit', host, port, reason, details: d });
        return;
      }
    }
    this.event({ action: 'egress.http', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address, details: verdict.details });

    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.includes(k)) headers[k] = v;
    if (body !== undefined) headers['content-length'] = String(body.length);
    let bytesOut = 0;
    let bytesIn = 0;
    const up = httpRequest({ host: verdict.address, port, method, path: `${url.pathname}${url.search}`, headers, timeout: this.opts.connectTimeoutMs, setHost: false }, (upRes) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined && !HOP_BY_HOP.includes(k)) out[k] = v;
      res.writeHead(upRes.statusCode ?? 502, out);
      upRes.on('data', (c: Buffer) => (bytesIn += c.length));
      upRes.pipe(res);
      upRes.on('end', () => this.event({ action: 'egress.http', host, port, decision: 'allow', reason: 'closed', rule: verdict.rule, address: verdict.address, bytesIn, bytesOut }));
    });
    this.upstreamRequests.add(up);
    up.on('close', () => this.upstreamRequests.delete(up));
    up.on('timeout', () => up.destroy(new Error('upstream timeout')));
    up.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
        res.end(`agentbox: ${host}:${port} did not answer\n`);
      } else res.destroy();
    });
    if (body !== undefined) {
      bytesOut = body.length;
      up.end(body);
    } else {
      const meter = this.opts.upload;
      let cut = false;
      req.on('data', (c: Buffer) => {
        if (cut) return;
        if (meter && !meter.take(`${host}:${port}`, c.length, Date.now())) {
          cut = true;
          const reason = `upload to ${host}:${port} would pass ${meter.limit} bytes within ${meter.windowMs / 1000}s (egress.maxUploadBytes); the request was cut`;
          const d = { limit: meter.limit, windowSeconds: meter.windowMs / 1000, sentInWindow: meter.used(`${host}:${port}`, Date.now()), sentInRequest: bytesOut };
          up.destroy();
          refuse(403, host, port, reason, 'egress.maxUploadBytes', d);
          this.violation({ kind: 'upload-limit', host, port, reason, details: d });
          return;
        }
        bytesOut += c.length;
        if (!up.write(c)) req.pause();
      });
      up.on('drain', () => req.resume());
      req.on('end', () => {
        if (!cut) up.end();
      });
    }
  }
}
