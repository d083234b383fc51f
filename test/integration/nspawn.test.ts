/**
 * The generated unit really runs under systemd: `agentbox apply --root --offline`
 * installs it into a Debian rootfs, systemd-nspawn boots that rootfs with systemd as
 * PID 1, and a probe started by the unit reports what the agent can do.
 *
 * Attacks checked from inside: holding or regaining capabilities, writing system
 * directories, reading a denied path (~/.ssh) or an ungranted one, writing a read-only
 * grant, seeing other processes, opening internet sockets or sharing the host's
 * network namespace, running a program it was not granted. Also proven for real:
 * hostile characters in arguments and environment reach the agent literally
 * (no quote, `$` or `%` expansion by systemd).
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentbox } from '../helpers/cli.js';
import { bootUntilPoweroff, overlayRoot } from '../helpers/rootfs.js';

const PROBE = `#!/bin/sh
out=/srv/probe-out/result
: > $out || exit 3
r() { printf "%s=%s\\n" "$1" "$2" >> $out; }
r uid "$(id -u)"
r capeff "$(grep CapEff /proc/self/status | awk '{print $2}')"
r capbnd "$(grep CapBnd /proc/self/status | awk '{print $2}')"
r capamb "$(grep CapAmb /proc/self/status | awk '{print $2}')"
r nonewprivs "$(grep NoNewPrivs /proc/self/status | awk '{print $2}')"
r seccomp "$(grep '^Seccomp:' /proc/self/status | awk '{print $2}')"
touch /usr/agentbox-x 2>/dev/null && r usr_write yes || r usr_write no
touch /etc/agentbox-x 2>/dev/null && r etc_write yes || r etc_write no
touch /var/agentbox-x 2>/dev/null && r var_write yes || r var_write no
cat /home/user/.ssh/id_rsa >/dev/null 2>&1 && r ssh_read yes || r ssh_read no
ls /home/user/.ssh >/dev/null 2>&1 && r ssh_list yes || r ssh_list no
cat /home/user/Private/secret >/dev/null 2>&1 && r private_read yes || r private_read no
cat /srv/other/data >/dev/null 2>&1 && r srv_other_read yes || r srv_other_read no
r doc_read "$(cat /home/user/Documents/a.txt 2>/dev/null || echo FAILED)"
touch /home/user/Documents/new 2>/dev/null && r doc_write yes || r doc_write no
r pids_visible "$(ls -d /proc/[0-9]* | wc -l)"
r netns "$(readlink /proc/self/ns/net)"
bash -c 'exec 3<>/dev/tcp/127.0.0.1/9' 2>/dev/null && r inet_socket yes || r inet_socket no
/usr/local/bin/notgranted 2>/dev/null && r exec_ungranted yes || r exec_ungranted no
r exec_granted "$(/usr/bin/printf ok)"
i=0; for a in "$@"; do i=$((i+1)); r "arg$i" "$a"; done
r greeting "$GREETING"
r home "$HOME"
r proxy "\${HTTPS_PROXY:-unset}"
`;

const MANIFEST = `apiVersion: agentbox/v1
kind: Agent
metadata: { name: probe }
extends: [editor]
agent:
  command: [/usr/local/bin/agentbox-probe, 'a "b"', '$HOME', '%h', "c'd", '', '$(id)', '\`id\`', 'x; touch /tmp/pwned']
  env: { GREETING: "50% \\"off\\" $USER \\\\n" }
capabilities:
  - fs:read:~/Documents
  - fs:write:/srv/probe-out
  - exec:/usr/bin
ttl: 1m
limits: { pids: 64, memory: 256MiB }
`;

const RUNNER = `[Unit]
Description=test runner: start the agent, wait for it, record, power off
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'readlink /proc/self/ns/net > /probe-hostns; systemctl start agentbox-probe.service; while systemctl is-active -q agentbox-probe.service; do sleep 0.1; done; systemctl show -p Result -p ExecMainStatus agentbox-probe.service > /probe-status; journalctl -u agentbox-probe.service --no-pager > /probe-journal 2>&1; systemctl poweroff'
[Install]
WantedBy=multi-user.target
`;

describe('the generated unit under a real systemd (systemd-nspawn --boot)', () => {
  let root: string;
  let dispose: () => Promise<void>;
  let result: Record<string, string> = {};
  let bootMs = 0;

  beforeAll(async () => {
    ({ root, dispose } = await overlayRoot());
    for (const d of ['home/user/Documents', 'home/user/.ssh', 'home/user/Private', 'srv/probe-out', 'srv/other']) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, 'home/user/Documents/a.txt'), 'granted');
    writeFileSync(join(root, 'home/user/.ssh/id_rsa'), 'SECRET');
    writeFileSync(join(root, 'home/user/Private/secret'), 'SECRET');
    writeFileSync(join(root, 'srv/other/data'), 'SECRET');
    writeFileSync(join(root, 'usr/local/bin/agentbox-probe'), PROBE, { mode: 0o755 });
    writeFileSync(join(root, 'usr/local/bin/notgranted'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    // World-readable, as a user's own files would be to a process of theirs.
    for (const f of ['home/user/.ssh/id_rsa', 'home/user/Private/secret', 'srv/other/data']) chmodSync(join(root, f), 0o644);
    chmodSync(join(root, 'home/user/.ssh'), 0o755);
    const manifest = join(root, '..', 'probe.yaml');
    writeFileSync(manifest, MANIFEST);
    const applied = await agentbox(['apply', manifest, '--root', root, '--offline', '--home', '/home/user']);
    if (applied.code !== 0) throw new Error(applied.stderr);
    // Write grants must be writable by the agent account (see docs/linux-controls.md).
    chownSync(join(root, 'srv/probe-out'), 64000, 64000);
    writeFileSync(join(root, 'etc/systemd/system/probe-runner.service'), RUNNER);
    symlinkSync('/etc/systemd/system/probe-runner.service', join(root, 'etc/systemd/system/multi-user.target.wants/probe-runner.service'));
    const t0 = Date.now();
    const boot = await bootUntilPoweroff(root);
    bootMs = Date.now() - t0;
    if (!existsSync(join(root, 'srv/probe-out/result'))) {
      throw new Error(`probe wrote nothing; boot exit ${boot.code}\n${boot.log.slice(-2000)}\n${existsSync(join(root, 'probe-journal')) ? readFileSync(join(root, 'probe-journal'), 'utf8') : ''}`);
    }
    result = Object.fromEntries(
      readFileSync(join(root, 'srv/probe-out/result'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    console.log(`nspawn boot-to-poweroff with the probe: ${bootMs} ms`);
  }, 600_000);
  afterAll(async () => dispose?.());

  it('the unit ran and succeeded under systemd', () => {
    expect(readFileSync(join(root, 'probe-status'), 'utf8')).toMatch(/Result=success/);
  });
  it('runs as the unprivileged agent account, with no capabilities and no new privileges', () => {
    expect(result).toMatchObject({ uid: '64000', capeff: '0000000000000000', capbnd: '0000000000000000', capamb: '0000000000000000', nonewprivs: '1' });
  });
  it('under a seccomp filter', () => {
    expect(result.seccomp).toBe('2');
  });
  it('the system is read-only', () => {
    expect(result).toMatchObject({ usr_write: 'no', etc_write: 'no', var_write: 'no' });
  });
  it('denied and ungranted paths are unreadable; a read grant is readable but not writable', () => {
    expect(result).toMatchObject({ ssh_read: 'no', ssh_list: 'no', private_read: 'no', srv_other_read: 'no', doc_read: 'granted', doc_write: 'no' });
  });
  it('sees only its own processes', () => {
    expect(Number(result.pids_visible)).toBeLessThanOrEqual(4);
  });
  it('has a private network namespace and cannot open internet sockets', () => {
    expect(result.netns).toMatch(/^net:\[\d+\]$/);
    expect(result.netns).not.toBe(readFileSync(join(root, 'probe-hostns'), 'utf8').trim());
    expect(result.inet_socket).toBe('no');
    expect(result.proxy).toBe('unset');
  });
  it('runs granted programs only', () => {
    expect(result).toMatchObject({ exec_granted: 'ok', exec_ungranted: 'no' });
  });
  it('hostile arguments and environment arrive literally', () => {
    expect([result.arg1, result.arg2, result.arg3, result.arg4, result.arg5, result.arg6, result.arg7, result.arg8]).toEqual(['a "b"', '$HOME', '%h', "c'd", '', '$(id)', '`id`', 'x; touch /tmp/pwned']);
    expect(result.greeting).toBe('50% "off" $USER \\n');
    expect(result.home).toBe('/home/user');
  });
});
