/**
 * CONNECT: an admitted tunnel is pinned to the address admission checked, and stays
 * opaque (its bytes are never parsed as further proxy requests); every byte the agent
 * sends through it is counted against the upload meter, and the chunk that would pass
 * the limit is not forwarded. A refusal answers 403 with its reason code in the status
 * line (clients print that line; most never read a CONNECT's body).
 */
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { splitAuthority, type ProxyContext } from './context.js';
import { statusText, type ReasonCode } from './reasons.js';
import { cutBeforeDial } from './upstream.js';

export async function handleConnect(ctx: ProxyContext, req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
  client.on('error', () => client.destroy());
  const target = splitAuthority(req.url ?? '', 443);
  if (!target) {
    client.end('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nagentbox: CONNECT needs host:port\n');
    return;
  }
  const { port } = target;
  const verdict = await ctx.admissions.admit(target.host, port, { kind: 'tunnel', purpose: 'over an encrypted tunnel (what it sends cannot be inspected)' });
  const host = verdict.host;
  if (!verdict.ok) {
    ctx.event({ action: 'egress.connect', host, port, decision: 'deny', code: verdict.code, reason: verdict.reason, rule: verdict.rule, address: undefined, details: verdict.details });
    if (verdict.code === 'dlp') ctx.violation({ kind: 'dlp', host, port, reason: verdict.reason, details: (verdict.details.dlp as Record<string, unknown>) ?? {} });
    refuseTunnel(ctx, client, host, port, verdict.code, verdict.reason);
    return;
  }
  if (client.destroyed) return;
  // A host the manifest inspects, where nothing can decrypt: refused, never passed blind.
  const must = ctx.http?.inspects(host);
  if (must && !ctx.tls) {
    const reason = `${host}:${port} must be inspected (${must === 'dlp' ? 'egress.dlp' : must === 'credential' ? 'a brokered credential' : must === 'rules' ? 'egress.http rules' : 'egress.http inspect'}) and ${ctx.noTls ?? 'no TLS can be terminated here'}; the tunnel was refused. Use plain HTTP through the proxy, or set egress.http inspect: false for the host`;
    ctx.event({ action: 'egress.connect', host, port, decision: 'deny', code: 'uninspectable', reason, rule: verdict.rule, address: undefined, details: { inspect: must } });
    refuseTunnel(ctx, client, host, port, 'uninspectable', reason);
    return;
  }
  // A host the manifest inspects: TLS is terminated and each request decided (inspect.ts).
  const why = ctx.tls ? must : undefined;
  if (why) {
    const { terminateTls } = await import('./inspect.js');
    return terminateTls(ctx, client, head, verdict, port, why);
  }
  ctx.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'granted', rule: verdict.rule, address: verdict.address, details: verdict.details });
  const upstream = connect({ host: verdict.address, port, timeout: ctx.connectTimeoutMs });
  if (cutBeforeDial(ctx, upstream)) return void client.destroy();
  ctx.sockets.add(upstream);
  const t = ctx.trackOpen({ kind: 'tunnel', host, port, address: verdict.address });
  let cut = false;
  const finish = () => {
    upstream.destroy();
    client.destroy();
  };
  /** Forwards agent bytes while the destination and the session stay under the upload threshold. */
  const send = (c: Buffer): boolean => {
    if (cut) return false;
    const meter = ctx.upload;
    if (meter) {
      const over = meter.wouldRefuse(verdict.meterKey, c.length, Date.now());
      if (over || !meter.take(verdict.meterKey, c.length, Date.now())) {
        cut = true;
        const limit = over === 'session' ? `${meter.sessionLimit} bytes from the whole session` : `${meter.limit} bytes`;
        const reason = `upload to ${host}:${port} would pass ${limit} within ${meter.windowMs / 1000}s (egress.${over === 'session' ? 'maxSessionUploadBytes' : 'maxUploadBytes'}); the tunnel was cut`;
        const d = { limit: over === 'session' ? meter.sessionLimit : meter.limit, windowSeconds: meter.windowMs / 1000, sentInWindow: meter.used(verdict.meterKey, Date.now()), sessionSentInWindow: meter.usedBySession(Date.now()), refusedChunk: c.length, meterKey: verdict.meterKey };
        ctx.event({ action: 'egress.connect', host, port, decision: 'deny', code: 'upload-limit', reason, rule: 'egress.maxUploadBytes', address: verdict.address, bytesIn: t.bytesIn, bytesOut: t.bytesOut, details: d });
        ctx.violation({ kind: 'upload-limit', host, port, reason, details: d });
        finish();
        return false;
      }
    }
    t.bytesOut += c.length;
    if (!upstream.write(c)) client.pause();
    return true;
  };
  upstream.once('connect', () => {
    upstream.setTimeout(0);
    // No Nagle on either side: a relay that waits for full segments adds a delayed-ACK
    // round (~40 ms) to every exchange of small writes (TLS handshakes, requests).
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0 && !send(head)) return;
    client.on('data', (c: Buffer) => void send(c));
    client.on('end', () => upstream.end());
    upstream.on('drain', () => client.resume());
    upstream.on('data', (c: Buffer) => (t.bytesIn += c.length));
    upstream.pipe(client);
  });
  upstream.once('timeout', finish);
  upstream.once('error', () => {
    if (!client.destroyed && t.bytesIn === 0 && t.bytesOut === 0) client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n');
    finish();
  });
  client.once('error', finish);
  upstream.once('close', () => {
    ctx.sockets.delete(upstream);
    client.destroy();
    ctx.trackClose(t);
    ctx.event({ action: 'egress.connect', host, port, decision: 'allow', reason: 'closed', rule: verdict.rule, address: verdict.address, bytesIn: t.bytesIn, bytesOut: t.bytesOut });
  });
  client.once('close', () => upstream.destroy());
}

/** The 403 a refused CONNECT gets: the reason code in the status line, the reason in the body. */
function refuseTunnel(ctx: ProxyContext, client: Socket, host: string, port: number, code: ReasonCode, reason: string): void {
  const body = ctx.denyBody(host, port, reason);
  if (!client.destroyed) client.end(`HTTP/1.1 403 ${statusText({ code })}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
