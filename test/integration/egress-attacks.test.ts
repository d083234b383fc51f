/**
 * Attacks on the egress proxy's governance found by the attack review, with real sockets
 * on loopback (names resolve to loopback by an injected resolver: there is no DNS here):
 * - the upload threshold counted only bodies: 480 KB of headers and URL passed 2 KB;
 * - each spelling of a host (a trailing dot, every subdomain under a wildcard) had its
 *   own upload budget;
 * - IPv6 literals written non-canonically passed the internal-address check, and with
 *   `consent: *` reached loopback once a person said yes;
 * - DLP scanned only the decoded part of a compressed body and forwarded bytes after the
 *   stream, let UTF-16 bodies through, and looked at host names only after resolving them;
 * - 64 held 16 MiB requests took the launcher from 57 MB to 1.13 GB;
 * - a GET with a body was asked about as "to download", and a "session" answer then
 *   admitted an unasked CONNECT; `consent: *` could ask without bound.
 * Defence: every byte sent upstream is metered, by the admitting grant and per session;
 * addresses are canonical bytes; decoders must consume the whole body and the raw bytes
 * are scanned too; bodies are decoded by charset or BOM or refused; host names are
 * scanned before any lookup; a per-session buffer budget, connection cap and body idle
 * timeout; consent questions say what is sent, answers are scoped to that kind of use,
 * and questions per session are bounded.
 */
import { createServer as createHttp, request, type Server } from 'node:http';
import { connect, createServer as createTcp, type AddressInfo } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressProxy, type EgressEvent, type ProxyOptions, type Violation } from '../../src/egress/proxy.js';
import { compileDetectors, UploadMeter } from '../../src/policy/dlp.js';
import { model } from '../helpers/load.js';

let sink: Server;
let sinkPort = 0;
const received: { url: string; headers: Record<string, unknown>; body: Buffer }[] = [];
let tcpSink: ReturnType<typeof createTcp>;
let tcpPort = 0;

async function listen(s: Server | ReturnType<typeof createTcp>): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

interface Started {
  proxy: EgressProxy;
  port: number;
  events: EgressEvent[];
  violations: Violation[];
  resolved: string[];
  asked: { host: string; port: number; purpose: string }[];
}

async function start(caps: string, extra: Omit<Partial<ProxyOptions>, 'consent'> & { consent?: 'ask-all' | 'loopback'; answer?: 'once' | 'session' | 'deny'; maxQuestions?: number } = {}): Promise<Started> {
  const m = model(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: atk }\nagent: { command: [/bin/true] }\n${caps}`);
  const events: EgressEvent[] = [];
  const violations: Violation[] = [];
  const resolved: string[] = [];
  const asked: Started['asked'] = [];
  const { consent, answer, maxQuestions, ...rest } = extra;
  const proxy = new EgressProxy({
    rules: { grants: m.grants.net, denies: m.denies.net },
    agent: 'atk',
    onEvent: (e) => events.push(e),
    onViolation: (v) => violations.push(v),
    resolve: async (h) => {
      resolved.push(h);
      return h.endsWith('example.com') ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }));
    },
    ...(consent
      ? {
          consent: {
            // Consent for `*` never reaches an internal address; the loopback sink is asked about by its literal address.
            hosts: [consent === 'loopback' ? { host: '127.0.0.1', hostKind: 'ipv4', port: sinkPort, source: { origin: 'manifest', file: 'm', pointer: 'egress.consent.ask[0]', text: `127.0.0.1:${sinkPort}` } } : { host: '*', hostKind: 'any', port: 'any', source: { origin: 'manifest', file: 'm', pointer: 'egress.consent', text: 'consent: ask' } }],
            ...(maxQuestions !== undefined ? { maxQuestions } : {}),
            ask: async (host, port, purpose) => {
              asked.push({ host, port, purpose });
              return { answer: answer ?? 'once', by: 'tester', via: 'cli', at: new Date().toISOString(), id: String(asked.length) };
            },
          },
        }
      : {}),
    ...rest,
  });
  const addr = await proxy.listen({ host: '127.0.0.1', port: 0 });
  return { proxy, port: Number(addr.split(':').pop()), events, violations, resolved, asked };
}

/** A raw HTTP request through the proxy; resolves with the status line and body. */
function raw(p: Started, text: string | Buffer, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(p.port, '127.0.0.1');
    let buf = '';
    const done = () => {
      s.destroy();
      resolve(buf);
    };
    s.on('data', (d) => (buf += d.toString()));
    s.on('close', done);
    s.on('error', done);
    setTimeout(done, timeoutMs);
    s.write(text);
  });
}

function post(p: Started, url: string, body: Buffer | string, headers: Record<string, string> = {}, method = 'POST'): Promise<{ status: number; statusMessage: string; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: '127.0.0.1', port: p.port, method, path: url, headers: { host: u.host, 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, statusMessage: res.statusMessage ?? '', text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  sink = createHttp((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      res.end('ok');
    });
  });
  sink.maxHeadersCount = 0;
  sinkPort = await listen(sink);
  tcpSink = createTcp((c) => {
    c.on('data', () => undefined);
    c.on('error', () => undefined);
  });
  tcpPort = await listen(tcpSink);
});
afterAll(() => {
  sink.close();
  tcpSink.close();
});

describe('the upload threshold counts every byte and every spelling', () => {
  it('headers and the URL count: 48 requests of 10 KB headers and URL do not pass a 2 KB threshold', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { upload: new UploadMeter(2000, 60_000) });
    const before = received.length;
    let refused = 0;
    for (let i = 0; i < 48; i++) {
      const r = await post(p, `http://127.0.0.1:${sinkPort}/${'q'.repeat(2000)}`, '', { 'x-data': 'y'.repeat(8000) }, 'GET');
      if (r.status === 403 && r.statusMessage === 'Forbidden by agentbox (upload-limit)') refused++;
    }
    expect(refused).toBe(48);
    expect(received.length).toBe(before);
    expect(p.violations[0]).toEqual(expect.objectContaining({ kind: 'upload-limit' }));
    // A small request passes, and the bytes it sent upstream include its headers.
    const ok = await post(p, `http://127.0.0.1:${sinkPort}/small`, 'abc');
    expect(ok.status).toBe(200);
    const closed = p.events.find((e) => e.reason === 'closed' && e.action === 'egress.http')!;
    expect(closed.bytesOut).toBeGreaterThan(3 + 'POST /small HTTP/1.1\r\n'.length);
    await p.proxy.close();
  });

  it('a trailing dot and every subdomain under one wildcard grant share one budget; the session has its own cap', async () => {
    const p = await start(`capabilities: ["net:connect:*.example.com:${sinkPort}", "net:connect:127.0.0.1:${sinkPort}"]`, { upload: new UploadMeter(3000, 60_000, 3500) });
    const body = 'z'.repeat(1200);
    expect((await post(p, `http://a.example.com:${sinkPort}/1`, body)).status).toBe(200);
    expect((await post(p, `http://a.example.com.:${sinkPort}/2`, body)).status).toBe(200);
    // b.example.com is another host but the same grant: the budget is spent.
    expect((await post(p, `http://b.example.com:${sinkPort}/3`, body)).status).toBe(403);
    // Another grant has its own budget, but the session's cap (3500) still bounds the sum.
    expect((await post(p, `http://127.0.0.1:${sinkPort}/4`, body)).status).toBe(403);
    expect(p.violations.map((v) => String(v.reason))).toEqual([expect.stringMatching(/maxUploadBytes/), expect.stringMatching(/whole session/)]);
    await p.proxy.close();
  });
});

describe('internal addresses written any way', () => {
  it('non-canonical IPv6 spellings of loopback and metadata are refused under consent: * without asking', async () => {
    const p = await start('extends: [organizer]\ncapabilities: []', { consent: 'ask-all', answer: 'session' });
    for (const host of ['[::ffff:7f00:1]', '[0:0:0:0:0:0:0:1]', '[::0:1]', '[::ffff:a9fe:a9fe]', '[::ffff:127.0.0.1]', '[64:ff9b::7f00:1]']) {
      const r = await raw(p, `CONNECT ${host}:${tcpPort} HTTP/1.1\r\nHost: ${host}:${tcpPort}\r\n\r\n`);
      expect(r, host).toMatch(/^HTTP\/1\.1 403 Forbidden by agentbox \(internal-address\)/);
    }
    expect(p.asked).toEqual([]);
    // The decisions name the canonical address.
    expect(p.events.map((e) => e.host)).toEqual(['::ffff:7f00:1', '::1', '::1', '::ffff:a9fe:a9fe', '::ffff:7f00:1', '64:ff9b::7f00:1']);
    await p.proxy.close();
  });

  it('a granted literal address is granted in every spelling of it, and only it', async () => {
    const p = await start(`capabilities: ["net:connect:127.0.0.1:${tcpPort}"]`);
    expect(await raw(p, `CONNECT 127.0.0.1:${tcpPort} HTTP/1.1\r\n\r\n`, 500)).toMatch(/^HTTP\/1\.1 200/);
    expect(await raw(p, `CONNECT 127.0.1.1:${tcpPort} HTTP/1.1\r\n\r\n`, 500)).toMatch(/403/);
    await p.proxy.close();
  });
});

describe('what DLP sees', () => {
  const dlp = compileDetectors({ detectors: ['private-key', 'aws-access-key'], custom: [] });
  // A whole key (a header alone, as documentation writes it, is not a key).
  const KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----';

  it('bytes after a compressed stream are refused, and the raw body is scanned too', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { dlp });
    const before = received.length;
    for (const [enc, compress] of [['deflate', deflateSync], ['br', brotliCompressSync], ['gzip', gzipSync]] as const) {
      const body = Buffer.concat([compress(Buffer.from('harmless')), Buffer.from(`\n${KEY}\n`)]);
      const r = await post(p, `http://127.0.0.1:${sinkPort}/${enc}`, body, { 'content-encoding': enc });
      expect(r.status, enc).toBe(403);
    }
    expect(received.length).toBe(before);
    await p.proxy.close();
  });

  it('UTF-16 bodies are read by charset or BOM; an unknown charset is refused', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { dlp });
    const before = received.length;
    const le = Buffer.from(`{"k":"${KEY}"}`, 'utf16le');
    const be = Buffer.from(le).swap16();
    expect((await post(p, `http://127.0.0.1:${sinkPort}/le`, le, { 'content-type': 'application/json; charset=utf-16le' })).status).toBe(403);
    expect((await post(p, `http://127.0.0.1:${sinkPort}/be`, be, { 'content-type': 'application/json; charset=UTF-16BE' })).status).toBe(403);
    expect((await post(p, `http://127.0.0.1:${sinkPort}/bom`, Buffer.concat([Buffer.from([0xfe, 0xff]), be]))).status).toBe(403);
    const odd = await post(p, `http://127.0.0.1:${sinkPort}/odd`, 'hello', { 'content-type': 'text/plain; charset=x-mac-klingon' });
    expect(odd.status).toBe(403);
    expect(odd.text).toMatch(/charset "x-mac-klingon" cannot be read/);
    expect(received.length).toBe(before);
    expect((await post(p, `http://127.0.0.1:${sinkPort}/fine`, Buffer.from('fine', 'utf16le'), { 'content-type': 'text/plain; charset=utf-16le' })).status).toBe(200);
    await p.proxy.close();
  });

  it('a secret in a host name is refused before it is looked up, for CONNECT and plain HTTP', async () => {
    const p = await start(`capabilities: ["net:connect:*.example.com:${sinkPort}"]`, { dlp });
    const leaky = `akia2e3ngx5m4hyt7q2w.example.com`;
    const c = await raw(p, `CONNECT ${leaky}:${sinkPort} HTTP/1.1\r\n\r\n`);
    expect(c).toMatch(/^HTTP\/1\.1 403 Forbidden by agentbox \(dlp\)/);
    const h = await post(p, `http://${leaky}:${sinkPort}/x`, 'a');
    expect(h.status).toBe(403);
    expect(p.resolved).not.toContain(leaky);
    expect(p.violations.map((v) => v.details.where)).toEqual(['host', 'host']);
    await p.proxy.close();
  });
});

describe('the proxy\'s own resources', () => {
  it('held request bodies share a budget: beyond it the request is answered 503, not buffered', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { dlp: compileDetectors({ detectors: ['private-key'], custom: [] }), maxBufferBytes: 1024 * 1024 });
    // Four requests each promise 512 KiB and send it slowly: they cannot all be held.
    const sockets = Array.from({ length: 4 }, () => connect(p.port, '127.0.0.1'));
    const answers = sockets.map((s) => new Promise<string>((r) => {
      let buf = '';
      s.on('data', (d) => (buf += d.toString()));
      s.on('close', () => r(buf));
      s.on('error', () => r(buf));
    }));
    for (const s of sockets) s.write(`POST http://127.0.0.1:${sinkPort}/held HTTP/1.1\r\nHost: 127.0.0.1:${sinkPort}\r\nContent-Length: ${512 * 1024}\r\n\r\n`);
    for (let i = 0; i < 8; i++) {
      for (const s of sockets) if (!s.destroyed) s.write(Buffer.alloc(64 * 1024, 0x61));
      await new Promise((r) => setTimeout(r, 20));
    }
    const out = await Promise.all(answers.map((a, i) => Promise.race([a, new Promise<string>((r) => setTimeout(() => (sockets[i]!.destroy(), r('timeout')), 3000))])));
    expect(out.filter((o) => /^HTTP\/1\.1 503/.test(o)).length).toBeGreaterThanOrEqual(1);
    await p.proxy.close();
  });

  it('at most maxConnections at once: the next one is answered 503', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${tcpPort}]`, { maxConnections: 4 });
    const held = await Promise.all(Array.from({ length: 4 }, () => new Promise<ReturnType<typeof connect>>((r) => {
      const s = connect(p.port, '127.0.0.1', () => r(s));
    })));
    await new Promise((r) => setTimeout(r, 50));
    expect(await raw(p, `CONNECT 127.0.0.1:${tcpPort} HTTP/1.1\r\n\r\n`, 1000)).toMatch(/^HTTP\/1\.1 503 Busy/);
    for (const s of held) s.destroy();
    await p.proxy.close();
  });

  it('a body that stops arriving is cut after the idle timeout', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { dlp: compileDetectors({ detectors: ['private-key'], custom: [] }), bodyIdleMs: 300 });
    const t0 = Date.now();
    const r = await raw(p, `POST http://127.0.0.1:${sinkPort}/stall HTTP/1.1\r\nHost: 127.0.0.1:${sinkPort}\r\nContent-Length: 100\r\n\r\nabc`, 3000);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(r).toMatch(/stalled/);
    await p.proxy.close();
  });
});

describe('consent says what it is asked for, and no more', () => {
  it('a GET with a body is asked about as an upload of N bytes, with its query', async () => {
    const p = await start('extends: [organizer]\ncapabilities: []', { consent: 'loopback', answer: 'deny' });
    expect((await post(p, `http://127.0.0.1:${sinkPort}/v1/files?name=report`, 'x'.repeat(10240), {}, 'GET')).status).toBe(403);
    expect(p.asked[0]!.purpose).toBe('to upload 10240 bytes (GET /v1/files?name=report)');
    await p.proxy.close();
  });

  it('a "session" answer for downloads does not admit an upload or a tunnel: those are asked anew', async () => {
    const p = await start('extends: [organizer]\ncapabilities: []', { consent: 'loopback', answer: 'session' });
    expect((await post(p, `http://127.0.0.1:${sinkPort}/a`, '', {}, 'GET')).status).toBe(200);
    expect((await post(p, `http://127.0.0.1:${sinkPort}/b`, '', {}, 'GET')).status).toBe(200);
    expect(p.asked).toHaveLength(1);
    expect((await post(p, `http://127.0.0.1:${sinkPort}/c`, 'data')).status).toBe(200);
    await raw(p, `CONNECT 127.0.0.1:${sinkPort} HTTP/1.1\r\n\r\n`, 500);
    expect(p.asked.map((a) => a.purpose)).toEqual(['to download (GET /a)', 'to upload 4 bytes (POST /c)', 'over an encrypted tunnel (what it sends cannot be inspected)']);
    await p.proxy.close();
  });

  it('questions per session are bounded: beyond maxQuestions, hosts are denied without asking', async () => {
    const p = await start('extends: [organizer]\ncapabilities: []', { consent: 'ask-all', answer: 'deny', maxQuestions: 3 });
    for (let i = 0; i < 6; i++) await post(p, `http://h${i}.example.com:${sinkPort}/`, '', {}, 'GET');
    expect(p.asked).toHaveLength(3);
    expect(p.events.filter((e) => e.code === 'consent-limit')).toHaveLength(3);
    await p.proxy.close();
  });
});
