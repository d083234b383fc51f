/**
 * DLP through the real egress proxy, over plain HTTP and inspected HTTPS, with real
 * clients (curl, python requests, Node's fetch through undici, the `ws` WebSocket
 * client) and real servers on loopback. Every detector is on (`all`) with a custom RE2
 * pattern.
 *
 * Attacks and defences:
 * - a generated secret of every detector, wrapped in up to three encodings, in the URL,
 *   a header or the body, over plain HTTP and inside a decrypted tunnel: refused (403)
 *   before the server sees a byte, audited with the detector and the decoding chain, the
 *   secret itself never in the audit (a digest only);
 * - a secret in a WebSocket message (wss:// decrypted, ws:// inside a CONNECT tunnel and
 *   ws:// as an absolute-form request): the message is not forwarded and the socket is
 *   closed with 1008;
 * - data in the labels of a granted wildcard name (hex of a token; random hex): refused,
 *   and the name never reaches the resolver;
 * - a PEM key split over two requests to the same host: the second is refused;
 * - a body wrapped deeper than the decoders go: refused as unscannable, never passed;
 * - a pathological custom regex (`(q+q+)+Q` on 100 000 q's): RE2 answers in linear time;
 * - an http:// request sent through CONNECT (as Gemini's client does): scanned as plain HTTP;
 * - the benign corpus (test/fixtures/dlp-benign, the lockfile, minified JS) over both
 *   transports: nothing refused.
 */
import { execa } from 'execa';
import fc from 'fast-check';
import { readdirSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressProxy, type EgressEvent } from '../../src/egress/proxy.js';
import { SessionCa } from '../../src/egress/ca.js';
import { BUILTIN, compileDetectors } from '../../src/policy/dlp.js';
import { DETECTOR_NAMES, expandDetectors, type DlpDetectorName } from '../../src/model/dlp.js';
import { httpEntriesFor, inspection } from '../../src/model/http.js';
import { model } from '../helpers/load.js';
import { ROOT } from '../helpers/load.js';
import { TestCa } from '../helpers/internet.js';
import { SECRETS } from '../helpers/secrets.js';
import { encode, ENCODER_NAMES } from '../helpers/encodings.js';

const dir = mkdtempSync(join(tmpdir(), 'agentbox-dlp-'));
const events: EgressEvent[] = [];
const received: string[] = [];
const wsReceived: string[] = [];
const lookups: string[] = [];
let ca: SessionCa;
let proxy: EgressProxy;
let proxyPort = 0;
let makeProxy: (detectors: DlpDetectorName[]) => Promise<number>;
const proxies: EgressProxy[] = [];
let plain: Server;
let secure: Server;
let plainPort = 0;
let securePort = 0;
let boxBundle = '';

/** An upstream that records every body and echoes WebSocket messages. */
function upstream(server: Server): void {
  server.on('request', (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push(`${req.url ?? ''} ${JSON.stringify(req.headers)} ${Buffer.concat(chunks).toString('latin1')}`);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: true });
  wss.on('connection', (ws) => ws.on('message', (m) => {
    wsReceived.push(String(m));
    ws.send(String(m));
  }));
}

beforeAll(async () => {
  const internet = await TestCa.create();
  const cert = await internet.issue(['api.example.test']);
  plain = createHttpServer();
  upstream(plain);
  secure = createHttpsServer({ key: cert.key, cert: cert.cert });
  upstream(secure);
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  plainPort = (plain.address() as AddressInfo).port;
  securePort = (secure.address() as AddressInfo).port;
  const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: dlptest }
agent: { command: [/bin/true] }
capabilities:
  - net:connect:plain.example.test:${plainPort}
  - net:connect:api.example.test:${securePort}
  - net:connect:*.data.example.test:${plainPort}
  - net:connect:127.0.0.1:${plainPort}
  - net:connect:127.0.0.1:${securePort}
egress:
  dlp:
    detectors: [all]
    custom:
      - { name: pathological, regex: "(q+q+)+Q" }
`);
  ca = await SessionCa.create('dlptest', 3600_000);
  boxBundle = join(dir, 'box.pem');
  writeFileSync(boxBundle, ca.certPem);
  const options = (detectors: ReturnType<typeof compileDetectors>) => ({
    rules: { grants: m.grants.net, denies: m.denies.net },
    agent: m.name,
    onEvent: (e: EgressEvent) => events.push(e),
    resolve: async (h: string) => {
      lookups.push(h);
      return h.endsWith('example.test') ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }));
    },
    dlp: detectors,
    digest: (x: string) => `digest-${x.length}`,
    http: { rules: (h: string) => httpEntriesFor(m, h), inspects: (h: string) => inspection(m, h) },
    tls: { ca, trust: [internet.pem] },
  });
  proxy = new EgressProxy(options(compileDetectors(m.egress.dlp!)));
  proxyPort = Number((await proxy.listen({ host: '127.0.0.1', port: 0 })).split(':').pop());
  // One detector alone: a property case must be caught by the detector it generated for.
  makeProxy = async (detectors) => {
    const p = new EgressProxy(options(compileDetectors({ detectors, custom: [] })));
    proxies.push(p);
    return Number((await p.listen({ host: '127.0.0.1', port: 0 })).split(':').pop());
  };
  expect(m.egress.dlp!.detectors).toEqual(expandDetectors(['all']));
}, 60_000);

afterAll(async () => {
  await proxy?.close().catch(() => undefined);
  for (const p of proxies) await p.close().catch(() => undefined);
  ca?.destroy();
  plain?.close();
  secure?.close();
});

/** A CONNECT tunnel through the proxy: the socket after 200, or the refusal's status line. */
function tunnel(host: string, port: number, via = proxyPort): Promise<{ socket?: Socket; status: string }> {
  return new Promise((resolve, reject) => {
    const s = netConnect(via, '127.0.0.1', () => s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      const status = buf.slice(0, buf.indexOf('\r\n'));
      if (/^HTTP\/1\.1 200/.test(status)) resolve({ socket: s, status });
      else {
        s.destroy();
        resolve({ status });
      }
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

/** One request and its status line: over plain HTTP (absolute form) or inside a decrypted tunnel. */
async function send(transport: 'http' | 'https', path: string, headers: Record<string, string>, body: string, via = proxyPort): Promise<string> {
  if (transport === 'http') {
    return new Promise((resolve, reject) => {
      const r = httpRequest({ host: '127.0.0.1', port: via, method: 'POST', path: `http://plain.example.test:${plainPort}${path}`, headers: { host: `plain.example.test:${plainPort}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
        res.resume();
        res.on('end', () => resolve(`${res.statusCode} ${res.statusMessage}`));
      });
      r.on('error', reject);
      r.end(body);
    });
  }
  const t = await tunnel('api.example.test', securePort, via);
  if (!t.socket) return t.status;
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ socket: t.socket, servername: 'api.example.test', ca: ca.certPem, ALPNProtocols: ['http/1.1'] }, () => {
      let head = `POST ${path} HTTP/1.1\r\nHost: api.example.test:${securePort}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      // Not half-closed: the answer comes back before the connection ends.
      s.write(`${head}\r\n${body}`);
    });
    let out = '';
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (out.includes('\r\n')) {
        resolve(out.slice(0, out.indexOf('\r\n')));
        s.destroy();
      }
    });
    s.on('close', () => resolve(out.slice(0, out.indexOf('\r\n'))));
    s.on('error', (e) => (out ? resolve(out.slice(0, out.indexOf('\r\n'))) : reject(e)));
  });
}

const dlpEvents = (since: number) => events.slice(since).filter((e) => e.decision === 'deny' && e.code === 'dlp');
const noPlaintext = (secret: string) => {
  const audit = JSON.stringify(events);
  // A secret's distinctive middle never appears in any audit entry.
  const middle = secret.length > 24 ? secret.slice(8, -8) : secret;
  expect(audit.includes(middle), 'the secret is in the audit').toBe(false);
};

describe('every detector through the proxy, plain HTTP and inspected HTTPS (sampled chains up to three deep)', () => {
  it.each(DETECTOR_NAMES)('%s', async (name: DlpDetectorName) => {
    const via = await makeProxy([name]);
    await fc.assert(
      fc.asyncProperty(
        SECRETS[name],
        fc.array(fc.constantFrom(...ENCODER_NAMES), { minLength: 0, maxLength: 3 }),
        fc.constantFrom('url' as const, 'header' as const, 'body' as const),
        fc.constantFrom('http' as const, 'https' as const),
        async (secret, chain, place, transport) => {
          const enc = encode(secret, chain);
          // Request lines and headers are bounded (16 KiB); a long value goes in the body.
          const where = encodeURIComponent(enc).length > 8000 ? 'body' : place;
          const before = events.length;
          const seen = received.length;
          const status = await send(
            transport,
            where === 'url' ? `/upload?d=${encodeURIComponent(enc)}` : '/upload',
            where === 'header' ? { 'x-data': enc.replace(/[\r\n]/g, ' ').replace(/[^\x20-\x7e]/g, (c) => encodeURIComponent(c)) } : {},
            where === 'body' ? JSON.stringify({ data: enc }) : '{}',
            via,
          );
          expect(status, `${name} via ${chain.join('→')} in ${where} over ${transport}`).toMatch(/^(HTTP\/1\.1 )?403 /);
          expect(received.length, 'the server saw the request').toBe(seen);
          const hit = dlpEvents(before)[0];
          expect(hit?.details?.dlp, JSON.stringify(events.slice(before))).toMatchObject({ detector: name });
          expect(Array.isArray((hit!.details!.dlp as { via: string[] }).via)).toBe(true);
          // Named with its chain, unless what was sent already holds a match as it is (a URL-encoded card is digits too).
          const sentAsIs = [`/upload?d=${encodeURIComponent(enc)}`, enc, JSON.stringify({ data: enc })].some((t) => BUILTIN[name].find(t) !== undefined);
          if (chain.length > 0 && !sentAsIs) expect(hit!.reason).toContain(' via ');
          expect(hit!.reason).toContain(name);
          noPlaintext(secret);
        },
      ),
      { numRuns: 4 },
    );
  }, 120_000);
});

describe('real clients through inspection', () => {
  const token = fc.sample(SECRETS.github, { numRuns: 1, seed: 3 })[0]!.match(/gh[a-z]_[A-Za-z0-9]+|github_pat_[A-Za-z0-9_]+/)![0];
  const env = () => ({ HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`, https_proxy: `http://127.0.0.1:${proxyPort}`, HTTP_PROXY: `http://127.0.0.1:${proxyPort}`, NO_PROXY: '', no_proxy: '', SSL_CERT_FILE: boxBundle, CURL_CA_BUNDLE: boxBundle, REQUESTS_CA_BUNDLE: boxBundle, NODE_EXTRA_CA_CERTS: boxBundle, PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir });
  const url = () => `https://api.example.test:${securePort}/upload`;
  const body = JSON.stringify({ note: 'deploy', payload: Buffer.from(token).toString('base64') });

  it.each([
    ['curl', () => ['curl', ['-sS', '--max-time', '20', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'content-type: application/json', '--data-binary', body, url()]]],
    ['python requests', () => ['python3', ['-c', `import requests, sys\nr = requests.post(sys.argv[1], data=sys.argv[2], headers={"content-type": "application/json"}, timeout=20)\nprint(r.status_code)`, url(), body]]],
    ['node fetch (undici)', () => [process.execPath, ['--input-type=module', '-e', `import { EnvHttpProxyAgent, fetch } from 'undici';\nconst r = await fetch(process.argv[1], { method: 'POST', body: process.argv[2], headers: { 'content-type': 'application/json' }, dispatcher: new EnvHttpProxyAgent() });\nconsole.log(r.status);`, url(), body]]],
  ] as [string, () => [string, string[]]][])('%s: a base64-wrapped token in a JSON body is refused and audited', async (_client, cmd) => {
    const before = events.length;
    const seen = received.length;
    const [bin, args] = cmd();
    const r = await execa(bin, args, { reject: false, env: env(), extendEnv: false, cwd: ROOT });
    expect(r.stdout.trim(), r.stderr).toBe('403');
    expect(received.length).toBe(seen);
    expect(dlpEvents(before)[0]!.details!.dlp).toMatchObject({ detector: 'github', via: expect.arrayContaining(['base64']), where: 'body', digest: `digest-${token.length}` });
    noPlaintext(token);
  }, 60_000);

  it('ws: a token in a WebSocket message closes the socket with 1008 (wss decrypted, ws in a tunnel, ws in absolute form)', async () => {
    const open = async (kind: 'wss' | 'ws-tunnel' | 'ws-absolute'): Promise<WebSocket> => {
      if (kind === 'ws-absolute') {
        // A plain-HTTP proxy request for the upgrade (absolute form), as proxy-aware clients send ws://.
        return new WebSocket(`ws://plain.example.test:${plainPort}/ws`, {
          perMessageDeflate: true,
          createConnection: () => {
            const s = netConnect(proxyPort, '127.0.0.1');
            // ws writes an origin-form request line; the proxy needs the absolute form.
            const write = s.write.bind(s) as (c: string | Buffer) => boolean;
            let first = true;
            (s as unknown as { write: (c: string | Buffer) => boolean }).write = (c) => {
              if (first && typeof c === 'string') {
                first = false;
                return write(c.replace(/^GET \//, `GET http://plain.example.test:${plainPort}/`));
              }
              return write(c);
            };
            return s;
          },
        });
      }
      const t = await tunnel(kind === 'wss' ? 'api.example.test' : 'plain.example.test', kind === 'wss' ? securePort : plainPort);
      expect(t.status).toMatch(/200/);
      const sock = kind === 'wss' ? tlsConnect({ socket: t.socket!, servername: 'api.example.test', ca: ca.certPem, ALPNProtocols: ['http/1.1'] }) : t.socket!;
      return new WebSocket(`${kind === 'wss' ? 'wss' : 'ws'}://${kind === 'wss' ? `api.example.test:${securePort}` : `plain.example.test:${plainPort}`}/ws`, { perMessageDeflate: true, createConnection: () => sock });
    };
    for (const kind of ['wss', 'ws-tunnel', 'ws-absolute'] as const) {
      const ws = await open(kind);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      const echo = await new Promise<string>((resolve) => {
        ws.once('message', (m) => resolve(String(m)));
        ws.send(`hello over ${kind}`);
      });
      expect(echo).toBe(`hello over ${kind}`);
      const before = events.length;
      const secret = JSON.stringify({ type: 'chunk', data: Buffer.from(`GITHUB_TOKEN=${token}`).toString('hex') });
      const closed = await new Promise<number>((resolve) => {
        ws.once('close', (code) => resolve(code));
        // Fragmented: the message in two frames.
        ws.send(secret.slice(0, 20), { fin: false });
        ws.send(secret.slice(20), { fin: true });
      });
      expect(closed, kind).toBe(1008);
      expect(wsReceived).toContain(`hello over ${kind}`);
      expect(wsReceived.some((m) => m.includes(secret.slice(20, 60))), 'the server got the message').toBe(false);
      expect(dlpEvents(before)[0]!.details!.dlp, kind).toMatchObject({ detector: 'github', where: 'frame', via: expect.arrayContaining(['hex']) });
      expect(dlpEvents(before)[0]!.action).toBe(kind === 'wss' ? 'egress.https' : 'egress.http');
      noPlaintext(token);
    }
  }, 60_000);
});

describe('host names, split secrets, bounds', () => {
  it('a pathological custom regex runs in RE2 linear time: (q+q+)+Q on 100 000 characters', async () => {
    // A backtracking engine takes exponential time on this input (it never finishes); RE2 does not.
    const t0 = performance.now();
    const status = await send('https', '/a', {}, 'q'.repeat(100_000));
    expect(status, JSON.stringify(events.slice(-2))).toMatch(/200/);
    const ms = performance.now() - t0;
    console.log(`pathological regex, 100 000 characters: ${ms.toFixed(0)} ms`);
    // And it is applied: a body that matches it is refused.
    expect(await send('https', '/a', {}, `${'q'.repeat(50_000)}Q`)).toMatch(/403/);
  }, 10_000);

  it('data in the labels of a granted wildcard is refused and never looked up', async () => {
    const token = fc.sample(SECRETS['aws-access-key'], { numRuns: 1, seed: 5 })[0]!;
    const hex = Buffer.from(token).toString('hex');
    const names = [`${hex.slice(0, 30)}.${hex.slice(30)}.data.example.test`, `${'9f3a7c21b04e5d86'.repeat(2)}.data.example.test`];
    for (const name of names) {
      const before = events.length;
      const t = await tunnel(name, plainPort);
      expect(t.status).toMatch(/^HTTP\/1\.1 403 /);
      expect(lookups).not.toContain(name);
      expect(events.slice(before).find((e) => e.code === 'dlp')!.details!.dlp).toMatchObject({ where: 'host' });
    }
    // A name that is a name passes, and is looked up.
    const ok = await tunnel(`docs.data.example.test`, plainPort);
    expect(ok.status).toMatch(/200/);
    ok.socket!.destroy();
    expect(lookups).toContain('docs.data.example.test');
  });

  it('a PGP private key split over two requests to one host: the second is refused', async () => {
    const pgp = fc.sample(SECRETS['private-key'].filter((k) => k.includes('BEGIN PGP PRIVATE KEY BLOCK')), { numRuns: 1, seed: 9 })[0]!;
    const at = pgp.indexOf('-----BEGIN PGP PRIVATE KEY BLOCK-----') + '-----BEGIN PGP PRIVATE KEY BLOCK-----\n'.length;
    for (const transport of ['http', 'https'] as const) {
      expect(await send(transport, '/part1', {}, pgp.slice(0, at))).toMatch(/200/);
      const before = events.length;
      expect(await send(transport, '/part2', {}, pgp.slice(at))).toMatch(/403/);
      expect(dlpEvents(before)[0]!.details!.dlp).toMatchObject({ detector: 'private-key', via: expect.arrayContaining(['split']) });
    }
  });

  it('a body wrapped deeper than the decoders go is refused as unscannable', async () => {
    const deep = encode('just some words of text, nothing secret here', ['base64', 'hex', 'base64', 'hex', 'base64', 'hex', 'base64']);
    for (const transport of ['http', 'https'] as const) {
      const before = events.length;
      expect(await send(transport, '/deep', {}, JSON.stringify({ d: deep }))).toMatch(/403/);
      expect(events.slice(before).some((e) => e.code === 'unscannable')).toBe(true);
    }
  });

  it('an http:// request sent through CONNECT (as Gemini CLI does) is scanned as plain HTTP', async () => {
    const t = await tunnel('plain.example.test', plainPort);
    expect(t.status).toMatch(/200/);
    const key = fc.sample(SECRETS.stripe, { numRuns: 1, seed: 2 })[0]!;
    const ask = (body: string) => new Promise<string>((resolve) => {
      t.socket!.write(`POST /v1/x HTTP/1.1\r\nHost: plain.example.test:${plainPort}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      t.socket!.once('data', (d: Buffer) => resolve(d.toString('latin1').split('\r\n')[0]!));
    });
    expect(await ask('{"q":"hello"}')).toMatch(/200/);
    const before = events.length;
    expect(await ask(JSON.stringify({ k: key }))).toMatch(/403/);
    expect(dlpEvents(before)[0]!.details!.dlp).toMatchObject({ detector: 'stripe' });
    t.socket!.destroy();
  });
});

describe('the benign corpus passes through the proxy', () => {
  const fixtures = join(ROOT, 'test', 'fixtures', 'dlp-benign');
  const corpus: [string, string][] = [
    ...readdirSync(fixtures).map((f) => [f, f.endsWith('.png') ? JSON.stringify({ image: readFileSync(join(fixtures, f)).toString('base64') }) : readFileSync(join(fixtures, f), 'utf8')] as [string, string]),
    ['package-lock.json', readFileSync(join(ROOT, 'package-lock.json'), 'utf8')],
    ['protobuf.min.js', readFileSync(join(ROOT, 'node_modules', 'protobufjs', 'dist', 'protobuf.min.js'), 'utf8')],
  ];
  it.each(corpus)('%s', async (_n, text) => {
    for (const transport of ['http', 'https'] as const) expect(await send(transport, '/benign', {}, text), transport).toMatch(/200/);
  });
});
