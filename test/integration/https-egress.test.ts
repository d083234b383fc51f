/**
 * HTTPS through the egress proxy, with real TLS and real clients (curl, python
 * requests and urllib, Node's undici EnvHttpProxyAgent, git over HTTPS against
 * `git http-backend`), on loopback. "The internet" is a test CA the proxy trusts
 * through a private bundle; the clients trust only the session CA (as the box does).
 *
 * Attacks and defences:
 * - a secret in a body over HTTPS: the proxy decrypts inspected hosts and DLP blocks it;
 * - a request outside the host's method/path rules (including by path spelling,
 *   `..` and encoded slashes): refused with the rule named, audited with method and path;
 * - organisation policy on method (Cedar context.method): POST to an unlabelled host refused;
 * - an upstream with a self-signed or expired certificate: refused at CONNECT (502 with
 *   the reason in the status line), audited; the client never gets to accept it;
 * - SNI naming another host than the CONNECT target: the handshake is refused;
 * - a Host header naming another host inside the tunnel: refused;
 * - the brokered credential's placeholder sent to another granted host, and the real
 *   secret sent anywhere: refused; the credential host gets the real key, injected;
 * - a pinned client (`inspect: false`): its tunnel stays opaque and it works;
 * - a WebSocket upgrade: checked as a request, then relayed.
 */
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressProxy, type EgressEvent, type Violation } from '../../src/egress/proxy.js';
import { SessionCa } from '../../src/egress/ca.js';
import { newPlaceholder, type Brokered } from '../../src/egress/credentials.js';
import { compileDetectors } from '../../src/policy/dlp.js';
import { httpEntriesFor, inspection } from '../../src/model/http.js';
import { PolicyEngine } from '../../src/host/cedar-engine.js';
import { agentEntity, connectRequest, NO_LABELS } from '../../src/policy/entities.js';
import { schemaSource } from '../../src/host/policy-files.js';
import { model } from '../helpers/load.js';
import { TestCa, startSite, type TestSite } from '../helpers/internet.js';

const dir = mkdtempSync(join(tmpdir(), 'agentbox-https-'));
const SECRET = 'sk-test-REAL-4f9c2a7e1b3d5f60';
const TEST_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----';
let internet: TestCa;
let api: TestSite;
let git: TestSite;
let pinned: TestSite;
let selfSigned: TestSite;
let expired: TestSite;
let ca: SessionCa;
let proxy: EgressProxy;
let proxyUrl = '';
let boxBundle = '';
let internetPem = '';
let placeholder = '';
const events: EgressEvent[] = [];
const violations: Violation[] = [];

const clientEnv = () => ({ HTTPS_PROXY: proxyUrl, https_proxy: proxyUrl, HTTP_PROXY: proxyUrl, NO_PROXY: '', no_proxy: '', SSL_CERT_FILE: boxBundle, CURL_CA_BUNDLE: boxBundle, REQUESTS_CA_BUNDLE: boxBundle, GIT_SSL_CAINFO: boxBundle, NODE_EXTRA_CA_CERTS: boxBundle, PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir });
const curl = (args: string[]) => execa('curl', ['-sS', '--max-time', '20', ...args], { reject: false, env: clientEnv(), extendEnv: false });
const audited = (pred: (e: EgressEvent) => boolean) => events.filter(pred);

beforeAll(async () => {
  internet = await TestCa.create();
  internetPem = join(dir, 'internet-ca.pem');
  writeFileSync(internetPem, internet.pem);
  api = await startSite(await internet.issue(['api.example.test', 'other.example.test']));
  const repos = join(dir, 'repos');
  mkdirSync(repos);
  await execa('git', ['init', '-q', '--bare', join(repos, 'r.git')]);
  const work = join(dir, 'work');
  await execa('git', ['init', '-q', work]);
  writeFileSync(join(work, 'README'), 'hello over https\n');
  await execa('git', ['-C', work, 'add', '.']);
  await execa('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'one']);
  await execa('git', ['-C', work, 'push', '-q', join(repos, 'r.git'), 'HEAD:refs/heads/main']);
  await execa('git', ['--git-dir', join(repos, 'r.git'), 'symbolic-ref', 'HEAD', 'refs/heads/main']);
  git = await startSite(await internet.issue(['git.example.test']), repos);
  pinned = await startSite(await internet.issue(['pinned.example.test']));
  selfSigned = await startSite(await TestCa.selfSigned('selfsigned.example.test'));
  expired = await startSite(await internet.issue(['expired.example.test'], { expired: true }));

  const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: tlstest }
agent: { command: [/bin/true] }
capabilities:
  - net:connect:api.example.test:${api.port}
  - net:connect:other.example.test:${api.port}
  - net:connect:127.0.0.1:${api.port}
  - net:connect:git.example.test:${git.port}
  - net:connect:127.0.0.1:${git.port}
  - net:connect:pinned.example.test:${pinned.port}
  - net:connect:127.0.0.1:${pinned.port}
  - net:connect:selfsigned.example.test:${selfSigned.port}
  - net:connect:127.0.0.1:${selfSigned.port}
  - net:connect:expired.example.test:${expired.port}
  - net:connect:127.0.0.1:${expired.port}
egress:
  dlp: { detectors: [private-key, aws-access-key] }
  http:
    - host: api.example.test
      allow: ["GET /repos/**", "POST /repos/*/issues", "* /echo", "GET /ws"]
      deny: ["DELETE /**"]
    - host: git.example.test
      deny: ["POST /git/*/git-receive-pack"]
    - host: pinned.example.test
      inspect: false
  credentials:
    - host: api.example.test
      header: x-api-key
      name: api
      secret: { env: TEST_API_SECRET }
      env: API_KEY
`);
  ca = await SessionCa.create('tlstest', 3600_000);
  boxBundle = join(dir, 'box-bundle.pem');
  writeFileSync(boxBundle, ca.certPem);
  placeholder = newPlaceholder('api');
  const brokered: Brokered[] = [{ spec: m.egress.credentials[0]!, placeholder, secret: SECRET, digest: 'digest-of-secret' }];
  const r = PolicyEngine.load([{ file: 'org.cedar', text: '@id("no-post-unlabelled")\nforbid (principal, action == Agentbox::Action::"connect", resource) when { context has method && context.method == "POST" && !resource.labels.contains("corporate") && resource.name == "other.example.test" };' }], schemaSource());
  if (!r.engine) throw new Error(JSON.stringify(r.problems));
  const engine = r.engine;
  const agent = agentEntity({ name: 'tlstest', classification: 'unclassified', presets: [], ttlSeconds: 60, hasNetwork: true, consent: false, dlp: true, runtime: 'process', snapshot: 'revert' });
  const answer = (v: ReturnType<typeof engine.authorize>) => ({ allow: v.decision === 'allow', ids: v.forbiddenBy.map((p) => p.id), reason: v.forbiddenBy.map((p) => p.reason).join('; ') || 'forbidden' });
  proxy = new EgressProxy({
    rules: { grants: m.grants.net, denies: m.denies.net },
    agent: m.name,
    onEvent: (e) => events.push(e),
    onViolation: (v) => violations.push(v),
    resolve: async (h) => (h.endsWith('.example.test') ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }))),
    dlp: compileDetectors(m.egress.dlp!),
    digest: (x) => `d${x.length}`,
    policy: (host, port, consented) => answer(engine.authorize(connectRequest(agent, host, port, NO_LABELS, 'run', consented))),
    http: { rules: (h) => httpEntriesFor(m, h), inspects: (h) => inspection(m, h), requestPolicy: (host, port, method, path) => answer(engine.authorize(connectRequest(agent, host, port, NO_LABELS, 'run', false, undefined, { method, path }))) },
    tls: { ca, trust: [internet.pem] },
    brokered,
  });
  proxyUrl = `http://${await proxy.listen({ host: '127.0.0.1', port: 0 })}`;
}, 60_000);

afterAll(async () => {
  await proxy?.close().catch(() => undefined);
  ca?.destroy();
  for (const s of [api, git, pinned, selfSigned, expired]) await s?.close().catch(() => undefined);
});

const apiUrl = (p: string) => `https://api.example.test:${api.port}${p}`;

describe('inspected HTTPS with real clients', () => {
  it('curl over HTTP/1.1 and HTTP/2: the request reaches the server, audited with method and path', async () => {
    const r1 = await curl(['--http1.1', '-w', '\n%{http_version}', apiUrl('/repos/a/b')]);
    expect(r1.stderr).toBe('');
    expect(r1.stdout).toMatch(/"method":"GET"[\s\S]*\n1\.1$/);
    const r2 = await curl(['--http2', '-w', '\n%{http_version}', apiUrl('/repos/a/c')]);
    expect(r2.stdout).toMatch(/"url":"\/repos\/a\/c"[\s\S]*\n2$/);
    const seen = api.seen.find((s) => s.url === '/repos/a/c');
    // HTTP/2 from the agent, HTTP/1.1 to the server, the Host set from :authority.
    expect(seen).toMatchObject({ method: 'GET', version: '1.1' });
    expect(seen!.headers.host).toBe(`api.example.test:${api.port}`);
    expect(audited((e) => e.action === 'egress.https' && e.decision === 'allow' && e.details?.path === '/repos/a/c')[0]!.details).toMatchObject({ method: 'GET', inspected: 'rules' });
    // The client saw the session CA's leaf, not the server's certificate.
    const v = await curl(['-v', '-o', '/dev/null', apiUrl('/repos/a/d')]);
    expect(v.stderr).toMatch(/issuer: CN=agentbox session tlstest/);
    // alt-svc (HTTP/3 around the proxy) is not passed on.
    const h = await curl(['-D', '-', '-o', '/dev/null', apiUrl('/repos/a/e')]);
    expect(h.stdout.toLowerCase()).not.toMatch(/alt-svc/);
  });

  it('a secret in a request body over HTTPS is blocked by DLP (curl, python requests, urllib, undici)', async () => {
    const before = api.seen.length;
    const c = await curl(['-w', '\n%{http_code}', '--data-binary', TEST_KEY, apiUrl('/echo')]);
    expect(c.stdout).toMatch(/agentbox refused[\s\S]*private-key[\s\S]*\n403$/);
    const py = await execa('python3', ['-c', `import requests, sys
r = requests.post("${apiUrl('/echo')}", data=sys.argv[1], timeout=20)
print(r.status_code, r.reason)
r = requests.get("${apiUrl('/echo')}", timeout=20)
print(r.status_code, r.json()["method"])`, TEST_KEY], { reject: false, env: clientEnv(), extendEnv: false });
    expect(py.stderr).toBe('');
    expect(py.stdout).toMatch(/^403 Forbidden by agentbox \(dlp\)\n200 GET/);
    const ul = await execa('python3', ['-c', `import urllib.request as u, sys
try:
    u.urlopen(u.Request("${apiUrl('/echo')}", data=sys.argv[1].encode(), method="POST"), timeout=20)
except Exception as e:
    print(e.code, e.reason)
print(u.urlopen("${apiUrl('/echo')}", timeout=20).status)`, TEST_KEY], { reject: false, env: clientEnv(), extendEnv: false });
    expect(ul.stdout).toMatch(/^403 Forbidden by agentbox \(dlp\)\n200/);
    const node = await execa(process.execPath, ['--input-type=module', '-e', `import { EnvHttpProxyAgent, fetch } from 'undici';
const d = new EnvHttpProxyAgent();
const a = await fetch(${JSON.stringify(apiUrl('/echo'))}, { dispatcher: d, method: 'POST', body: process.argv[1] });
const b = await fetch(${JSON.stringify(apiUrl('/echo'))}, { dispatcher: d });
console.log(a.status, b.status, (await b.json()).method);`.replace('process.argv[1]', 'process.env.BODY')], { reject: false, env: { ...clientEnv(), BODY: TEST_KEY }, extendEnv: false, cwd: process.cwd() });
    expect(node.stderr).toBe('');
    expect(node.stdout.trim()).toBe('403 200 GET');
    // None of the blocked bodies reached the server.
    expect(api.seen.slice(before).some((s) => s.body.includes('OPENSSH'))).toBe(false);
    expect(violations.some((v) => v.kind === 'dlp' && v.details.detector === 'private-key')).toBe(true);
  });

  it('git clones over HTTPS through inspection, and a push is refused by the path rule', async () => {
    const clone = join(dir, 'clone');
    const r = await execa('git', ['clone', '-q', `https://git.example.test:${git.port}/git/r.git`, clone], { reject: false, env: clientEnv(), extendEnv: false });
    expect(r.stderr).toBe('');
    expect((await execa('cat', [join(clone, 'README')])).stdout).toBe('hello over https');
    writeFileSync(join(clone, 'x'), 'x');
    await execa('git', ['-C', clone, 'add', '.']);
    await execa('git', ['-C', clone, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'two']);
    const push = await execa('git', ['-C', clone, 'push', 'origin', 'HEAD:main'], { reject: false, env: clientEnv(), extendEnv: false });
    expect(push.exitCode).not.toBe(0);
    expect(push.stderr).toMatch(/403/);
    expect(audited((e) => e.action === 'egress.https' && e.code === 'http-rule' && e.host === 'git.example.test')[0]).toMatchObject({ rule: expect.stringMatching(/POST \/git\/\*\/git-receive-pack.*egress\.http\[1\]\.deny\[0\]/), details: { method: 'POST', path: '/git/r.git/git-receive-pack' } });
  });
});

describe('large bodies: scanned as they stream, within bounded memory', () => {
  // Attack: a secret at the end of a large upload (past what the proxy holds whole), or
  // straddling the point where it starts streaming. Defence: the body streams through the
  // scanner with an overlap window; the chunk holding the match is never forwarded.
  const post = (body: Buffer | string, extra: string[] = []) => execa('curl', ['-sS', '--max-time', '60', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '--data-binary', '@-', ...extra, apiUrl('/echo')], { reject: false, input: body, env: clientEnv(), extendEnv: false });

  it('a 24 MiB clean upload passes (more than the 16 MiB a body could be held whole)', async () => {
    const before = api.seen.length;
    const r = await post(Buffer.alloc(24 * 1024 * 1024, 'a'));
    expect(r.stdout).toBe('200');
    expect(api.seen.slice(before).find((x) => x.url === '/echo')!.body.length).toBe(24 * 1024 * 1024);
  });

  it('a key at the end of 8 MiB, or across the 1 MiB hold boundary, is refused and never reaches the server', async () => {
    for (const at of [8 * 1024 * 1024, 1024 * 1024 - 40, 1024 * 1024 + 65536 - 30]) {
      const before = api.seen.length;
      const body = Buffer.concat([Buffer.alloc(at, 'b'), Buffer.from(TEST_KEY), Buffer.alloc(4096, 'c')]);
      const r = await post(body);
      expect(r.stdout, `key at ${at}`).toBe('403');
      for (const x of api.seen.slice(before)) expect(x.body.includes('OPENSSH')).toBe(false);
      const ev = audited((e) => e.code === 'dlp' && e.action === 'egress.https').at(-1)!;
      expect(ev.details).toMatchObject({ dlp: { detector: 'private-key', where: 'body' } });
    }
  });

  it('a gzip body streams through a bounded decompressor: a key inside is refused; a bomb is cut', async () => {
    const { gzipSync } = await import('node:zlib');
    const big = gzipSync(Buffer.concat([Buffer.alloc(3 * 1024 * 1024, 'x'), Buffer.from(TEST_KEY)]), { level: 1 });
    // Incompressible padding first, so the compressed body itself is past the hold size.
    const padded = gzipSync(Buffer.concat([(await import('node:crypto')).randomBytes(2 * 1024 * 1024), Buffer.from(TEST_KEY)]));
    expect((await post(padded, ['-H', 'content-encoding: gzip'])).stdout).toBe('403');
    expect((await post(big, ['-H', 'content-encoding: gzip'])).stdout).toBe('403');
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0));
    const r = await post(Buffer.concat([(await import('node:crypto')).randomBytes(0), bomb]), ['-H', 'content-encoding: gzip']);
    expect(r.stdout).toBe('403');
  });
});

describe('method and path rules', () => {
  it('allows what the rules allow and refuses the rest, naming the rule', async () => {
    const code = async (method: string, p: string) => (await curl(['-o', '/dev/null', '-w', '%{http_code}', '-X', method, apiUrl(p)])).stdout;
    expect(await code('GET', '/repos/o/r/pulls')).toBe('200');
    expect(await code('POST', '/repos/o/issues')).toBe('200');
    expect(await code('POST', '/repos/o/r/issues')).toBe('403');
    expect(await code('DELETE', '/repos/o/r')).toBe('403');
    expect(await code('GET', '/admin')).toBe('403');
    const body = await curl(['-X', 'DELETE', apiUrl('/repos/o/r')]);
    expect(body.stdout).toMatch(/DELETE \/repos\/o\/r is denied by rule "DELETE \/\*\*" \(egress\.http\[0\]\.deny\[0\]\)/);
    const status = await execa('python3', ['-c', `import requests\nr = requests.delete("${apiUrl('/repos/o/r')}", timeout=20)\nprint(r.status_code, r.reason)`], { reject: false, env: clientEnv(), extendEnv: false });
    expect(status.stdout.trim()).toBe('403 Forbidden by agentbox (http-rule)');
    const node = await execa(process.execPath, ['--input-type=module', '-e', `import { EnvHttpProxyAgent, fetch } from 'undici';
const d = new EnvHttpProxyAgent();
const a = await fetch(${JSON.stringify(apiUrl('/repos/o/r'))}, { dispatcher: d, method: 'DELETE' });
const b = await fetch(${JSON.stringify(apiUrl('/repos/o/r'))}, { dispatcher: d });
console.log(a.status, (await a.text()).includes('DELETE /**'), b.status);`], { reject: false, env: clientEnv(), extendEnv: false, cwd: process.cwd() });
    expect(node.stderr).toBe('');
    expect(node.stdout.trim()).toBe('403 true 200');
  });

  it('path spellings cannot walk around a rule: .., encoded slashes and backslashes', async () => {
    const code = async (p: string) => (await curl(['--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', apiUrl(p)])).stdout;
    expect(await code('/repos/../admin')).toBe('403');
    expect(await code('/repos/a%2F..%2F..%2Fadmin')).toBe('403');
    expect(await code('/repos/a\\..\\admin')).toBe('403');
    expect(await code('/%72epos/x')).toBe('200');
    expect(await code('/repos/x/../../admin')).toBe('403');
  });

  it('organisation policy sees method and path: POST to an unlabelled host is refused, GET passes', async () => {
    const other = (p: string) => `https://other.example.test:${api.port}${p}`;
    expect((await curl(['-o', '/dev/null', '-w', '%{http_code}', other('/x')])).stdout).toBe('200');
    const r = await curl(['-w', '\n%{http_code}', '-d', 'hello', other('/x')]);
    expect(r.stdout).toMatch(/organisation policy forbids POST \/x[\s\S]*\n403$/);
    expect(audited((e) => e.code === 'policy' && e.host === 'other.example.test')[0]!.details).toMatchObject({ method: 'POST', path: '/x' });
  });
});

describe('credential brokering', () => {
  it('the credential host gets the real key in place of the placeholder; the audit has no value', async () => {
    const r = await curl(['-H', `x-api-key: ${placeholder}`, apiUrl('/repos/k/1')]);
    expect(r.stdout).toContain(`"x-api-key":"${SECRET}"`);
    // Whatever the agent puts there, it is replaced (the agent cannot choose the key).
    const r2 = await curl(['-H', 'x-api-key: sk-agents-own', apiUrl('/repos/k/2')]);
    expect(r2.stdout).toContain(`"x-api-key":"${SECRET}"`);
    const ev = audited((e) => e.details?.path === '/repos/k/1')[0]!;
    expect(ev.details!.injected).toEqual([{ credential: 'api', host: 'api.example.test', via: 'header x-api-key', digest: 'digest-of-secret' }]);
    expect(JSON.stringify(events)).not.toContain(SECRET);
  });

  it('the placeholder sent to another granted host is blocked; so is the real secret, in any spelling', async () => {
    const other = `https://other.example.test:${api.port}/x`;
    const before = api.seen.length;
    const a = await curl(['-w', '\n%{http_code}', '-H', `authorization: Bearer ${placeholder}`, other]);
    expect(a.stdout).toMatch(/placeholder of credential api[\s\S]*\n403$/);
    const b = await curl(['-w', '\n%{http_code}', `${other}?k=${encodeURIComponent(placeholder)}`]);
    expect(b.stdout).toMatch(/\n403$/);
    const c = await curl(['-w', '\n%{http_code}', `${other}?d=${Buffer.from(SECRET).toString('base64')}`]);
    expect(c.stdout).toMatch(/brokered-secret:api[\s\S]*\n403$/);
    // Even to its own host, the real secret in the agent's own request is refused.
    const d = await curl(['-w', '\n%{http_code}', '-X', 'POST', '--data-binary', SECRET, apiUrl('/echo')]);
    expect(d.stdout).toMatch(/\n403$/);
    // In a host name (CONNECT target), before any lookup.
    const token = placeholder.split(':').pop()!.toLowerCase().replace(/[^a-z0-9]/g, '');
    const e = await curl(['-w', '%{http_code}', '-o', '/dev/null', `https://${token}.example.test:${api.port}/`]);
    expect(e.stdout).not.toBe('200');
    expect(api.seen.length).toBe(before);
    expect(audited((x) => x.code === 'placeholder').length).toBeGreaterThanOrEqual(2);
  });
});

describe('what is refused at the TLS layer', () => {
  it('upstreams with a self-signed or an expired certificate are refused at CONNECT, with the reason in the status line', async () => {
    for (const [name, port] of [['selfsigned.example.test', selfSigned.port], ['expired.example.test', expired.port]] as const) {
      const before = (name === 'selfsigned.example.test' ? selfSigned : expired).seen.length;
      const r = await curl(['-w', '%{http_code}', `https://${name}:${port}/`]);
      expect(r.stderr).toMatch(/CONNECT tunnel failed, response 502/);
      const raw = await curl(['-v', `https://${name}:${port}/`]);
      expect(raw.stderr).toMatch(/HTTP\/1\.1 502 Upstream certificate refused by agentbox \(upstream-certificate\)/);
      const ev = audited((e) => e.host === name && e.code === 'upstream-certificate')[0];
      expect(ev?.details?.tlsError).toMatch(name.startsWith('self') ? /SELF_SIGNED/ : /EXPIRED/);
      // Even a client that accepts anything (-k) gets nothing from that server.
      const k = await curl(['-k', '-w', '%{http_code}', `https://${name}:${port}/`]);
      expect(k.stdout).not.toMatch(/200/);
      expect((name === 'selfsigned.example.test' ? selfSigned : expired).seen.length).toBe(before);
    }
  });

  it('an SNI name other than the CONNECT host is refused in the handshake', async () => {
    const result = await new Promise<string>((resolve) => {
      const s = netConnect(Number(proxyUrl.split(':').pop()), '127.0.0.1', () => s.write(`CONNECT api.example.test:${api.port} HTTP/1.1\r\nHost: api.example.test:${api.port}\r\n\r\n`));
      s.once('data', () => {
        const t = tlsConnect({ socket: s, servername: 'other.example.test', ca: ca.certPem });
        t.on('secureConnect', () => resolve('connected'));
        t.on('error', (e) => resolve(`error ${e.message}`));
      });
    });
    expect(result).toMatch(/^error/);
    expect(audited((e) => e.code === 'sni-mismatch')[0]).toMatchObject({ host: 'api.example.test', details: { sni: 'other.example.test' } });
  });

  it('a Host header naming another host inside an inspected tunnel is refused', async () => {
    const r = await curl(['-w', '\n%{http_code}', '-H', `Host: other.example.test:${api.port}`, apiUrl('/repos/x')]);
    expect(r.stdout).toMatch(/\n403$/);
    expect(audited((e) => e.code === 'host-mismatch' && e.action === 'egress.https').length).toBeGreaterThan(0);
  });

  it('a pinned client (trusting only the real CA) works through an inspect: false host, and fails on an inspected one', async () => {
    const ok = await curl(['--cacert', internetPem, '-o', '/dev/null', '-w', '%{http_code}', `https://pinned.example.test:${pinned.port}/`]);
    expect(ok.stdout).toBe('200');
    const opaque = audited((e) => e.host === 'pinned.example.test' && e.action === 'egress.connect' && e.decision === 'allow')[0]!;
    expect(opaque.details?.inspected).toBeUndefined();
    const bad = await curl(['--cacert', internetPem, '-o', '/dev/null', '-w', '%{http_code}', apiUrl('/repos/x')]);
    expect(bad.stdout).toBe('000');
  });

  /** Raw HTTP/1.1 inside an inspected tunnel to api.example.test; resolves with everything read. */
  const rawInTunnel = (text: string) =>
    new Promise<string>((resolve) => {
      const s = netConnect(Number(proxyUrl.split(':').pop()), '127.0.0.1', () => s.write(`CONNECT api.example.test:${api.port} HTTP/1.1\r\nHost: api.example.test:${api.port}\r\n\r\n`));
      s.once('data', () => {
        const t = tlsConnect({ socket: s, servername: 'api.example.test', ca: ca.certPem, ALPNProtocols: ['http/1.1'] }, () => t.write(text));
        let buf = '';
        t.on('data', (d) => (buf += d.toString()));
        t.on('close', () => resolve(buf));
        t.on('error', () => resolve(buf));
        setTimeout(() => {
          t.destroy();
          resolve(buf);
        }, 3000);
      });
    });

  it('an Upgrade that is not a WebSocket handshake cannot carry pipelined requests past the rules', async () => {
    // Attack: "upgrade" to anything, then pipeline a DELETE the rules deny. Defence: only
    // GET + Upgrade: websocket with no body passes, and nothing is relayed before a 101.
    const before = api.seen.length;
    const r = await rawInTunnel(`GET /repos/x HTTP/1.1\r\nHost: api.example.test:${api.port}\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nDELETE /repos/o/r HTTP/1.1\r\nHost: api.example.test:${api.port}\r\n\r\n`);
    expect(r).toMatch(/^HTTP\/1\.1 403 Forbidden by agentbox \(bad-request\)/);
    const w = await rawInTunnel(`GET /ws HTTP/1.1\r\nHost: api.example.test:${api.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello`);
    expect(w).toMatch(/^HTTP\/1\.1 403/);
    expect(api.seen.slice(before).some((x) => x.method === 'DELETE')).toBe(false);
  });

  it('a lower-case HTTP/2 method and TRACE are refused (the upstream would upper-case and echo)', async () => {
    const before = api.seen.length;
    const { connect: h2 } = await import('node:http2');
    const status = await new Promise<number>((resolve) => {
      const s = netConnect(Number(proxyUrl.split(':').pop()), '127.0.0.1', () => s.write(`CONNECT api.example.test:${api.port} HTTP/1.1\r\nHost: api.example.test:${api.port}\r\n\r\n`));
      s.once('data', () => {
        const c = h2(`https://api.example.test:${api.port}`, { createConnection: () => tlsConnect({ socket: s, servername: 'api.example.test', ca: ca.certPem, ALPNProtocols: ['h2'] }) });
        const q = c.request({ ':method': 'delete', ':path': '/repos/o/r' });
        q.on('response', (h) => resolve(Number(h[':status'])));
        q.on('error', () => resolve(0));
        q.end();
        setTimeout(() => resolve(-1), 3000);
      });
    });
    expect(status).toBe(400);
    expect((await curl(['-o', '/dev/null', '-w', '%{http_code}', '-X', 'TRACE', apiUrl('/repos/x')])).stdout).toBe('403');
    expect(api.seen.slice(before).some((x) => x.method === 'DELETE' || x.method === 'TRACE')).toBe(false);
  });

  it('a server reflecting the injected key in a response header does not hand it to the agent', async () => {
    const r = await curl(['-D', '-', '-o', '/dev/null', '-H', `x-api-key: ${placeholder}`, apiUrl('/repos/reflect')]);
    expect(r.stdout).toMatch(/^HTTP\/2 200/m);
    expect(r.stdout).not.toContain(SECRET);
    expect(r.stdout.toLowerCase()).not.toMatch(/^location:/m);
    expect(audited((e) => /carried credential api; it was removed/.test(e.reason)).length).toBeGreaterThan(0);
  });

  it('a WebSocket upgrade is checked as a request, then relayed', async () => {
    const result = await new Promise<string>((resolve) => {
      const s = netConnect(Number(proxyUrl.split(':').pop()), '127.0.0.1', () => s.write(`CONNECT api.example.test:${api.port} HTTP/1.1\r\nHost: api.example.test:${api.port}\r\n\r\n`));
      s.once('data', () => {
        const t = tlsConnect({ socket: s, servername: 'api.example.test', ca: ca.certPem, ALPNProtocols: ['http/1.1'] }, () => {
          t.write(`GET /ws HTTP/1.1\r\nHost: api.example.test:${api.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nx-api-key: ${placeholder}\r\n\r\n`);
        });
        let buf = '';
        t.on('data', (d) => {
          buf += d.toString('latin1');
          // A masked text frame (zero mask: the payload reads as written); frames are scanned, then relayed.
          if (buf.includes('101') && !buf.includes('ping')) t.write(Buffer.concat([Buffer.from([0x81, 0x84, 0, 0, 0, 0]), Buffer.from('ping')]));
          if (buf.includes('ping')) {
            t.destroy();
            resolve(buf);
          }
        });
        t.on('error', (e) => resolve(`error ${e.message}`));
        setTimeout(() => resolve(buf), 5000);
      });
    });
    expect(result).toMatch(/^HTTP\/1\.1 101[\s\S]*\x81\x84\0\0\0\0ping$/);
    expect(api.seen.find((x) => x.url === '/ws')!.headers['x-api-key']).toBe(SECRET);
  });
});
