/**
 * One request inside a decrypted tunnel (HTTP/1.1 or HTTP/2 from the agent), decided
 * before anything leaves:
 *
 * 1. its authority (`Host`, or `:authority`) must be the tunnel's host and port;
 * 2. the `egress.http` method/path rules for the host (rules.ts semantics);
 * 3. organisation policy per request, with `method` and `path` in the Cedar context;
 * 4. the body read within the session's buffer budget and scanned with the URL and
 *    headers: the manifest's DLP detectors, every brokered secret, and the placeholders
 *    of credentials that belong to other hosts;
 * 5. the credential for this host injected (after the scan, so the scan never sees it);
 * 6. the upload meter counts the request line, headers and body.
 *
 * A refusal answers 403 inside TLS with the reason code in the status text (HTTP/1.1)
 * and the plain-language body, and is audited with method and path. Allowed requests
 * go upstream as HTTP/1.1 over the pinned, verified connection. A WebSocket upgrade is
 * decided the same way, then relayed (upgrade.ts).
 */
import type { IncomingMessage, ServerResponse, OutgoingHttpHeaders } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { hitName, isUndecodable, scanRequest, type Detector } from '../policy/dlp.js';
import { decideHttp, normaliseRequestPath } from '../model/http.js';
import { readBody, scanTexts } from './body.js';
import { carryFor, splitAuthority, type OpenExchange, type ProxyContext } from './context.js';
import { credentialDetectors, inject } from './credentials.js';
import { refusal, statusText, type Refusal } from './reasons.js';
import { cutBeforeDial, upstreamRefusal, type UpstreamTls } from './upstream.js';
import { scanBody } from './scan-stream.js';

/** An admitted destination whose requests the proxy reads. */
export interface ReadTarget {
  host: string;
  port: number;
  address: string;
  rule: string;
  meterKey: string;
  /** Why its content is read: rules, credential, inspect, dlp (plain for plain HTTP). */
  inspected: string;
}

/** An admitted, decrypted tunnel. */
export interface Inspected extends ReadTarget {
  upstream: UpstreamTls;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);
/** Response headers an HTTP/2 answer must not carry, and hints that would send clients around the proxy. */
const RESPONSE_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'alt-svc', 'te', 'trailer', 'http2-settings', 'proxy-authenticate']);

type AnyReq = IncomingMessage | Http2ServerRequest;
type AnyRes = ServerResponse | Http2ServerResponse;

export type Decided = { ok: true; body: Buffer | undefined; release: () => void; path: string; headers: Record<string, string | string[]>; injected: ReturnType<typeof inject>['injected']; detectors: Detector[] } | { ok: false; status: number; refusal: Refusal };

/** The request's headers as [name, value] pairs (pseudo-headers and Host left out), for scanning. */
const headerList = (h: AnyReq['headers']) => Object.entries(h).flatMap(([k, v]) => (k.startsWith(':') || k === 'host' || v === undefined ? [] : (Array.isArray(v) ? v : [v]).map((x) => [k, String(x)] as [string, string])));

/**
 * Steps 2 to 5 for a request to `host` (shared with plain HTTP, forward.ts): rules,
 * policy, scanning and injection. `withBody` false for an upgrade (no body).
 */
export async function decide(ctx: ProxyContext, host: string, port: number, req: AnyReq, method: string, pathAndQuery: string, tls: boolean, withBody = true, streamBody = false): Promise<Decided> {
  const no = (status: number, r: Refusal): Decided => ({ ok: false, status, refusal: r });
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  // HTTP/2 lets any token through as a method; the upstream client upper-cases it. Rules
  // and policy must see what the server will: a method in capitals, or nothing.
  if (!/^[A-Z][A-Z-]{0,31}$/.test(method)) return no(400, refusal('bad-request', `${JSON.stringify(method.slice(0, 40))} is not an HTTP method agentbox forwards (capitals only)`, undefined, { path }));
  // TRACE/TRACK echo the request, injected credentials included, back to the agent.
  if (method === 'TRACE' || method === 'TRACK') return no(403, refusal('http-rule', `${method} is never forwarded: the server would echo the request (and any brokered credential) back`, undefined, { method, path }));
  const entries = ctx.http?.rules(host) ?? [];
  const d = decideHttp(entries, method, path);
  if (!d.allow) return no(403, refusal('http-rule', d.reason, d.rule, { method, path }));
  // Policy sees the path as rules (and servers) resolve it, not as spelled.
  const n = normaliseRequestPath(path);
  if (!n.ok && ctx.http?.requestPolicy) return no(403, refusal('http-rule', `${method} ${path.slice(0, 120)} was refused: ${n.reason} (organisation policy reads paths)`, undefined, { method, path }));
  const resolved = n.ok ? `/${n.segments.join('/')}` : path;
  const p = ctx.http?.requestPolicy?.(host, port, method, resolved);
  if (p && !p.allow) return no(403, refusal('policy', `organisation policy forbids ${method} ${path}: ${p.reason}`, p.ids.join(', ') || undefined, { method, path, policy: { decision: 'deny', ids: p.ids } }));
  const brokered = ctx.brokered ?? [];
  if (!tls && brokered.some((b) => b.spec.host === host)) {
    const b = brokered.find((x) => x.spec.host === host)!;
    return no(403, refusal('credential', `credential ${b.spec.name} is sent to ${host} over HTTPS only; this plain-HTTP request was not sent`, b.spec.source.pointer, { method, path }));
  }
  const detectors: Detector[] = [...(ctx.dlp ?? []), ...credentialDetectors(brokered, host)];
  let body: Buffer | undefined;
  let release = () => undefined as void;
  if (detectors.length > 0) {
    let texts: string[] = [];
    // A streamed body is scanned by the caller (scan-stream.ts); here only the URL and headers.
    if (withBody && !streamBody) {
      const read = await readBody(req as IncomingMessage, { maxBytes: ctx.maxScanBytes, budget: ctx.budget, idleMs: ctx.bodyIdleMs });
      if (!read.ok) return no(read.refusal.code === 'busy' ? 503 : 403, { ...read.refusal, rule: read.refusal.rule ?? 'egress.dlp', details: { ...read.refusal.details, method, path } });
      body = read.body;
      release = read.release;
      const t = scanTexts(body, { encoding: req.headers['content-encoding'] as string | undefined, contentType: req.headers['content-type'] as string | undefined }, ctx.maxScanBytes);
      if (!t.ok) {
        release();
        return no(403, { ...t.refusal, rule: 'egress.dlp', details: { method, path } });
      }
      texts = t.texts;
    }
    const hit = scanRequest(detectors, { url: pathAndQuery, headers: headerList(req.headers), body: texts });
    if (hit && isUndecodable(hit)) {
      release();
      return no(403, refusal('unscannable', `the request's ${hit.where} could not be fully decoded for data-loss prevention: ${hit.undecodable}; it was not sent`, 'egress.dlp', { method, path }));
    }
    if (hit) {
      release();
      const placeholder = hit.detector.startsWith('placeholder:');
      const reason = placeholder
        ? `the placeholder of credential ${hit.detector.slice(12)} was in the request's ${hit.where} to ${host}, which is not its host; it was not sent`
        : `data-loss prevention: the request's ${hit.where} matches detector ${hitName(hit)}; it was not sent`;
      return no(403, refusal(placeholder ? 'placeholder' : 'dlp', reason, `egress.dlp ${hit.detector}`, { dlp: { detector: hit.detector, via: hit.via, where: hit.where, digest: ctx.digest?.(hit.match), method, path } }));
    }
  }
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !k.startsWith(':') && !HOP_BY_HOP.has(k)) headers[k] = v as string | string[];
  const inj = tls ? inject(brokered, host, headers, pathAndQuery) : { path: pathAndQuery, injected: [] };
  if (body !== undefined) {
    headers['content-length'] = String(body.length);
    delete headers['transfer-encoding'];
  }
  return { ok: true, body, release, path: inj.path, headers, injected: inj.injected, detectors };
}

/** The bytes a request line and headers take upstream. */
function headerBytes(method: string, path: string, headers: Record<string, string | string[]>): number {
  let n = Buffer.byteLength(`${method} ${path} HTTP/1.1\r\n\r\n`);
  for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) n += Buffer.byteLength(`${k}: ${x}\r\n`);
  return n;
}

/** Takes n bytes from the upload meter; the refusal when over. */
export function meterTake(ctx: ProxyContext, meterKey: string, host: string, port: number, n: number, sent: number, what: string): Refusal | undefined {
  const meter = ctx.upload;
  if (!meter) return undefined;
  const over = meter.wouldRefuse(meterKey, n, Date.now());
  if (!over && meter.take(meterKey, n, Date.now())) return undefined;
  const limit = over === 'session' ? `${meter.sessionLimit} bytes from the whole session` : `${meter.limit} bytes`;
  const reason = `upload to ${host}:${port} would pass ${limit} within ${meter.windowMs / 1000}s (egress.${over === 'session' ? 'maxSessionUploadBytes' : 'maxUploadBytes'}); ${what}`;
  const d = { limit: over === 'session' ? meter.sessionLimit : meter.limit, windowSeconds: meter.windowMs / 1000, sentInWindow: meter.used(meterKey, Date.now()), sessionSentInWindow: meter.usedBySession(Date.now()), sentInRequest: sent, meterKey };
  return refusal('upload-limit', reason, 'egress.maxUploadBytes', d);
}

export function authorityOk(req: AnyReq, conn: { host: string; port: number; tls?: boolean }, canonical: (h: string) => string): boolean {
  const raw = (req.headers[':authority'] as string | undefined) ?? req.headers.host;
  if (raw === undefined) return false;
  const scheme = conn.tls === false ? 80 : 443;
  const a = splitAuthority(raw, scheme);
  return a !== undefined && canonical(a.host) === conn.host && (a.port === conn.port || (raw.indexOf(':', raw.lastIndexOf(']') + 1) < 0 && conn.port === scheme));
}

/** The request target as origin-form; an absolute-form target must name the tunnel's host. */
export function originForm(req: AnyReq, conn: { host: string; port: number; tls?: boolean }, canonical: (h: string) => string): string | undefined {
  const u = req.url ?? '/';
  if (u.startsWith('/')) return u;
  try {
    const url = new URL(u);
    const port = url.port === '' ? (conn.tls === false ? 80 : 443) : Number(url.port);
    if (url.protocol !== (conn.tls === false ? 'http:' : 'https:') || canonical(url.hostname) !== conn.host || port !== conn.port) return undefined;
    return `${url.pathname}${url.search}`;
  } catch {
    return undefined;
  }
}

export async function handleDecrypted(ctx: ProxyContext, conn: Inspected, t: OpenExchange, req: AnyReq, res: AnyRes): Promise<void> {
  const { host, port } = conn;
  const method = req.method ?? 'GET';
  (req as Readable).on('error', () => res.destroy());
  res.on('error', () => (req as Readable).destroy());
  const shown = (p: string) => (p.length > 200 ? `${p.slice(0, 197)}...` : p);
  const refuse = (status: number, r: Refusal, path: string) => {
    ctx.event({ action: 'egress.https', host, port, decision: 'deny', code: r.code, reason: r.reason, rule: r.rule, address: conn.address, details: { method, path: shown(path), ...r.details } });
    if (r.code === 'dlp' || r.code === 'placeholder') ctx.violation({ kind: 'dlp', host, port, reason: r.reason, details: (r.details.dlp as Record<string, unknown>) ?? { method, path } });
    const body = status === 403 ? ctx.denyBody(host, port, r.reason) : `agentbox: ${r.reason}\n`;
    (req as Readable).resume();
    if (res.headersSent || res.destroyed) return;
    const h = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) };
    if (req.httpVersionMajor >= 2) (res as Http2ServerResponse).writeHead(status, h);
    else (res as ServerResponse).writeHead(status, status === 403 ? statusText(r) : status === 502 ? 'Bad Gateway (agentbox)' : undefined, { ...h, connection: 'close' });
    res.end(body);
  };
  const pathAndQuery = originForm(req, conn, ctx.canonical);
  if (!authorityOk(req, conn, ctx.canonical) || pathAndQuery === undefined) {
    return refuse(403, refusal('host-mismatch', `the request names ${String(req.headers[':authority'] ?? req.headers.host ?? 'no host')}, not ${host}:${port}, the host the tunnel was opened to; relaying through an allowed host is refused`), req.url ?? '');
  }
  const d = await decide(ctx, host, port, req, method, pathAndQuery, true, true, true);
  const path = pathAndQuery.split('?')[0]!;
  if (!d.ok) return refuse(d.status, d.refusal, path);
  const headers = d.headers;
  headers.host = port === 443 ? host : `${host}:${port}`;
  const head = headerBytes(method, d.path, headers);
  const over = meterTake(ctx, conn.meterKey, host, port, head, 0, 'it was not sent');
  if (over) {
    ctx.violation({ kind: 'upload-limit', host, port, reason: over.reason, details: over.details });
    return refuse(403, over, path);
  }
  t.bytesOut += head;

  // The upstream request opens with the first scanned bytes (or the end of an empty
  // body): a body refused while held never reaches the server, not even its headers.
  let up: import('node:http').ClientRequest | undefined;
  let cut = false;
  const open = () => {
    if (up) return up;
    ctx.event({ action: 'egress.https', host, port, decision: 'allow', reason: 'granted', rule: conn.rule, address: conn.address, details: { method, path: shown(path), inspected: conn.inspected, ...(d.injected.length > 0 ? { injected: d.injected } : {}) } });
    const r = httpsRequest({ host: conn.address, port, method, path: d.path, headers: headers as OutgoingHttpHeaders, agent: conn.upstream.agent, ...(conn.upstream.servername ? { servername: conn.upstream.servername } : {}), setHost: false, timeout: ctx.connectTimeoutMs }, (upRes) => {
      if (cut) return void upRes.destroy();
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined && !RESPONSE_DROP.has(k)) out[k] = v;
      // A server that reflects the injected secret (a redirect keeping the query, an
      // echo) must not hand it to the agent: such a header is removed and audited.
      for (const b of ctx.brokered ?? []) {
        if (b.spec.host !== host) continue;
        const det = credentialDetectors([b], '');
        for (const [k, v] of Object.entries(out)) {
          if ((Array.isArray(v) ? v : [v]).some((x) => det[0]!.find(String(x)) !== undefined)) {
            delete out[k];
            ctx.event({ action: 'egress.https', host, port, decision: 'deny', code: 'dlp', reason: `the answer's ${k} header carried credential ${b.spec.name}; it was removed before the agent saw it`, rule: `egress.credentials ${b.spec.name}`, address: conn.address, details: { method, path: shown(path), header: k } });
          }
        }
      }
      const status = upRes.statusCode !== undefined && upRes.statusCode >= 200 && upRes.statusCode <= 599 ? upRes.statusCode : 502;
      try {
        if (!res.headersSent) res.writeHead(status, out);
      } catch {
        upRes.destroy();
        res.destroy();
        return;
      }
      upRes.on('error', () => res.destroy());
      upRes.on('data', (c: Buffer) => (t.bytesIn += c.length));
      (upRes as Readable).pipe(res as unknown as NodeJS.WritableStream);
    });
    up = r;
    ctx.upstreams.add(r);
    cutBeforeDial(ctx, r);
    r.on('close', () => ctx.upstreams.delete(r));
    r.on('timeout', () => r.destroy(Object.assign(new Error('upstream timeout'), { code: 'ETIMEDOUT' })));
    r.on('error', (e: NodeJS.ErrnoException) => {
      if (cut) return;
      const x = upstreamRefusal(host, port, e);
      if (x.code === 'upstream-certificate') ctx.event({ action: 'egress.https', host, port, decision: 'deny', code: x.code, reason: x.reason, rule: x.rule, address: conn.address, details: { method, path: shown(path), ...x.details } });
      if (!res.headersSent) refuse(502, x, path);
      else res.destroy();
    });
    r.on('drain', () => (req as Readable).resume());
    return r;
  };
  const cutWith = (status: number, r: Refusal) => {
    cut = true;
    up?.destroy();
    refuse(status, r, path);
  };
  /** Meters and forwards one chunk; false when the meter cut the request. */
  const send = (c: Buffer): boolean => {
    if (cut) return false;
    const o = meterTake(ctx, conn.meterKey, host, port, c.length, t.bytesOut, 'the request was cut');
    if (o) {
      ctx.violation({ kind: 'upload-limit', host, port, reason: o.reason, details: o.details });
      cutWith(403, o);
      return false;
    }
    t.bytesOut += c.length;
    return open().write(c);
  };
  if (d.detectors.length > 0) {
    // Scanned as it streams, within bounded memory (scan-stream.ts).
    scanBody(req as Readable, {
      detectors: d.detectors,
      url: pathAndQuery,
      headers: [],
      encoding: req.headers['content-encoding'] as string | undefined,
      contentType: req.headers['content-type'] as string | undefined,
      budget: ctx.budget,
      maxDecodedBytes: ctx.maxScanBytes,
      idleMs: ctx.bodyIdleMs,
      carry: carryFor(ctx, conn.meterKey),
    }, {
      data: (c) => send(c),
      end: () => {
        if (!cut) open().end();
      },
      refuse: (r, hit, sent) => {
        const details = hit ? { dlp: { detector: hit.detector, via: hit.via, where: hit.where, digest: ctx.digest?.(hit.match), method, path, sentBefore: sent } } : { method, path, sentBefore: sent };
        cutWith(r.code === 'busy' ? 503 : 403, { ...r, details: { ...r.details, ...details } });
      },
    });
    return;
  }
  // Not scanned (no detectors): metered as it streams, cut at the limit.
  (req as Readable).on('data', (c: Buffer) => {
    if (!send(c)) (req as Readable).pause();
  });
  (req as Readable).on('end', () => {
    if (!cut) open().end();
  });
}
