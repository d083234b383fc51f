/**
 * agentboxd and a system-service agent under a real systemd: `apply --root --offline`
 * installs the agent, its firewall unit and agentboxd into a Debian rootfs, and
 * systemd-nspawn boots it (systemd as PID 1, a private network with loopback only).
 * This package and the host's node are bound in read-only, with /usr/local/bin/agentbox
 * where npm -g puts it, which is where the generated units expect it.
 *
 * Attacks and defences, from inside the booted system:
 * - the agent reaches a host it was not granted, or uploads a secret. Defence: the
 *   daemon's proxy on the address the unit names: allowlist and DLP, a 403 naming the rule;
 * - the agent goes around the proxy (a direct connection to a host). Defence: the
 *   firewall unit loaded its nft rules before the agent started: the agent's uid may
 *   reach only the proxy port (and literal grants);
 * - the agent keeps running and sending when a responder runs `agentbox quarantine`
 *   inside the container, or goes around the proxy to a literal-address grant. Defence:
 *   its processes are frozen through the unit's cgroup, its connections shut down, the
 *   daemon closes its proxy and puts reject rules at the head of its nft table;
 * - the daemon is stopped or dies. Defence: the agent's unit has BindsTo= and Requires=
 *   on agentboxd.service, so systemd stops it: it never runs without its proxy.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentbox } from '../test/helpers/cli.js';
import { ROOT } from '../test/helpers/load.js';
import { bootUntilPoweroff, overlayRoot } from '../test/helpers/rootfs.js';

const SINK = 18081;
const OTHER = 18082;
const PROXY = 3128;
const AKIA = 'AKIAZ7Q3KDXXW2LMP4RT';

const MANIFEST = `apiVersion: agentbox/v1
kind: Agent
metadata: { name: svc }
agent: { command: [/usr/bin/node, /opt/agent.mjs] }
capabilities:
  - net:connect:api.example.com:443
  - net:connect:127.0.0.1:${SINK}
  - fs:write:/srv/out
  - exec:/usr/bin
egress:
  dlp: { detectors: [aws-access-key] }
`;

/** The agent: three requests through the proxy its unit names, one around it, then a tick every 50 ms. */
const AGENT = `import http from 'node:http';
import net from 'node:net';
import { appendFileSync } from 'node:fs';
const out = (k, v) => appendFileSync('/srv/out/agent', k + '=' + JSON.stringify(v) + '\\n');
const proxy = new URL(process.env.HTTP_PROXY);
const get = (url, body) => new Promise((resolve) => {
  const r = http.request({ host: proxy.hostname, port: Number(proxy.port), method: body ? 'POST' : 'GET', path: url, headers: { host: new URL(url).host } }, (res) => {
    let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => resolve({ status: res.statusCode, body: b }));
  });
  r.on('error', (e) => resolve({ status: 0, body: e.code }));
  r.end(body);
});
out('proxy', process.env.HTTP_PROXY);
out('granted', await get('http://127.0.0.1:${SINK}/granted'));
out('other', await get('http://127.0.0.1:${OTHER}/other'));
out('dlp', await get('http://127.0.0.1:${SINK}/upload', 'key=${AKIA}'));
out('direct', await new Promise((resolve) => {
  const s = net.connect(${OTHER}, '127.0.0.1');
  s.setTimeout(2000, () => { s.destroy(); resolve('timeout'); });
  s.on('connect', () => { s.destroy(); resolve('connected'); });
  s.on('error', (e) => resolve(e.code));
}));
out('ready', true);
for (;;) { await get('http://127.0.0.1:${SINK}/tick'); await new Promise((r) => setTimeout(r, 50)); }
`;

/** A loopback sink for both ports: counts what arrives. */
const SINK_JS = `import http from 'node:http';
import { appendFileSync } from 'node:fs';
for (const port of [${SINK}, ${OTHER}]) http.createServer((req, res) => {
  let b = ''; req.on('data', (c) => (b += c));
  req.on('end', () => { appendFileSync('/out/sink', port + ' ' + req.method + ' ' + req.url + ' ' + b + '\\n'); res.end('SINK-OK'); });
}).listen(port, '127.0.0.1');
`;

/** A direct connection to the literal grant, as the agent's uid but outside its unit: only nft stands in the way. */
const DIRECT_JS = `import net from 'node:net';
const s = net.connect(${SINK}, '127.0.0.1');
s.setTimeout(2000, () => { console.log('timeout'); process.exit(0); });
s.on('connect', () => { console.log('connected'); process.exit(0); });
s.on('error', (e) => { console.log(e.code); process.exit(0); });
`;

/** The responder's script, run as root inside the booted system once the agent is ready. */
const RUNNER_SH = `#!/bin/sh
o=/out
exec > $o/runner.log 2>&1
set -x
systemctl start sink.service
agentbox daemon status --json > $o/status-before.json
systemctl start agentbox-svc.service
for i in $(seq 1 200); do grep -q '^ready=' /srv/out/agent 2>/dev/null && break; sleep 0.1; done
systemctl is-active agentbox-svc-firewall.service > $o/firewall-active
nft list ruleset > $o/nft.txt 2>&1
sleep 0.5
setpriv --reuid 64000 --regid 64000 --clear-groups /usr/bin/node /opt/direct.mjs > $o/direct-before
agentbox ps --json > $o/ps.json
s=$(agentbox ps -q --filter agent=svc)
agentbox quarantine "$s" --reason "test from inside" --json > $o/quarantine.json 2> $o/quarantine.err
echo $? > $o/quarantine.code
grep -c ' /tick' $o/sink > $o/ticks-after-command
pid=$(sed -n 's/.*"pid": \\([0-9]*\\),.*/\\1/p' /var/lib/agentbox/sessions/$s.json | head -1)
echo "$pid" > $o/agent-pid
date +%s.%N > $o/t-quarantined
for f in /sys/fs/cgroup/unified/system.slice/agentbox-svc.service/cgroup.events /sys/fs/cgroup/freezer/agentbox-svc/freezer.state; do [ -f $f ] && { echo "$f"; cat $f; } >> $o/freezer; done
setpriv --reuid 64000 --regid 64000 --clear-groups /usr/bin/node /opt/direct.mjs > $o/direct-after
sleep 1
grep -c ' /tick' $o/sink > $o/ticks-later
date +%s.%N > $o/t-stop
systemctl stop agentboxd.service
date +%s.%N >> $o/t-stop
systemctl is-active agentbox-svc.service > $o/agent-after-daemon-stop
systemctl show -p ActiveState -p Result agentbox-svc.service >> $o/agent-after-daemon-stop
journalctl -u agentboxd.service -u agentbox-svc.service -u agentbox-svc-firewall.service --no-pager > $o/journal 2>&1
systemctl poweroff
`;

const unit = (description: string, exec: string, extra = '') => `[Unit]\nDescription=${description}\n${extra}\n[Service]\n${exec}\n`;

describe('agentboxd under a real systemd (systemd-nspawn --boot)', () => {
  let root: string;
  let dispose: () => Promise<void>;
  let out: string;
  const read = (f: string) => (existsSync(join(out, f)) ? readFileSync(join(out, f), 'utf8') : '');
  const agentOut = () => Object.fromEntries(read('../srv/out/agent').split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), JSON.parse(l.slice(l.indexOf('=') + 1)) as unknown]));

  beforeAll(async () => {
    ({ root, dispose } = await overlayRoot());
    out = join(root, 'out');
    mkdirSync(out);
    mkdirSync(join(root, 'srv/out'), { recursive: true });
    mkdirSync(join(root, 'opt/agentbox'), { recursive: true });
    writeFileSync(join(root, 'usr/bin/node'), '');
    writeFileSync(join(root, 'opt/agent.mjs'), AGENT);
    writeFileSync(join(root, 'opt/sink.mjs'), SINK_JS);
    writeFileSync(join(root, 'opt/direct.mjs'), DIRECT_JS);
    writeFileSync(join(root, 'usr/local/bin/agentbox'), '#!/bin/sh\nexec /usr/bin/node /opt/agentbox/bin/agentbox.js "$@"\n', { mode: 0o755 });
    writeFileSync(join(root, 'opt/runner.sh'), RUNNER_SH, { mode: 0o755 });
    const manifest = join(root, '..', 'svc.yaml');
    writeFileSync(manifest, MANIFEST);
    const applied = await agentbox(['apply', manifest, '--root', root, '--offline']);
    if (applied.code !== 0) throw new Error(applied.stderr);
    // The agent account owns its write grant (docs/linux-controls.md).
    const { chownSync } = await import('node:fs');
    chownSync(join(root, 'srv/out'), 64000, 64000);
    chmodSync(join(root, 'srv/out'), 0o755);
    writeFileSync(join(root, 'etc/systemd/system/sink.service'), unit('loopback sink', 'ExecStart=/usr/bin/node /opt/sink.mjs'));
    writeFileSync(join(root, 'etc/systemd/system/runner.service'), unit('the responder', 'Type=oneshot\nExecStart=/opt/runner.sh', 'After=multi-user.target agentboxd.service') + '[Install]\nWantedBy=multi-user.target\n');
    const { symlinkSync } = await import('node:fs');
    symlinkSync('/etc/systemd/system/runner.service', join(root, 'etc/systemd/system/multi-user.target.wants/runner.service'));
    const boot = await bootUntilPoweroff(root, 150, ['--bind-ro=/usr/bin/node', `--bind-ro=${ROOT}:/opt/agentbox`]);
    if (!existsSync(join(out, 'quarantine.code'))) throw new Error(`the runner did not reach the quarantine; boot exit ${boot.code}\n${boot.log.slice(-3000)}\n${read('runner.log').slice(-3000)}\n${read('journal').slice(-3000)}`);
  }, 300_000);
  afterAll(async () => dispose?.());

  it('agentboxd started at boot, healthy, governing the agent on the address its unit names', () => {
    const s = JSON.parse(read('status-before.json')) as { running: boolean; problem: string | null; agents: { agent: string; listen: string; listening: boolean }[] };
    expect(s).toMatchObject({ running: true, problem: null });
    expect(s.agents).toEqual([expect.objectContaining({ agent: 'svc', listen: `127.0.0.1:${PROXY}`, listening: true })]);
    expect(agentOut().proxy).toBe(`http://127.0.0.1:${PROXY}`);
  });

  it('the agent reaches its granted loopback host through the daemon; another is refused with a 403 naming the rule', () => {
    const a = agentOut() as Record<string, { status: number; body: string }>;
    expect(a.granted).toEqual({ status: 200, body: 'SINK-OK' });
    expect(a.other!.status).toBe(403);
    expect(a.other!.body).toContain(`net:connect:127.0.0.1:${SINK} (capabilities[1]) allows port ${SINK} only`);
    expect(read('sink')).not.toMatch(new RegExp(`^${OTHER} `, 'm'));
  });

  it('a DLP match is blocked and never arrives', () => {
    const a = agentOut() as Record<string, { status: number; body: string }>;
    expect(a.dlp!.status).toBe(403);
    expect(a.dlp!.body).toMatch(/aws-access-key/);
    expect(read('sink')).not.toContain(AKIA);
  });

  it('the firewall unit loaded its rules before the agent: a direct connection around the proxy is refused', () => {
    expect(read('nft.txt')).toMatch(/meta skuid 64000 jump agent/);
    expect(agentOut().direct).toBe('ECONNREFUSED');
  });

  it('agentbox quarantine from inside the container freezes the agent, and nothing arrives after it returns', () => {
    expect(read('quarantine.code').trim(), `${read('quarantine.err')}\n${read('quarantine.json')}\n${read('freezer')}\n${read('ps.json').slice(0, 3000)}`).toBe('0');
    const q = JSON.parse(read('quarantine.json')) as { quarantined: boolean; frozenBy: string; launcherAnswered: boolean; isolatedMs: number }[];
    expect(q[0]).toMatchObject({ quarantined: true, launcherAnswered: true });
    expect(q[0]!.isolatedMs).toBeLessThan(250);
    console.log(`nspawn: agent frozen in ${q[0]!.isolatedMs.toFixed(1)} ms by ${q[0]!.frozenBy}`);
    // The unit's own cgroup (v2 under the hybrid hierarchy here), holding the agent, frozen by the kernel.
    expect(read('freezer')).toMatch(/agentbox-svc\.service\/cgroup\.events\npopulated 1\nfrozen 1/);
    expect(q[0]!.frozenBy).toMatch(/cgroup freezer \(\/sys\/fs\/cgroup\/unified\/system\.slice\/agentbox-svc\.service\)/);
    expect(Number(read('ticks-after-command'))).toBeGreaterThan(0);
    expect(read('ticks-later').trim()).toBe(read('ticks-after-command').trim());
  });

  it('quarantine cuts direct egress too: a literal grant the firewall admitted is rejected after it', () => {
    expect(read('direct-before').trim()).toBe('connected');
    expect(read('direct-after').trim()).toBe('ECONNREFUSED');
  });

  it('stopping agentboxd stops the agent unit (BindsTo=), a frozen one within its TimeoutStopSec', () => {
    expect(read('agent-after-daemon-stop')).toMatch(/^(inactive|failed)$/m);
    const [t0, t1] = read('t-stop').trim().split('\n').map(Number);
    expect(t1! - t0!).toBeLessThan(15);
    // The agent stopped before its daemon: systemd orders the stop after the unit bound to it.
    const journal = read('journal');
    expect(journal.indexOf('Stopped agentbox-svc.service')).toBeGreaterThan(-1);
    expect(journal.indexOf('Stopped agentbox-svc.service')).toBeLessThan(journal.indexOf('Stopped agentboxd.service'));
  });
});
