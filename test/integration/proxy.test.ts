/**
 * Attacks on the egress proxy, with real sockets on loopback:
 * - reaching a host or port outside the allowlist (CONNECT and plain HTTP);
 * - DNS rebinding: an allowlisted name answering with a loopback/private address;
 * - relaying: a plain-HTTP request whose Host header names another host, a second
 *   request on a kept-alive connection to another host, and a CONNECT sent inside an
 *   allowed tunnel;
 * - continuing after the cut: open tunnels and new connections once the proxy closes.
 * Defence: decisions per request with deny-wins, pinned resolved addresses, Host
 * matching, opaque tunnels, and a 403 that says what was refused and why.
 * Name resolution is the one injected part (there is no DNS here): names map to
 * loopback addresses the test controls.
 */
import { createServer as createHttp, type Server } from 'node:http';
import { connect, createServer as createTcp, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressProxy, type EgressEvent } from '../../src/egress/proxy.js';
import { isInternalAddress } from '../../src/egress/addresses.js';
import { model } from '../helpers/load.js';

let sink: Server;
let other: Server;
let sinkPort = 0;
let otherPort = 0;
let otherHits = 0;
let proxy: EgressProxy;
let proxyPort = 0;
const events: EgressEvent[] = [];

async function listen(s: Server | ReturnType<typeof createTcp>): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

/** Sends raw bytes to the proxy and collects everything until the peer closes or `until` matches. */
function raw(text: string, opts: { until?: RegExp; then?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(proxyPort, '127.0.0.1');
    let buf = '';
    let sentThen = false;
    const done = () => {
      s.destroy();
      resolve(buf);
    };
    s.on('data', (d) => {
      buf += d.toString();
      if (opts.then && !sentThen && /\r\n\r\n/.test(buf)) {
        sentThen = true;
        s.write(opts.then);
      }
      if (opts.until && opts.until.test(buf)) done();
    });
    s.on('close', done);
    s.on('error', done);
    setTimeout(done, opts.timeoutMs ?? 2000);
    s.write(text);
  });
}

beforeAll(async () => {
  sink = createHttp((req, res) => res.end(`sink saw ${req.method} ${req.url} host=${req.headers.host}`));
  other = createHttp((_req, res) => {
    otherHits++;
    res.end('other');
  });
  sinkPort = await listen(sink);
  otherPort = await listen(other);
  const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: proxytest }
agent: { command: [/bin/true] }
capabilities:
  - net:connect:sink.example.com:${sinkPort}
  - net:connect:127.0.0.1:${sinkPort}
  - net:connect:rebind.example.com:${otherPort}
  - net:connect:*.wild.example.com:${sinkPort}
  - net:connect:blocked.wild.example.com:${sinkPort}
deny:
  - net:blocked.wild.example.com
`);
  const names: Record<string, string[]> = {
    'sink.example.com': ['127.0.0.1'],
    'rebind.example.com': ['127.0.0.1'],
    'other.example.com': ['127.0.0.1'],
    'a.wild.example.com': ['127.0.0.1'],
    'wild.example.com': ['127.0.0.1'],
    'blocked.wild.example.com': ['127.0.0.1'],
  };
  proxy = new EgressProxy({
    rules: { grants: m.grants.net, denies: m.denies.net },
    agent: 'proxytest',
    onEvent: (e) => events.push(e),
    resolve: async (h) => {
      const a = names[h];
      if (!a) throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' });
      return a;
    },
  });
  proxyPort = Number((await proxy.listen({ host: '127.0.0.1', port: 0 })).split(':').pop());
});
afterAll(async () => {
  await proxy?.close().catch(() => undefined);
  sink?.close();
  other?.close();
});

const connectTo = (authority: string, then = 'GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n') =>
  raw(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, { then, until: /sink saw|other$/ });

describe('egress proxy: allowlist', () => {
  it('a CONNECT to a granted name and port is tunnelled, and its bytes are audited', async () => {
    const r = await connectTo(`sink.example.com:${sinkPort}`);
    expect(r).toMatch(/^HTTP\/1\.1 200 Connection Established/);
    expect(r).toMatch(/sink saw GET \/x/);
    await new Promise((res) => setTimeout(res, 50));
    const closed = events.find((e) => e.host === 'sink.example.com' && e.reason === 'closed');
    expect(closed).toMatchObject({ decision: 'allow', port: sinkPort, address: '127.0.0.1', rule: expect.stringMatching(/capabilities\[0\]/) });
    expect(closed!.bytesIn).toBeGreaterThan(0);
    expect(closed!.bytesOut).toBeGreaterThan(0);
  });

  it('a host outside the allowlist gets a 403 that names what was refused and who can widen it', async () => {
    const r = await raw(`CONNECT other.example.com:${otherPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(r).toMatch(/^HTTP\/1\.1 403 Forbidden/);
    expect(r).toMatch(/agentbox refused the connection to other\.example\.com:\d+\.\nReason: other\.example\.com is not in the allowlist\./);
    expect(r).toMatch(/An administrator can widen the manifest/);
    expect(otherHits).toBe(0);
    expect(events.at(-1)).toMatchObject({ decision: 'deny', host: 'other.example.com', action: 'egress.connect' });
  });

  it('the right host on the wrong port is refused, saying which port is allowed', async () => {
    const r = await raw(`CONNECT sink.example.com:${otherPort} HTTP/1.1\r\n\r\n`);
    expect(r).toMatch(/403/);
    expect(r).toMatch(new RegExp(`allows port ${sinkPort} only`));
  });

  it('wildcards cover subdomains, not the apex; a deny wins over a matching wildcard', async () => {
    expect(await connectTo(`a.wild.example.com:${sinkPort}`)).toMatch(/200 Connection Established/);
    expect(await raw(`CONNECT wild.example.com:${sinkPort} HTTP/1.1\r\n\r\n`)).toMatch(/403/);
    const blocked = await raw(`CONNECT blocked.wild.example.com:${sinkPort} HTTP/1.1\r\n\r\n`);
    expect(blocked).toMatch(/403/);
    expect(blocked).toMatch(/denied by net:blocked\.wild\.example\.com \(deny\[0\]\)/);
  });
});

describe('egress proxy: DNS rebinding', () => {
  it('an allowlisted name resolving to loopback is refused unless that address is itself granted', async () => {
    const r = await raw(`CONNECT rebind.example.com:${otherPort} HTTP/1.1\r\n\r\n`);
    expect(r).toMatch(/403/);
    expect(r).toMatch(/resolves to 127\.0\.0\.1, an internal address that is not itself granted \(DNS rebinding protection\)/);
    expect(otherHits).toBe(0);
    // sink.example.com works only because 127.0.0.1:sinkPort is granted as well (above).
  });
  it('classifies internal addresses, including IPv4-mapped IPv6', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1']) {
      expect(isInternalAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '172.32.0.1', '1.1.1.1', '2606:4700::1111', '::ffff:8.8.8.8']) expect(isInternalAddress(a), a).toBe(false);
  });
});

describe('egress proxy: no relaying', () => {
  it('plain HTTP to a granted host is forwarded with its own Host header', async () => {
    const r = await raw(`GET http://sink.example.com:${sinkPort}/hello?q=1 HTTP/1.1\r\nHost: sink.example.com:${sinkPort}\r\nConnection: close\r\n\r\n`, { until: /sink saw/ });
    expect(r).toMatch(/^HTTP\/1\.1 200/);
    expect(r).toMatch(new RegExp(`sink saw GET /hello\\?q=1 host=sink.example.com:${sinkPort}`));
  });

  it('a Host header naming another host is refused as a relay attempt', async () => {
    const r = await raw(`GET http://sink.example.com:${sinkPort}/ HTTP/1.1\r\nHost: other.example.com:${otherPort}\r\nConnection: close\r\n\r\n`);
    expect(r).toMatch(/403/);
    expect(r).toMatch(/does not match the request target.*relaying through an allowed host is refused/);
    expect(otherHits).toBe(0);
  });

  it('each request on a kept-alive connection is decided on its own', async () => {
    const first = `GET http://sink.example.com:${sinkPort}/1 HTTP/1.1\r\nHost: sink.example.com:${sinkPort}\r\n\r\n`;
    const second = `GET http://other.example.com:${otherPort}/2 HTTP/1.1\r\nHost: other.example.com:${otherPort}\r\n\r\n`;
    const r = await raw(first + second, { timeoutMs: 1500, until: /403 Forbidden[\s\S]*widen/ });
    expect(r).toMatch(/sink saw GET \/1/);
    expect(r).toMatch(/403 Forbidden/);
    expect(otherHits).toBe(0);
  });

  it('a CONNECT sent inside an allowed tunnel goes to the allowed host, never through the proxy', async () => {
    const r = await connectTo(`sink.example.com:${sinkPort}`, `CONNECT other.example.com:${otherPort} HTTP/1.1\r\nHost: other.example.com\r\n\r\n`);
    expect(r).toMatch(/^HTTP\/1\.1 200 Connection Established/);
    expect(r).not.toMatch(/other$/);
    expect(otherHits).toBe(0);
  });

  it('origin-form requests and non-http schemes are refused', async () => {
    expect(await raw('GET / HTTP/1.1\r\nHost: sink.example.com\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 400[\s\S]*absolute URL/);
  });
});

describe('egress proxy: the cut', () => {
  it('close() cuts open tunnels at once and refuses everything after', async () => {
    const held = connect(proxyPort, '127.0.0.1');
    await new Promise<void>((resolve) => {
      held.on('data', (d) => (d.toString().includes('200 Connection Established') ? resolve() : undefined));
      held.write(`CONNECT sink.example.com:${sinkPort} HTTP/1.1\r\n\r\n`);
    });
    const closedAt = Date.now();
    const gone = new Promise<number>((resolve) => held.on('close', () => resolve(Date.now() - closedAt)));
    await proxy.close();
    expect(await gone).toBeLessThan(250);
    const after = await new Promise<string>((resolve) => {
      const s = connect(proxyPort, '127.0.0.1');
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.on('connect', () => resolve('connected'));
    });
    expect(after).toBe('ECONNREFUSED');
  });
});
