/**
 * The egress proxy's governance layers with real sockets on loopback and the real
 * Cedar engine: per-connection policy (cached per host:port), consent held and
 * answered through the approvals directory, DLP over plain HTTP (decoded bodies,
 * encodings it cannot read, oversized bodies), and the upload threshold on CONNECT
 * tunnels, cut at the byte. Attacks tried: a wildcard grant reaching a host policy
 * forbids, parallel connections riding one "allow once", `consent: *` aimed at an
 * internal address, a key hidden by gzip or percent-encoding, an unknown encoding,
 * and a tunnel that tries to send past the threshold in one write.
 */
import { mkdtempSync } from 'node:fs';
import { createServer as createHttp, request, type Server } from 'node:http';
import { connect, createServer as createTcp, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerApproval, ConsentBroker, pendingApprovals } from '../../src/egress/consent.js';
import { EgressProxy, splitAuthority, type EgressEvent, type ProxyOptions, type Violation } from '../../src/egress/proxy.js';
import { compileDetectors, UploadMeter } from '../../src/policy/dlp.js';
import { PolicyEngine } from '../../src/host/cedar-engine.js';
import { agentEntity, connectRequest, NO_LABELS } from '../../src/policy/entities.js';
import { schemaSource } from '../../src/host/policy-files.js';
import { model } from '../helpers/load.js';

let sink: Server;
let sinkPort = 0;
const received: { url: string; body: Buffer }[] = [];
let tcpSink: ReturnType<typeof createTcp>;
let tcpPort = 0;
let tcpBytes = 0;

async function listen(s: Server | ReturnType<typeof createTcp>): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

interface Started {
  proxy: EgressProxy;
  port: number;
  events: EgressEvent[];
  violations: Violation[];
  policyCalls: string[];
}

async function start(manifestExtra: string, extra: Partial<ProxyOptions> & { withPolicy?: string } = {}): Promise<Started> {
  const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: gov }
agent: { command: [/bin/true] }
${manifestExtra}`);
  const events: EgressEvent[] = [];
  const violations: Violation[] = [];
  const policyCalls: string[] = [];
  const opts: ProxyOptions = {
    rules: { grants: m.grants.net, denies: m.denies.net },
    agent: m.name,
    onEvent: (e) => events.push(e),
    onViolation: (v) => violations.push(v),
    resolve: async (h) => (h.endsWith('.example.com') ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }))),
    ...extra,
  };
  if (extra.withPolicy) {
    const r = PolicyEngine.load([{ file: 'org.cedar', text: extra.withPolicy }], schemaSource());
    if (!r.engine) throw new Error(JSON.stringify(r.problems));
    const e = r.engine;
    const agent = agentEntity({ name: 'gov', classification: 'unclassified', presets: [], ttlSeconds: 60, hasNetwork: true, consent: false, dlp: false, runtime: 'process', snapshot: 'revert' });
    opts.policy = (host, port, consented) => {
      policyCalls.push(`${host}:${port}`);
      const v = e.authorize(connectRequest(agent, host, port, NO_LABELS, 'run', consented));
      return { allow: v.decision === 'allow', ids: v.forbiddenBy.map((p) => p.id), reason: v.forbiddenBy.map((p) => p.reason).join('; ') };
    };
  }
  const proxy = new EgressProxy(opts);
  const addr = await proxy.listen({ host: '127.0.0.1', port: 0 });
  return { proxy, port: Number(addr.split(':').pop()), events, violations, policyCalls };
}

/** A plain-HTTP request through the proxy. */
function viaProxy(p: Started, url: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: '127.0.0.1', port: p.port, method: body === undefined ? 'GET' : 'POST', path: url, headers: { host: u.host, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
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
      received.push({ url: req.url ?? '', body: Buffer.concat(chunks) });
      res.end('ok');
    });
  });
  sinkPort = await listen(sink);
  tcpSink = createTcp((c) => {
    c.on('data', (d) => (tcpBytes += d.length));
    c.on('error', () => undefined);
  });
  tcpPort = await listen(tcpSink);
});

afterAll(() => {
  sink.close();
  tcpSink.close();
});

describe('organisation policy per connection', () => {
  it('a wildcard grant does not reach a host policy forbids; decisions are cached per host:port and carry the policy ids', async () => {
    const p = await start(`capabilities: [net:connect:*.example.com:${sinkPort}]`, {
      withPolicy: '@id("no-paste")\n@reason("paste sites leak data")\nforbid (principal, action == Agentbox::Action::"connect", resource) when { resource.name like "paste.*" };',
    });
    const denied = await viaProxy(p, `http://paste.example.com:${sinkPort}/x`);
    expect(denied.status).toBe(403);
    expect(denied.text).toMatch(/organisation policy forbids it: paste sites leak data/);
    // The allowed name passes policy and then meets the rebinding check (it resolves to loopback).
    const other = await viaProxy(p, `http://docs.example.com:${sinkPort}/x`);
    expect(other.status).toBe(403);
    expect(other.text).toMatch(/DNS rebinding/);
    await viaProxy(p, `http://paste.example.com:${sinkPort}/y`);
    expect(p.policyCalls).toEqual([`paste.example.com:${sinkPort}`, `docs.example.com:${sinkPort}`]);
    const pasteEvents = p.events.filter((e) => e.host === 'paste.example.com');
    expect(pasteEvents.map((e) => e.details?.policy)).toEqual([
      { decision: 'deny', ids: ['no-paste'], cached: false },
      { decision: 'deny', ids: ['no-paste'], cached: true },
    ]);
    expect(p.events.find((e) => e.host === 'docs.example.com')?.details?.policy).toEqual({ decision: 'allow', ids: [], cached: false });
    await p.proxy.close();
  });
});

describe('consent', () => {
  const state = mkdtempSync(join(tmpdir(), 'agentbox-consent-'));

  async function withConsent(ask: string, timeoutSeconds: number) {
    const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: gov }
agent: { command: [/bin/true] }
egress: { consent: { ask: [${JSON.stringify(ask)}] } }`);
    const broker = new ConsentBroker({ state, session: 'gov-test', agent: 'gov', timeoutSeconds, tty: false, log: () => undefined, pollMs: 20 });
    let asked = 0;
    const p = await start('', {
      consent: {
        hosts: m.egress.consent!.hosts,
        ask: async (host, port, purpose) => {
          asked++;
          let id = '';
          const a = await broker.ask({ host, port, purpose }, (r) => (id = r.id));
          return { ...a, id };
        },
      },
    });
    return { p, broker, asked: () => asked };
  }

  async function nextRequest(): Promise<string> {
    for (let i = 0; i < 200; i++) {
      const r = pendingApprovals(state);
      if (r.length > 0) return r[0]!.id;
      await new Promise((x) => setTimeout(x, 10));
    }
    throw new Error('no consent request appeared');
  }

  it('holds the connection until approved once; the next connection asks again', async () => {
    const { p, asked } = await withConsent(`127.0.0.1:${sinkPort}`, 10);
    const first = viaProxy(p, `http://127.0.0.1:${sinkPort}/once`, 'payload');
    const id = await nextRequest();
    expect(pendingApprovals(state)[0]!.question).toBe(`gov wants to connect to 127.0.0.1:${sinkPort} to upload 7 bytes (POST /once). Allow once / allow for this session / deny?`);
    answerApproval(state, id, 'once', 'alice on /dev/pts/1');
    expect((await first).status).toBe(200);
    expect(received.at(-1)).toMatchObject({ url: '/once' });
    const second = viaProxy(p, `http://127.0.0.1:${sinkPort}/again`);
    answerApproval(state, await nextRequest(), 'deny', 'alice');
    expect((await second).status).toBe(403);
    // A deny is remembered for the session: no third question.
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/third`)).text).toMatch(/denied this host earlier/);
    expect(asked()).toBe(2);
    const consent = p.events.filter((e) => e.decision !== undefined && e.details?.consent).map((e) => e.details!.consent);
    expect(consent[0]).toMatchObject({ answer: 'once', by: 'alice on /dev/pts/1', via: 'cli' });
    await p.proxy.close();
  });

  it('parallel connections wait on one question; "once" admits only the one that asked', async () => {
    const { p, asked } = await withConsent(`127.0.0.1:${sinkPort}`, 10);
    const a = viaProxy(p, `http://127.0.0.1:${sinkPort}/a`);
    const b = viaProxy(p, `http://127.0.0.1:${sinkPort}/b`);
    const id = await nextRequest();
    await new Promise((x) => setTimeout(x, 50));
    expect(pendingApprovals(state)).toHaveLength(1);
    answerApproval(state, id, 'once', 'bob');
    // The waiting connection asks anew; allow it for the session.
    const id2 = await nextRequest();
    expect(id2).not.toBe(id);
    answerApproval(state, id2, 'session', 'bob');
    const [ra, rb] = await Promise.all([a, b]);
    expect([ra.status, rb.status]).toEqual([200, 200]);
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/c`)).status).toBe(200);
    expect(asked()).toBe(2);
    await p.proxy.close();
  });

  it('no answer within the timeout is a deny', async () => {
    const { p } = await withConsent(`127.0.0.1:${sinkPort}`, 1);
    const t0 = Date.now();
    const r = await viaProxy(p, `http://127.0.0.1:${sinkPort}/late`);
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/nobody answered the consent request in time/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(pendingApprovals(state)).toHaveLength(0);
    await p.proxy.close();
  });

  it('"consent: *" never asks about an internal address; only an entry naming it can', async () => {
    const { p, asked } = await withConsent('*', 5);
    const r = await viaProxy(p, `http://127.0.0.1:${sinkPort}/meta`);
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/internal address; consent for it needs an entry naming it/);
    const md = await viaProxy(p, 'http://169.254.169.254/latest/meta-data/');
    expect(md.status).toBe(403);
    expect(asked()).toBe(0);
    await p.proxy.close();
  });

  it('at most 4 questions wait at once; more are refused without asking', async () => {
    const { p, broker, asked } = await withConsent('*', 30);
    const held = [1, 2, 3, 4, 5, 6].map((i) => viaProxy(p, `http://h${i}.example.com:${sinkPort}/`).catch(() => ({ status: 0, text: 'cut' })));
    for (let i = 0; i < 100 && pendingApprovals(state).length < 4; i++) await new Promise((x) => setTimeout(x, 10));
    await new Promise((x) => setTimeout(x, 100));
    expect(pendingApprovals(state)).toHaveLength(4);
    expect(asked()).toBe(4);
    broker.close();
    const results = await Promise.all(held);
    expect(results.filter((r) => /consent questions are already waiting/.test(r.text))).toHaveLength(2);
    await p.proxy.close();
  });

  it('a CONNECT target carrying terminal control characters never reaches a question or a log line', async () => {
    const { p, asked } = await withConsent('*', 5);
    const reply = await new Promise<string>((resolve) => {
      const s = connect(p.port, '127.0.0.1');
      let buf = '';
      s.on('data', (d) => (buf += d.toString()));
      s.on('close', () => resolve(buf));
      s.on('error', () => resolve(buf));
      s.write('CONNECT api.example.com\u001b[2K\rtrusted.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n');
      setTimeout(() => s.destroy(), 1000);
    });
    expect(reply).not.toMatch(/200/);
    expect(asked()).toBe(0);
    expect(p.events).toEqual([]);
    // The same check at the proxy's own parser, whatever Node's HTTP parser lets through.
    for (const bad of ['a\u001bb.example.com:443', 'a b:443', 'x\u0007:80', 'h\u202e.com:443', 'h%0d.com:443']) expect(splitAuthority(bad, 443), JSON.stringify(bad)).toBeUndefined();
    expect(splitAuthority('Api.Example.com:8443', 443)).toEqual({ host: 'api.example.com', port: 8443 });
    await p.proxy.close();
  });

  it('closing the proxy (quarantine) denies a held request at once', async () => {
    const { p, broker } = await withConsent(`127.0.0.1:${sinkPort}`, 30);
    const held = viaProxy(p, `http://127.0.0.1:${sinkPort}/held`).catch(() => ({ status: 0, text: 'cut' }));
    await nextRequest();
    broker.close();
    await p.proxy.close();
    expect((await held).status).not.toBe(200);
    expect(pendingApprovals(state)).toHaveLength(0);
  });
});

describe('DLP over plain HTTP', () => {
  const KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n';
  const detectors = compileDetectors({ detectors: ['private-key', 'aws-access-key', 'us-ssn', 'payment-card'], custom: [{ name: 'confidential', marker: 'CONFIDENTIAL', ignoreCase: false }] });

  it('blocks a key in the body, plain, gzipped or form-encoded; the sink never sees it; the event has a digest, not the key', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { dlp: detectors, digest: (m) => `digest-of-${m.length}` });
    const before = received.length;
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/k1`, KEY)).status).toBe(403);
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/k2`, gzipSync(KEY), { 'content-encoding': 'gzip' })).status).toBe(403);
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/k3`, `k=${encodeURIComponent(KEY)}`, { 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(403);
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/k4`, 'x', { 'content-encoding': 'zstd' })).text).toMatch(/cannot be inspected/);
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/fine`, 'quarterly numbers')).status).toBe(200);
    expect(received.slice(before).map((r) => r.url)).toEqual(['/fine']);
    const blocked = p.events.filter((e) => e.details?.dlp);
    expect(blocked.map((e) => (e.details!.dlp as { detector: string }).detector)).toEqual(['private-key', 'private-key', 'private-key']);
    expect(JSON.stringify(p.events)).not.toContain('b3BlbnNzaC1rZXkt');
    expect(JSON.stringify(p.events)).not.toContain('BEGIN OPENSSH');
    expect(p.violations.map((v) => v.kind)).toEqual(['dlp', 'dlp', 'dlp']);
    await p.proxy.close();
  });

  it('a body is never sent unscanned: a compressed one expanding past the scan limit is refused; a long one streams scanned', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { dlp: detectors, maxScanBytes: 1024 });
    const r = await viaProxy(p, `http://127.0.0.1:${sinkPort}/big`, gzipSync(Buffer.alloc(4096, 'a')), { 'content-encoding': 'gzip' }).catch(() => ({ status: 0, text: 'reset' }));
    expect(r.status === 403 || r.status === 0).toBe(true);
    expect(received.some((x) => x.url === '/big')).toBe(false);
    // Past the 1 MiB held whole, the body streams through the scanner: a key at its end is
    // refused and the bytes holding it never reach the server.
    const long = await viaProxy(p, `http://127.0.0.1:${sinkPort}/long`, Buffer.concat([Buffer.alloc(3 * 1024 * 1024, 'a'), Buffer.from(KEY)])).catch(() => ({ status: 0, text: 'reset' }));
    expect(long.status === 403 || long.status === 0).toBe(true);
    expect(received.some((x) => x.url === '/long' && x.body.includes('OPENSSH'))).toBe(false);
    const clean = await viaProxy(p, `http://127.0.0.1:${sinkPort}/clean`, Buffer.alloc(3 * 1024 * 1024, 'a'));
    expect(clean.status).toBe(200);
    await p.proxy.close();
  });
});

describe('upload threshold', () => {
  it('a CONNECT tunnel is cut before the byte that would cross maxUploadBytes', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${tcpPort}]`, { upload: new UploadMeter(50_000, 60_000) });
    tcpBytes = 0;
    const closed = await new Promise<{ reply: string }>((resolve) => {
      const s = connect(p.port, '127.0.0.1');
      let reply = '';
      s.on('data', (d) => {
        reply += d.toString();
        if (reply.includes('200 Connection Established')) {
          s.write(Buffer.alloc(30_000, 1));
          setTimeout(() => s.write(Buffer.alloc(30_000, 2)), 100);
        }
      });
      s.on('close', () => resolve({ reply }));
      s.on('error', () => undefined);
      s.write(`CONNECT 127.0.0.1:${tcpPort} HTTP/1.1\r\nHost: 127.0.0.1:${tcpPort}\r\n\r\n`);
    });
    expect(closed.reply).toMatch(/200 Connection Established/);
    await new Promise((x) => setTimeout(x, 100));
    expect(tcpBytes).toBeGreaterThan(0);
    expect(tcpBytes).toBeLessThanOrEqual(50_000);
    expect(p.violations).toEqual([expect.objectContaining({ kind: 'upload-limit', port: tcpPort })]);
    expect(p.events.some((e) => e.reason.includes('egress.maxUploadBytes'))).toBe(true);
    await p.proxy.close();
  });

  it('plain HTTP bodies count against the same threshold', async () => {
    const p = await start(`capabilities: [net:connect:127.0.0.1:${sinkPort}]`, { upload: new UploadMeter(1000, 60_000) });
    expect((await viaProxy(p, `http://127.0.0.1:${sinkPort}/u1`, 'a'.repeat(600))).status).toBe(200);
    const r = await viaProxy(p, `http://127.0.0.1:${sinkPort}/u2`, 'b'.repeat(600));
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/would pass 1000 bytes within 60s/);
    expect(received.some((x) => x.url === '/u2')).toBe(false);
    await p.proxy.close();
  });
});

