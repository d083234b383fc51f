/**
 * A hostile agent in every runtime: process (real bubblewrap, Landlock, seccomp,
 * cgroups), container on runc and container on gVisor's runsc (real Docker Engine,
 * agentbox's own image), and micro-VM (QEMU -M microvm, Debian's kernel, TCG here),
 * each behind the session's egress proxy. Each attack below is attempted from inside the box
 * and asserted blocked; each granted action is asserted to work; afterwards every
 * file outside the writable grants is byte-identical and the writable grant is
 * reverted. Run through the CLI as a user would.
 *
 * Attacks: read a denied path (~/.ssh) inside a granted one; read and list outside the
 * grants; write outside the grants and into a read-only grant; write /etc; read
 * /etc/shadow; see host PIDs; reach docker.sock; read a secret from the launching
 * environment; be root or regain privileges; mount; create a user namespace; connect
 * to a non-allowlisted port through the proxy; connect directly around the proxy; send
 * UDP; fork-bomb against the pids limit.
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createUnixServer, type Server as NetServer, type AddressInfo } from 'node:net';
import { createSocket, type Socket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-hostile-'));
chmodSync(base, 0o755);
const home = join(base, 'home');
const outside = join(base, 'outside');
const stateRoot = join(base, 'state');

/** The runtimes the same suite runs on, and how `launch` selects each. */
const RUNTIMES: { name: string; args: string[] }[] = [
  { name: 'process', args: [] },
  { name: 'container (runc)', args: ['--runtime', 'container'] },
  { name: 'container (gVisor runsc)', args: ['--runtime', 'container', '--isolation', 'gvisor'] },
  { name: 'microvm (QEMU)', args: ['--runtime', 'microvm'] },
];
let sink: Server;
let other: Server;
let sinkPort = 0;
let otherPort = 0;
let fakeDocker: NetServer | undefined;
let udp: Socket | undefined;
let udpPort = 0;
let udpReceived = 0;
const DOCKER_SOCK = '/run/docker.sock';

const HOSTILE = `#!/bin/sh
r() { printf '%s=%s\\n' "$1" "$2"; }
t() { if sh -c "$2" >/dev/null 2>&1; then r "$1" yes; else r "$1" no; fi; }
r uid "$(id -u)"
t ssh_read "cat $HOME/.ssh/id_rsa"
t ssh_list "ls $HOME/.ssh/"
r home_listing "$(ls -A $HOME | tr '\\n' ',')"
t granted_read "grep -q granted $HOME/Documents/a.txt"
t outside_read "cat ${outside}/secret"
t outside_list "ls ${outside}"
t srv_list "ls /srv/"
t outside_write "echo x > ${outside}/new"
t ro_grant_write "echo x > $HOME/Documents/a.txt"
t ro_grant_create "echo x > $HOME/Documents/new.txt"
t granted_write "echo changed > $HOME/work/file && grep -q changed $HOME/work/file"
t granted_create "echo new > $HOME/work/created"
t granted_delete "rm $HOME/work/delete-me"
t etc_write "echo x >> /etc/hosts"
t shadow_read "cat /etc/shadow"
r pids_visible "$(ls -d /proc/[0-9]* | wc -l)"
t docker_sock "test -e ${DOCKER_SOCK} || test -e /var/run/docker.sock"
r secret_env "\${AWS_SECRET_ACCESS_KEY:-absent}"
r ssh_auth_sock "\${SSH_AUTH_SOCK:-absent}"
t environ_leak "grep -q AKIA /proc/1/environ"
t become_root "su -c true root"
t mount_tmpfs "mount -t tmpfs none $HOME/work"
t userns "unshare -U true"
t proxy_allowed "python3 -c 'import urllib.request as u; assert u.urlopen(\\"http://127.0.0.1:${'${SINK}'}/ok\\").read() == b\\"sink\\"'"
t proxy_denied_port "python3 -c 'import urllib.request as u; u.urlopen(\\"http://127.0.0.1:${'${OTHER}'}/\\")'"
r proxy_denied_body "$(python3 -c 'import urllib.request as u
try: u.urlopen("http://127.0.0.1:'"$OTHER"'/")
except Exception as e: print(e.read().decode().splitlines()[0])' 2>&1)"
t direct_tcp "python3 -c 'import socket; socket.create_connection((\\"127.0.0.1\\", ${'${SINK}'}), timeout=2)'"
t direct_tcp_other "python3 -c 'import socket; socket.create_connection((\\"127.0.0.1\\", ${'${OTHER}'}), timeout=2)'"
t udp_send "python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b\\"q\\", (\\"127.0.0.1\\", ${'${UDP}'}))'"
t udp6_send "python3 -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.sendto(b\\"q\\", (\\"::1\\", ${'${UDP}'}))'"
t raw_socket "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)'"
t dns_lookup "python3 -c 'import socket; socket.getaddrinfo(\\"example.com\\", 80)'"
r forkbomb "$(python3 -c '
import os, time
n = 0
try:
    for i in range(500):
        if os.fork() == 0:
            time.sleep(3); getattr(os, "_exit")(0)
        n += 1
except OSError:
    pass
print(n)')"
`;

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out[p] = `${st.mode.toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir);
  return out;
}

let before: Record<string, string> = {};

beforeAll(async () => {
  for (const d of [join(home, 'Documents'), join(home, '.ssh'), join(home, 'work'), outside]) mkdirSync(d, { recursive: true });
  writeFileSync(join(home, 'Documents/a.txt'), 'granted');
  writeFileSync(join(home, '.ssh/id_rsa'), 'PRIVATE KEY');
  writeFileSync(join(outside, 'secret'), 'SECRET');
  writeFileSync(join(home, 'work/file'), 'original');
  writeFileSync(join(home, 'work/delete-me'), 'keep me');
  writeFileSync(join(home, 'hostile.sh'), HOSTILE, { mode: 0o755 });
  for (const p of [home, join(home, 'Documents'), join(home, '.ssh'), outside]) chmodSync(p, 0o755);
  for (const f of ['Documents/a.txt', '.ssh/id_rsa', 'hostile.sh']) chmodSync(join(home, f), f === 'hostile.sh' ? 0o755 : 0o644);
  chmodSync(join(outside, 'secret'), 0o644);
  chownSync(join(home, 'work'), 64000, 64000);
  for (const f of ['file', 'delete-me']) chownSync(join(home, 'work', f), 64000, 64000);

  sink = createServer((_q, s) => s.end('sink'));
  other = createServer((_q, s) => s.end('other'));
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  sinkPort = (sink.address() as AddressInfo).port;
  otherPort = (other.address() as AddressInfo).port;
  udp = createSocket('udp4');
  udp.on('message', () => udpReceived++);
  await new Promise<void>((r) => udp!.bind(0, '127.0.0.1', r));
  udpPort = udp.address().port;
  if (!existsSync(DOCKER_SOCK)) {
    fakeDocker = createUnixServer();
    await new Promise<void>((r) => fakeDocker!.listen(DOCKER_SOCK, r));
  }

  writeFileSync(join(base, 'hostile.yaml'), `apiVersion: agentbox/v1
kind: Agent
metadata: { name: hostile }
extends: [organizer]
agent:
  command: [${join(home, 'hostile.sh')}]
  env: { SINK: "${sinkPort}", OTHER: "${otherPort}", UDP: "${udpPort}" }
capabilities:
  - fs:read:~
  - fs:write:~/work
  - net:connect:127.0.0.1:${sinkPort}
  - exec:/usr/bin
  - exec:${join(home, 'hostile.sh')}
limits: { pids: 64, memory: 512MiB }
`);
  before = snapshot(base);
  // Parent of every runtime's state dir: traversable, as /var/lib is for /var/lib/agentbox.
  mkdirSync(stateRoot, { mode: 0o755 });
  chmodSync(stateRoot, 0o755);
}, 120_000);

afterAll(async () => {
  sink?.close();
  other?.close();
  udp?.close();
  if (fakeDocker) {
    fakeDocker.close();
    rmSync(DOCKER_SOCK, { force: true });
  }
});

describe.each(RUNTIMES)('hostile agent in the $name runtime', (rt) => {
  let result: Record<string, string> = {};
  let code = -1;
  let stderr = '';
  const state = join(stateRoot, rt.name.replace(/[^a-z]+/g, '-'));
  beforeAll(async () => {
    const r = await execa(process.execPath, [BIN, 'launch', join(base, 'hostile.yaml'), '--home', home, ...rt.args], {
      reject: false,
      stdin: 'ignore',
      env: { AGENTBOX_STATE_DIR: state, AWS_SECRET_ACCESS_KEY: 'AKIAEXAMPLESECRET', SSH_AUTH_SOCK: '/tmp/ssh-agent.sock', NO_COLOR: '1' },
    });
    code = r.exitCode ?? -1;
    stderr = String(r.stderr);
    result = Object.fromEntries(String(r.stdout).split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  }, 180_000);

  it('ran to the end with its own exit code', () => {
    expect(code, stderr).toBe(0);
    expect(Object.keys(result).length).toBeGreaterThan(25);
  });
  it('is not root and cannot become root', () => {
    expect(result.uid).toBe('64000');
    expect(result.become_root).toBe('no');
  });
  it('cannot read or list a denied path inside a granted one', () => {
    expect(result).toMatchObject({ ssh_read: 'no', ssh_list: 'no' });
  });
  it('cannot read or list outside its grants', () => {
    expect(result).toMatchObject({ outside_read: 'no', outside_list: 'no', srv_list: 'no' });
  });
  it('cannot write outside its grants, into a read-only grant, or /etc', () => {
    expect(result).toMatchObject({ outside_write: 'no', ro_grant_write: 'no', ro_grant_create: 'no', etc_write: 'no' });
  });
  it('cannot read /etc/shadow', () => {
    expect(result.shadow_read).toBe('no');
  });
  it('sees only its own processes', () => {
    expect(Number(result.pids_visible)).toBeLessThan(10);
  });
  it('has no host sockets and no secrets from the launching environment', () => {
    expect(result).toMatchObject({ docker_sock: 'no', secret_env: 'absent', ssh_auth_sock: 'absent', environ_leak: 'no' });
  });
  it('cannot mount or create namespaces', () => {
    expect(result).toMatchObject({ mount_tmpfs: 'no', userns: 'no' });
  });
  it('reaches the granted host through the proxy, and only it', () => {
    expect(result.proxy_allowed).toBe('yes');
    expect(result.proxy_denied_port).toBe('no');
    expect(result.proxy_denied_body).toMatch(/^agentbox refused the connection to 127\.0\.0\.1:\d+\.$/);
  });
  it('cannot connect around the proxy, send UDP or resolve names', () => {
    expect(result).toMatchObject({ direct_tcp: 'no', direct_tcp_other: 'no', udp_send: 'no', udp6_send: 'no', raw_socket: 'no', dns_lookup: 'no' });
    expect(udpReceived).toBe(0);
  });
  it('a fork bomb stops at the pids limit, and the limit hit is audited where the host can see it', () => {
    expect(Number(result.forkbomb)).toBeGreaterThan(0);
    expect(Number(result.forkbomb)).toBeLessThan(64);
    const audit = readFileSync(join(state, 'audit.jsonl'), 'utf8');
    // gVisor and the micro-VM bound the agent's processes inside their own kernel
    // (RLIMIT_NPROC); the host sees no per-process count to audit.
    if (!rt.name.includes('gVisor') && !rt.name.includes('microvm')) expect(audit).toMatch(/"action":"limit\.pids"/);
  });
  it('granted reads and writes work inside the box', () => {
    expect(result).toMatchObject({ granted_read: 'yes', granted_write: 'yes', granted_create: 'yes', granted_delete: 'yes' });
    expect(result.home_listing).toMatch(/Documents/);
  });
  it('afterwards every file is byte-identical: outside the grants untouched, the writable grant reverted', () => {
    const after = snapshot(base);
    for (const k of Object.keys(after)) if (k.startsWith(stateRoot)) delete after[k];
    expect(after).toEqual(before);
    expect(stderr).toMatch(/3 changes reverted:/);
    expect(stderr).toMatch(/modified\s+~\/work\/file/);
    expect(stderr).toMatch(/added\s+~\/work\/created/);
    expect(stderr).toMatch(/deleted\s+~\/work\/delete-me/);
  });
  it('every denial and the session are in the audit log', () => {
    const events = readFileSync(join(state, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; decision: string; resource: string });
    expect(events[0]).toMatchObject({ action: 'token.minted' });
    expect(events[1]).toMatchObject({ action: 'launch', decision: 'allow' });
    expect(events.some((e) => e.action === 'egress.http' && e.decision === 'deny' && e.resource === `127.0.0.1:${otherPort}`)).toBe(true);
    expect(events.some((e) => e.action === 'egress.http' && e.decision === 'allow' && e.resource === `127.0.0.1:${sinkPort}`)).toBe(true);
    expect(events.at(-1)).toMatchObject({ action: 'revert' });
    expect(stderr).toMatch(/egress: \d+ allowed, \d+ denied \(127\.0\.0\.1:\d+ ×\d+\)/);
  });
  it('the audit log of the hostile session verifies (chain and signatures)', async () => {
    const r = await execa(process.execPath, [BIN, 'audit', 'verify', '--full'], { reject: false, env: { AGENTBOX_STATE_DIR: state } });
    expect(r.exitCode, String(r.stdout)).toBe(0);
  });
});
