/**
 * Plain HTTP (absolute-form requests): the Host header must name the same host and port
 * as the request target (an allowed host cannot be used to address another); the
 * request is admitted for what it does (an upload says how many bytes, a download its
 * path and query); with DLP the whole body is read within the session's buffer budget,
 * decoded and scanned with the URL and headers before anything leaves; every byte sent
 * upstream (request line, headers and body) is counted against the upload meter.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { relayUpgrade, type UpgradeTarget } from './upgrade.js';
import { connected, cutBeforeDial } from './upstream.js';
import type { Admitted } from './admission.js';
import { decide } from './decrypted.js';
import { scanBody } from './scan-stream.js';
import { carryFor } from './context.js';
import { splitAuthority, type ProxyContext } from './context.js';
import { refusal, statusText, type Refusal } from './reasons.js';
import type { Use } from './admission.js';

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

/** What a plain-HTTP request is for, in the words a consent question uses. */
export function requestUse(method: string, pathAndQuery: string, headers: IncomingMessage['headers']): Use {
  const shown = pathAndQuery.length > 80 ? `${pathAndQuery.slice(0, 77)}...` : pathAndQuery;
  const length = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined;
  const chunked = headers['transfer-encoding'] !== undefined;
  if ((length !== undefined && length > 0) || chunked) {
    return { kind: 'upload', purpose: `to upload ${length !== undefined && Number.isFinite(length) ? `${length} byte${length === 1 ? '' : 's'}` : 'data of unknown size'} (${method} ${shown})` };
  }
  if (method === 'GET' || method === 'HEAD') return { kind: 'download', purpose: `to download (${method} ${shown})` };
  return { kind: 'request', purpose: `to send a ${method} request (${shown})` };
}

/** The bytes the request line and headers take on the wire upstream. */
function headerBytes(method: string, path: string, headers: Record<string, string | string[]>): number {
  let n = Buffer.byteLength(`${method} ${path} HTTP/1.1\r\n\r\n`);
  for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) n += Buffer.byteLength(`${k}: ${x}\r\n`);
  return n;
}

export async function handleRequest(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // The agent's side resetting (ECONNRESET, EPIPE) ends this exchange, never the launcher.
  req.on('error', () => res.destroy());
  res.on('error', () => req.destroy());
  const refuse = (status: number, host: string, port: number, r: Refusal) => {
    ctx.event({ action: 'egress.http', host, port, decision: 'deny', code: r.code, reason: r.reason, rule: r.rule, address: undefined, details: r.details });
    const body = status === 403 ? ctx.denyBody(host, port, r.reason) : `agentbox: ${r.reason}\n`;
    // The rest of a refused request is read and dropped (never held), and the connection
    // closes after the answer.
    req.resume();
    res.on('finish', () => {
      if (req.complete) return;
      // A body still arriving (or stalled): give the client a moment to read the answer, then close.
      const t = setTimeout(() => req.socket?.destroy(), 1000);
      req.once('end', () => {
        clearTimeout(t);
        req.socket?.destroy();
      });
    });
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, status === 403 ? statusText(r) : status === 503 ? 'Busy (agentbox)' : undefined, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  };
  let url: URL;
  try {
    url = new URL(req.url ?? '');
  } catch {
    return refuse(400, '-', 0, refusal('bad-request', 'a proxy request needs an absolute URL (http://host/path)'));
  }
  if (url.protocol !== 'http:') return refuse(400, url.hostname, 0, refusal('bad-request', `only http:// is proxied in plain form; use CONNECT for ${url.protocol}`));
  const port = url.port === '' ? 80 : Number(url.port);
  const hostHeader = req.headers.host === undefined ? undefined : splitAuthority(req.headers.host, 80);
  const target = splitAuthority(url.host, 80);
  if (!target || !hostHeader || ctx.canonical(hostHeader.host) !== ctx.canonical(target.host) || hostHeader.port !== port) {
    return refuse(403, ctx.canonical(url.hostname), port, refusal('host-mismatch', `the Host header (${req.headers.host ?? 'missing'}) does not match the request target ${url.host}; relaying through an allowed host is refused`));
  }
  const method = req.method ?? 'GET';
  const pathAndQuery = `${url.pathname}${url.search}`;
  const verdict = await ctx.admissions.admit(target.host, port, requestUse(method, pathAndQuery, req.headers));
  const host = verdict.host;
  if (!verdict.ok) {
    refuse(403, host, port, verdict);
    if (verdict.code === 'dlp') ctx.violation({ kind: 'dlp', host, port, reason: verdict.reason, details: (verdict.details.dlp as Record<string, unknown>) ?? {} });
    return;
  }

  // Rules, policy, DLP and the credential detectors, before anything leaves: with any
  // detector the whole body is read (and counted) first; without, it is counted as it
  // streams, and cut at the limit.
  const d = await decide(ctx, host, port, req, method, pathAndQuery, false, true, true);
  if (!d.ok) {
    refuse(d.status, host, port, { ...d.refusal, details: { ...verdict.details, ...d.refusal.details } });
    if (d.refusal.code === 'dlp' || d.refusal.code === 'placeholder') ctx.violation({ kind: 'dlp', host, port, reason: d.refusal.reason, details: (d.refusal.details.dlp as Record<string, unknown>) ?? {} });
    return;
  }
  const headers = d.headers;
  headers.host = req.headers.host!;
  const path = pathAndQuery;
  const meter = ctx.upload;
  const t = ctx.trackOpen({ kind: 'http', host, port, address: verdict.address });
  let cut = false;
  /** Takes n bytes from the meter; false (and refused, audited, a violation) when over. */
  const take = (n: number, what: string): boolean => {
    if (!meter) return true;
    const over = meter.wouldRefuse(verdict.meterKey, n, Date.now());
    if (!over && meter.take(verdict.meterKey, n, Date.now())) return true;
    const limit = over === 'session' ? `${meter.sessionLimit} bytes from the whole session` : `${meter.limit} bytes`;
    const reason = `upload to ${host}:${port} would pass ${limit} within ${meter.windowMs / 1000}s (egress.${over === 'session' ? 'maxSessionUploadBytes' : 'maxUploadBytes'}); ${what}`;
    const x = { limit: over === 'session' ? meter.sessionLimit : meter.limit, windowSeconds: meter.windowMs / 1000, sentInWindow: meter.used(verdict.meterKey, Date.now()), sessionSentInWindow: meter.usedBySession(Date.now()), sentInRequest: t.bytesOut, meterKey: verdict.meterKey };
    refuse(403, host, port, refusal('upload-limit', reason, 'egress.maxUploadBytes', x));
    ctx.violation({ kind: 'upload-limit', host, port, reason, details: x });
    return false;
  };
  const head = headerBytes(method, path, headers);
  if (!take(head, 'it was not sent')) {
    ctx.trackClose(t);
    return;
  }
  t.bytesOut += head;

  // The upstream request opens with the first scanned bytes (or the end of the body), as
  // inside a decrypted tunnel: a body refused while held never reaches the server.
  let up: ReturnType<typeof httpRequest> | undefined;
  const open = () => {
    if (up) return up;
    ctx.event({ action: 'egress.http', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address, details: verdict.details });
    const r = httpRequest({ host: verdict.address, port, method, path, headers, timeout: ctx.connectTimeoutMs, setHost: false }, (upRes) => {
      if (cut) return void upRes.destroy();
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined && !HOP_BY_HOP.includes(k)) out[k] = v;
      res.writeHead(upRes.statusCode ?? 502, out);
      // An upstream that resets mid-answer ('aborted', ECONNRESET): the agent's answer is cut too.
      upRes.on('error', () => res.destroy());
      upRes.on('data', (c: Buffer) => (t.bytesIn += c.length));
      upRes.pipe(res);
      upRes.on('end', () => {
        ctx.trackClose(t);
        ctx.event({ action: 'egress.http', host, port, decision: 'allow', reason: 'closed', rule: verdict.rule, address: verdict.address, bytesIn: t.bytesIn, bytesOut: t.bytesOut });
      });
    });
    up = r;
    ctx.upstreams.add(r);
    cutBeforeDial(ctx, r);
    r.on('close', () => {
      ctx.upstreams.delete(r);
      ctx.trackClose(t);
    });
    r.on('timeout', () => r.destroy(new Error('upstream timeout')));
    r.on('error', () => {
      if (cut) return;
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
        res.end(`agentbox: ${host}:${port} did not answer\n`);
      } else res.destroy();
    });
    r.on('drain', () => req.resume());
    return r;
  };
  const send = (c: Buffer, what: string): boolean => {
    if (cut) return false;
    if (!take(c.length, what)) {
      cut = true;
      up?.destroy();
      return false;
    }
    t.bytesOut += c.length;
    return open().write(c);
  };
  if (d.detectors.length > 0) {
    scanBody(req, {
      detectors: d.detectors,
      url: req.url ?? '',
      headers: [],
      encoding: req.headers['content-encoding'],
      contentType: req.headers['content-type'],
      budget: ctx.budget,
      maxDecodedBytes: ctx.maxScanBytes,
      idleMs: ctx.bodyIdleMs,
      carry: carryFor(ctx, verdict.meterKey),
    }, {
      data: (c) => send(c, 'the request was cut'),
      end: () => {
        if (!cut) open().end();
      },
      refuse: (r, hit, sent) => {
        cut = true;
        up?.destroy();
        const details = hit ? { ...verdict.details, dlp: { detector: hit.detector, via: hit.via, where: hit.where, digest: ctx.digest?.(hit.match), method, path: url.pathname, sentBefore: sent } } : { ...verdict.details, sentBefore: sent };
        refuse(r.code === 'busy' ? 503 : 403, host, port, { ...r, rule: r.rule ?? 'egress.dlp', details: { ...r.details, ...details } });
        if (r.code === 'dlp') ctx.violation({ kind: 'dlp', host, port, reason: r.reason, details: ('dlp' in details ? details.dlp : {}) as Record<string, unknown> });
      },
    });
    return;
  }
  // No detector: metered as it streams, cut at the limit or when it stalls.
  let idle: NodeJS.Timeout | undefined;
  const stall = () => {
    cut = true;
    up?.destroy();
    refuse(408, host, port, refusal('unscannable', `the request body stalled for ${ctx.bodyIdleMs / 1000}s; the request was cut`));
  };
  idle = setTimeout(stall, ctx.bodyIdleMs);
  req.on('data', (c: Buffer) => {
    if (cut) return;
    clearTimeout(idle);
    idle = setTimeout(stall, ctx.bodyIdleMs);
    if (!send(c, 'the request was cut')) {
      if (cut) clearTimeout(idle);
      else req.pause();
    }
  });
  req.on('end', () => {
    clearTimeout(idle);
    if (!cut) open().end();
  });
  req.on('close', () => clearTimeout(idle));
}

/** One parser per proxy for plain HTTP inside CONNECT tunnels; each socket keeps the tunnel's target. */
const tunnelParsers = new WeakMap<ProxyContext, Server>();
const tunnelTargets = new WeakMap<Socket, { authority: string; host: string; port: number; target: UpgradeTarget }>();

/**
 * An admitted CONNECT whose upstream speaks plain HTTP (an http:// URL sent through a
 * tunnel, as some clients do for every URL): the tunnel is answered, and each request in
 * it is handled as a plain-HTTP request to the CONNECT target, whatever its request line
 * says: the Host header must still name that target, and rules, policy, DLP and the
 * upload meter apply as to any plain-HTTP request. Anything that does not parse as HTTP
 * (TLS to a plaintext server, another protocol) is cut and audited as unscannable.
 */
export function plainHttpTunnel(ctx: ProxyContext, client: Socket, head: Buffer, verdict: Admitted, port: number, why: string): void {
  const host = verdict.host;
  let parser = tunnelParsers.get(ctx);
  if (!parser) {
    parser = createServer((req, res) => {
      const t = tunnelTargets.get(req.socket as Socket);
      if (!t || !(req.url ?? '').startsWith('/')) {
        res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' });
        return void res.end('agentbox: inside a tunnel, requests name a path (origin form)\n');
      }
      req.url = `http://${t.authority}${req.url}`;
      void handleRequest(ctx, req, res).catch(() => res.destroy());
    });
    parser.on('clientError', (e: NodeJS.ErrnoException, s: Socket) => {
      const t = tunnelTargets.get(s);
      if (t && (e.code ?? '').startsWith('HPE_')) {
        const r = refusal('unscannable', `what was sent through the tunnel to ${t.host}:${t.port} is neither TLS agentbox can open nor HTTP (${e.code ?? 'parse error'}); with DLP it cannot pass unscanned (inspect: false on the host makes it an opaque tunnel)`);
        ctx.event({ action: 'egress.connect', host: t.host, port: t.port, decision: 'deny', code: r.code, reason: r.reason, rule: 'egress.dlp', address: undefined, details: { plaintext: true } });
      }
      s.destroy();
    });
    parser.on('upgrade', (req: IncomingMessage, s: Socket, upgradeHead: Buffer) => {
      const t = tunnelTargets.get(s);
      if (!t) return void s.destroy();
      const open = ctx.trackOpen({ kind: 'http', host: t.host, port: t.port, address: t.target.address });
      s.once('close', () => ctx.trackClose(open));
      void relayUpgrade(ctx, t.target, open, req, s, upgradeHead).catch(() => s.destroy());
    });
    tunnelParsers.set(ctx, parser);
  }
  const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  tunnelTargets.set(client, { authority, host, port, target: plainTarget(ctx, verdict, port, why) });
  ctx.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address, details: { ...verdict.details, inspected: why, plaintext: true } });
  client.setNoDelay(true);
  client.write(TUNNEL_OK);
  if (head.length > 0) client.unshift(head);
  parser.emit('connection', client);
}

const TUNNEL_OK = 'HTTP/1.1 200 Connection Established\r\n\r\n';

/** A plain-TCP upgrade target for an admitted host. */
function plainTarget(ctx: ProxyContext, verdict: Admitted, port: number, why: string): UpgradeTarget {
  return {
    host: verdict.host,
    port,
    address: verdict.address,
    rule: verdict.rule,
    meterKey: verdict.meterKey,
    inspected: why,
    tls: false,
    connect: () => connected(ctx, netConnect({ host: verdict.address, port, timeout: ctx.connectTimeoutMs }), 'connect'),
  };
}

/**
 * A plain-HTTP upgrade sent to the proxy in absolute form (`GET http://host/ws` with
 * Upgrade: websocket): admitted as any plain-HTTP request, then relayed (upgrade.ts).
 */
export async function handlePlainUpgrade(ctx: ProxyContext, req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
  socket.on('error', () => socket.destroy());
  const no = (status: number, host: string, port: number, r: Refusal) => {
    ctx.event({ action: 'egress.http', host, port, decision: 'deny', code: r.code, reason: r.reason, rule: r.rule, address: undefined, details: { upgrade: req.headers.upgrade ?? null, ...r.details } });
    if (r.code === 'dlp') ctx.violation({ kind: 'dlp', host, port, reason: r.reason, details: (r.details.dlp as Record<string, unknown>) ?? {} });
    const body = status === 403 ? ctx.denyBody(host, port, r.reason) : `agentbox: ${r.reason}\n`;
    socket.end(`HTTP/1.1 ${status} ${status === 403 ? statusText(r) : 'Bad Request'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  };
  let url: URL;
  try {
    url = new URL(req.url ?? '');
  } catch {
    return no(400, '-', 0, refusal('bad-request', 'a proxy request needs an absolute URL (http://host/path)'));
  }
  if (url.protocol !== 'http:' && url.protocol !== 'ws:') return no(400, url.hostname, 0, refusal('bad-request', `only http:// upgrades are proxied in plain form; use CONNECT for ${url.protocol}`));
  const port = url.port === '' ? 80 : Number(url.port);
  const target = splitAuthority(url.host, 80);
  if (!target) return no(400, url.hostname, port, refusal('bad-request', 'the request target names no host'));
  const verdict = await ctx.admissions.admit(target.host, port, { kind: 'request', purpose: `to open a WebSocket (${url.pathname.slice(0, 80)})` });
  if (!verdict.ok) return no(403, verdict.host, port, verdict);
  req.url = `http://${url.host}${url.pathname}${url.search}`;
  const open = ctx.trackOpen({ kind: 'http', host: verdict.host, port, address: verdict.address });
  socket.once('close', () => ctx.trackClose(open));
  await relayUpgrade(ctx, plainTarget(ctx, verdict, port, 'plain'), open, req, socket, head);
}
