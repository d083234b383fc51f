/**
 * A WebSocket upgrade, through a decrypted tunnel (wss://) or in plain HTTP (ws://, as
 * an absolute-form request to the proxy or inside a CONNECT tunnel): decided as a
 * request (decrypted.decide: rules, policy, DLP on the URL and headers, credentials),
 * then relayed both ways and metered. With DLP every message the agent sends is parsed
 * and scanned before it is forwarded (websocket.ts).
 *
 * Only a WebSocket handshake passes: a GET without a body, nothing pipelined behind it,
 * and the agent's bytes wait for the server's 101 with Upgrade: websocket. Any other
 * "upgrade" would turn the rest of the connection into unchecked raw bytes.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { hitName, isUndecodable, scanRequest } from '../policy/dlp.js';
import { bytesAsText, type View } from '../policy/decoders.js';
import { carryFor, type OpenExchange, type ProxyContext } from './context.js';
import { authorityOk, decide, meterTake, originForm, type ReadTarget } from './decrypted.js';
import { refusal, statusText, type Refusal } from './reasons.js';
import { upstreamRefusal } from './upstream.js';
import { agreedExtensions, closeFrame, FrameScanner, offeredExtensions } from './websocket.js';

/** Where an upgrade goes: an admitted host, over TLS (a decrypted tunnel) or not. */
export interface UpgradeTarget extends ReadTarget {
  tls: boolean;
  /** A fresh connection to the admitted address (TLS verified when tls). */
  connect(): Promise<Socket>;
}

/** One upgrade: decided as a request, then relayed both ways and metered. */
export async function relayUpgrade(ctx: ProxyContext, conn: UpgradeTarget, t: OpenExchange, req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
  const { host, port } = conn;
  const action = conn.tls ? 'egress.https' : 'egress.http';
  const method = req.method ?? 'GET';
  socket.on('error', () => socket.destroy());
  const refuse = (status: number, r: Refusal, path: string) => {
    ctx.event({ action, host, port, decision: 'deny', code: r.code, reason: r.reason, rule: r.rule, address: conn.address, details: { method, path, upgrade: req.headers.upgrade ?? null, ...r.details } });
    if (r.code === 'dlp' || r.code === 'placeholder') ctx.violation({ kind: 'dlp', host, port, reason: r.reason, details: (r.details.dlp as Record<string, unknown>) ?? {} });
    const body = ctx.denyBody(host, port, r.reason);
    socket.end(`HTTP/1.1 ${status} ${status === 403 ? statusText(r) : 'Bad Gateway (agentbox)'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  };
  const pathAndQuery = originForm(req, conn, ctx.canonical);
  if (!authorityOk(req, conn, ctx.canonical) || pathAndQuery === undefined) return refuse(403, refusal('host-mismatch', `the upgrade names ${req.headers.host ?? 'no host'}, not ${host}:${port}`), req.url ?? '');
  // Only a WebSocket handshake: a GET without a body, nothing pipelined behind it. Any
  // other "upgrade" would turn the rest of the connection into unchecked raw bytes.
  if (method !== 'GET' || String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined || head.length > 0) {
    return refuse(403, refusal('bad-request', 'only a WebSocket upgrade (GET, Upgrade: websocket, no body, nothing sent before the answer) passes agentbox\'s proxy'), pathAndQuery.split('?')[0]!);
  }
  const d = await decide(ctx, host, port, req, method, pathAndQuery, conn.tls, false);
  if (!d.ok) return refuse(d.status, d.refusal, pathAndQuery.split('?')[0]!);
  let up: Socket;
  try {
    up = await conn.connect();
  } catch (e) {
    return refuse(502, upstreamRefusal(host, port, e as NodeJS.ErrnoException), pathAndQuery);
  }
  const inspectFrames = d.detectors.length > 0;
  const headers: Record<string, string | string[]> = { ...d.headers, host: port === (conn.tls ? 443 : 80) ? host : `${host}:${port}`, connection: 'Upgrade', upgrade: String(req.headers.upgrade ?? '') };
  // Frames are scanned: only an extension agentbox can read (permessage-deflate) is offered.
  if (inspectFrames) {
    const offer = offeredExtensions(req.headers['sec-websocket-extensions']);
    if (offer) headers['sec-websocket-extensions'] = offer;
    else delete headers['sec-websocket-extensions'];
  }
  let text = `${method} ${d.path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) text += `${k}: ${x}\r\n`;
  text += '\r\n';
  ctx.event({ action, host, port, decision: 'allow', reason: 'granted', rule: conn.rule, address: conn.address, details: { method, path: pathAndQuery.split('?')[0], upgrade: headers.upgrade, inspected: conn.inspected, ...(d.injected.length > 0 ? { injected: d.injected } : {}) } });
  let cut = false;
  const send = (c: Buffer) => {
    if (cut) return;
    const o = meterTake(ctx, conn.meterKey, host, port, c.length, t.bytesOut, 'the connection was cut');
    if (o) {
      cut = true;
      ctx.event({ action, host, port, decision: 'deny', code: o.code, reason: o.reason, rule: o.rule, address: conn.address, details: o.details });
      ctx.violation({ kind: 'upload-limit', host, port, reason: o.reason, details: o.details });
      up.destroy();
      socket.destroy();
      return;
    }
    t.bytesOut += c.length;
    if (!up.write(c)) socket.pause();
  };
  // The agent's bytes wait until the server has answered 101 Switching Protocols with
  // Upgrade: websocket; any other answer goes back to the agent and both sides close.
  socket.pause();
  send(Buffer.from(text));
  let answer = Buffer.alloc(0);
  const onHead = (c: Buffer) => {
    answer = Buffer.concat([answer, c]);
    const end = answer.indexOf('\r\n\r\n');
    if (end < 0) {
      if (answer.length > 64 * 1024) {
        up.destroy();
        socket.destroy();
      }
      return;
    }
    up.off('data', onHead);
    t.bytesIn += answer.length;
    const headText = answer.subarray(0, end).toString('latin1');
    const ok = /^HTTP\/1\.1 101\b/.test(headText) && /\r\nupgrade:[ \t]*websocket[ \t]*(\r\n|$)/i.test(`${headText}\r\n`);
    socket.write(answer);
    if (!ok) {
      ctx.event({ action, host, port, decision: 'allow', reason: 'closed', rule: conn.rule, address: conn.address, details: { upgrade: 'refused by the server' } });
      up.destroy();
      socket.end();
      return;
    }
    if (inspectFrames) {
      const agreed = agreedExtensions(headText);
      if (!agreed) {
        ctx.event({ action, host, port, decision: 'deny', code: 'unscannable', reason: 'the server agreed to a WebSocket extension agentbox cannot inspect; the connection was closed', rule: 'egress.dlp', address: conn.address, details: { upgrade: 'websocket' } });
        socket.end(closeFrame(1008, 'agentbox: an extension agentbox cannot inspect', false));
        up.end(closeFrame(1008, 'agentbox', true));
        return;
      }
      const carry = carryFor(ctx, conn.meterKey);
      const frames = new FrameScanner({
        deflate: agreed.deflate,
        maxMessage: ctx.maxScanBytes,
        scan: (payload, binary) => {
          const texts = binary ? [...new Set([payload.toString('utf8'), payload.toString('latin1'), ...(bytesAsText(payload) ? [bytesAsText(payload)!.text] : [])])] : [payload.toString('utf8')];
          const views: View[] = [];
          const r = scanRequest(d.detectors, { url: '', headers: [], body: texts, where: 'frame', carry: carry?.get(), views });
          if (!r) carry?.put(views);
          return r;
        },
        forward: (raw) => send(raw),
        refuse: ({ code, reason, hit }) => {
          cut = true;
          const dlpHit = hit && !isUndecodable(hit) ? hit : undefined;
          const why = dlpHit ? `data-loss prevention: a WebSocket ${dlpHit.where === 'frame' ? 'message' : dlpHit.where} matches detector ${hitName(dlpHit)}; it was not sent and the connection was closed (1008)` : hit && isUndecodable(hit) ? `a WebSocket message could not be fully decoded for data-loss prevention (${hit.undecodable}); the connection was closed` : `${reason}; the connection was closed (${code})`;
          const details = { upgrade: 'websocket', close: code, ...(dlpHit ? { dlp: { detector: dlpHit.detector, via: dlpHit.via, where: 'frame', digest: ctx.digest?.(dlpHit.match) } } : {}) };
          ctx.event({ action, host, port, decision: 'deny', code: dlpHit ? 'dlp' : 'unscannable', reason: why, rule: dlpHit ? `egress.dlp ${dlpHit.detector}` : 'egress.dlp', address: conn.address, details });
          if (dlpHit) ctx.violation({ kind: 'dlp', host, port, reason: why, details: details.dlp! });
          socket.end(closeFrame(code, code === 1008 ? 'agentbox: policy violation (data-loss prevention)' : 'agentbox: refused', false));
          up.end(closeFrame(code, 'agentbox', true));
          setTimeout(() => {
            up.destroy();
            socket.destroy();
          }, 1000).unref();
        },
      });
      socket.on('data', (c: Buffer) => frames.push(c));
      socket.on('close', () => frames.close());
    } else socket.on('data', send);
    socket.resume();
    up.on('data', (d2: Buffer) => (t.bytesIn += d2.length));
    up.pipe(socket);
  };
  up.on('data', onHead);
  up.on('drain', () => socket.resume());
  socket.on('close', () => up.destroy());
  up.on('close', () => socket.destroy());
  up.on('error', () => socket.destroy());
}
