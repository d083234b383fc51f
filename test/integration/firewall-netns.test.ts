/**
 * Attack: the agent connects straight to a host or port it was not granted, over TCP
 * (IPv4 or IPv6) or UDP (DNS), bypassing the egress proxy.
 * Defence: owner-match rules for the agent's uid, loaded for real into a network
 * namespace this test creates (never the host's tables): a process under that uid
 * reaches a granted loopback port and is refused on every other; other uids are
 * unaffected. Checked for the iptables/ip6tables artifacts and the nft artifact.
 */
import { execa } from 'execa';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPlan } from '../../src/plan/plan.js';
import { generate } from '../../src/generate/index.js';
import { model, templates } from '../helpers/load.js';
import { NetNs } from '../helpers/real-parsers.js';

const AGENT_UID = 64000;
const OTHER_UID = 64001;
const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: fwtest }
extends: [organizer]
agent: { command: [/usr/bin/true], uid: ${AGENT_UID} }
capabilities:
  - net:connect:127.0.0.1:18443
  - net:connect:[::1]:18643
  - net:connect:api.example.com:443
deny:
  - net:connect:127.0.0.2:18443
`);
const artifacts = generate(m, buildPlan(m, ['linux']), templates);
const work = mkdtempSync(join(tmpdir(), 'agentbox-fw-'));
chmodSync(work, 0o755);
const file = (control: string) => {
  const f = join(work, artifacts.find((a) => a.control === control)!.path.split('/').pop()!);
  writeFileSync(f, artifacts.find((a) => a.control === control)!.content);
  return f;
};

// A listener per port, and a client that reports what happened to one connection attempt.
const serverJs = join(work, 'server.cjs');
writeFileSync(serverJs, `const net = require('net');
for (const [host, port] of [['127.0.0.1', 18443], ['127.0.0.1', 18444], ['127.0.0.2', 18443], ['127.0.0.1', 3128], ['::1', 18643], ['::1', 18644]]) {
  net.createServer((s) => s.end('ok')).listen(port, host);
}
setInterval(() => {}, 1000);
process.stdout.write('ready\\n');
`);
const clientJs = join(work, 'client.cjs');
writeFileSync(clientJs, `const [kind, host, port] = process.argv.slice(2);
if (kind === 'udp') {
  const s = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.send(Buffer.from('q'), Number(port), host, (err) => { console.log(err ? 'error ' + err.code : 'sent'); s.close(); });
} else {
  const c = require('net').connect({ host, port: Number(port), timeout: 2000 });
  c.on('data', (d) => { console.log('connected ' + d); c.destroy(); });
  c.on('error', (e) => console.log('error ' + e.code));
  c.on('timeout', () => { console.log('timeout'); c.destroy(); });
}
`);
for (const f of [serverJs, clientJs]) chmodSync(f, 0o644);

async function attempt(ns: NetNs, uid: number, kind: 'tcp' | 'udp', host: string, port: number): Promise<string> {
  const r = await ns.exec('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, clientJs, kind, host, String(port)]);
  return String(r.stdout).trim() || String(r.stderr).trim();
}

async function withServers(ns: NetNs) {
  const server = execa('ip', ['netns', 'exec', ns.name, process.execPath, serverJs], { stdin: 'ignore', reject: false });
  await new Promise<void>((resolve, reject) => {
    server.stdout!.on('data', (d: Buffer) => (String(d).includes('ready') ? resolve() : undefined));
    server.on('exit', () => reject(new Error('server exited')));
  });
  // Wrapped: an execa subprocess is a promise, and awaiting it would wait for the server to exit.
  return { kill: () => server.kill('SIGKILL') };
}

async function expectEnforced(ns: NetNs) {
  // Granted, IPv4 and IPv6 literal addresses.
  expect(await attempt(ns, AGENT_UID, 'tcp', '127.0.0.1', 18443)).toBe('connected ok');
  expect(await attempt(ns, AGENT_UID, 'tcp', '::1', 18643)).toBe('connected ok');
  // The egress proxy port is reachable (host names go through it).
  expect(await attempt(ns, AGENT_UID, 'tcp', '127.0.0.1', 3128)).toBe('connected ok');
  // Not granted: another port, the other family's port, a denied address.
  expect(await attempt(ns, AGENT_UID, 'tcp', '127.0.0.1', 18444)).toBe('error ECONNREFUSED');
  expect(await attempt(ns, AGENT_UID, 'tcp', '::1', 18644)).toBe('error ECONNREFUSED');
  expect(await attempt(ns, AGENT_UID, 'tcp', '127.0.0.2', 18443)).toBe('error ECONNREFUSED');
  // UDP (DNS) is refused outright.
  expect(await attempt(ns, AGENT_UID, 'udp', '127.0.0.1', 53)).toMatch(/^error (EPERM|ECONNREFUSED)$/);
  // Another uid is not governed by the agent's rules.
  expect(await attempt(ns, OTHER_UID, 'tcp', '127.0.0.1', 18444)).toBe('connected ok');
  expect(await attempt(ns, OTHER_UID, 'tcp', '127.0.0.2', 18443)).toBe('connected ok');
}

describe('owner-match firewall rules enforced in a network namespace', () => {
  let ns: NetNs;
  let server: Awaited<ReturnType<typeof withServers>>;
  beforeAll(async () => {
    ns = await NetNs.create('abfw');
    await ns.exec('ip', ['addr', 'add', '127.0.0.2/8', 'dev', 'lo']);
    server = await withServers(ns);
  });
  afterAll(async () => {
    server?.kill();
    await ns?.destroy();
  });

  it('before any rule, the agent uid reaches every port (the test can fail)', async () => {
    expect(await attempt(ns, AGENT_UID, 'tcp', '127.0.0.1', 18444)).toBe('connected ok');
  });

  it('iptables + ip6tables artifacts', async () => {
    for (const [tool, f] of [['iptables', file('iptables')], ['ip6tables', file('ip6tables')]] as const) {
      expect((await ns.exec(`${tool}-restore`, ['--noflush', f])).exitCode).toBe(0);
      expect((await ns.exec(tool, ['-I', 'OUTPUT', '1', '-m', 'owner', '--uid-owner', String(AGENT_UID), '-j', 'AGENTBOX-FWTEST'])).exitCode).toBe(0);
    }
    await expectEnforced(ns);
    for (const tool of ['iptables', 'ip6tables']) {
      await ns.exec(tool, ['-D', 'OUTPUT', '-m', 'owner', '--uid-owner', String(AGENT_UID), '-j', 'AGENTBOX-FWTEST']);
      await ns.exec(tool, ['-F', 'AGENTBOX-FWTEST']);
      await ns.exec(tool, ['-X', 'AGENTBOX-FWTEST']);
    }
    expect(await attempt(ns, AGENT_UID, 'tcp', '127.0.0.1', 18444)).toBe('connected ok');
  });

  it('nft artifact, loaded twice (idempotent)', async () => {
    for (let i = 0; i < 2; i++) expect((await ns.exec('nft', ['-f', file('nftables')])).exitCode).toBe(0);
    const listed = String((await ns.exec('nft', ['list', 'ruleset'])).stdout);
    expect(listed.match(/table inet agentbox_fwtest/g)).toHaveLength(1);
    await expectEnforced(ns);
    await ns.exec('nft', ['delete', 'table', 'inet', 'agentbox_fwtest']);
  });
});
