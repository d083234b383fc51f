import { describe, expect, it } from 'vitest';
import { decide, hostMatches } from '../../src/model/decide.js';
import { model } from '../helpers/load.js';

const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: t }
extends: [organizer]
agent: { command: [/usr/local/bin/agent] }
capabilities:
  - fs:read:~/Documents
  - fs:write:~/Documents/Receipts/summary.csv
  - net:connect:api.anthropic.com:443
  - net:connect:*.example.com:443
  - exec:/usr/bin/python3
deny:
  - fs:write:~/Documents/Locked
  - net:evil.example.com
`);

const d = (req: string) => {
  const r = decide(m, req);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};

describe('explain: which rule decides', () => {
  it('allows by the most specific grant', () => {
    expect(d('fs:read:~/Documents/Receipts/march.pdf')).toMatchObject({ decision: 'allow', rule: { pointer: 'capabilities[0]' } });
    expect(d('fs:write:~/Documents/Receipts/summary.csv')).toMatchObject({ decision: 'allow', rule: { pointer: 'capabilities[1]' } });
  });
  it('a read grant does not allow writing, and says so', () => {
    expect(d('fs:write:~/Documents/notes.txt')).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/grants reading only/) });
  });
  it('preset denies win over grants and are named', () => {
    expect(d('fs:read:~/.ssh/id_ed25519')).toMatchObject({ decision: 'deny', rule: { origin: 'preset', preset: 'organizer', pointer: 'deny[0]' } });
  });
  it('a write deny leaves reading allowed', () => {
    expect(d('fs:read:~/Documents/Locked/a')).toMatchObject({ decision: 'allow' });
    expect(d('fs:write:~/Documents/Locked/a')).toMatchObject({ decision: 'deny', rule: { pointer: 'deny[0]', origin: 'manifest' } });
  });
  it('default deny for everything not granted', () => {
    expect(d('fs:read:/srv/data/x')).toMatchObject({ decision: 'deny', rule: undefined, reason: expect.stringMatching(/no grant covers/) });
    expect(d('fs:read:~/Documents2/x')).toMatchObject({ decision: 'deny' });
  });
  it('the box itself: system folders read-only, secrets in /etc covered, a private /tmp', () => {
    expect(d('fs:read:/etc/passwd')).toMatchObject({ decision: 'allow', rule: undefined, reason: expect.stringMatching(/system folders are visible read-only.*this host's/) });
    expect(d('fs:write:/usr/bin/x')).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/read-only in the box/) });
    expect(d('fs:read:/etc/shadow')).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/the box covers \/etc\/shadow/) });
    expect(d('fs:read:/etc/ssh/ssh_host_ed25519_key').decision).toBe('deny');
    expect(d('fs:write:/tmp/x')).toMatchObject({ decision: 'allow', reason: expect.stringMatching(/session's own.*host's \/tmp\/x is not touched/) });
    expect(d('fs:read:/tmp/x')).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/not visible/) });
  });
  it('a grant is bound over a covered secret, and a program the agent may run it may read', () => {
    const m = model(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nextends: [editor]\nagent: { command: [/bin/true] }\ncapabilities: [fs:read:/etc/ssh/ssh_config, exec:/opt/tools]\n`);
    expect(decide(m, 'fs:read:/etc/ssh/ssh_config')).toMatchObject({ ok: true, value: { decision: 'allow' } });
    expect(decide(m, 'fs:read:/etc/ssh/sshd_config')).toMatchObject({ ok: true, value: { decision: 'deny' } });
    expect(decide(m, 'fs:read:/opt/tools/x')).toMatchObject({ ok: true, value: { decision: 'allow', reason: expect.stringMatching(/lets it run, and so read/) } });
    expect(decide(m, 'fs:write:/opt/tools/x')).toMatchObject({ ok: true, value: { decision: 'deny' } });
  });
  it('hosts: exact, wildcard subdomains only, port must match, deny wins', () => {
    expect(d('net:connect:api.anthropic.com:443').decision).toBe('allow');
    expect(d('net:connect:api.anthropic.com:80')).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/allows port 443 only/) });
    expect(d('net:connect:a.example.com:443').decision).toBe('allow');
    expect(d('net:connect:example.com:443').decision).toBe('deny');
    expect(d('net:connect:evil.example.com:443')).toMatchObject({ decision: 'deny', rule: { pointer: 'deny[1]' } });
    expect(d('net:connect:anthropic.com.evil.io:443').decision).toBe('deny');
  });
  it('exec: the agent itself and exec grants', () => {
    expect(d('exec:/usr/local/bin/agent').decision).toBe('allow');
    expect(d('exec:/usr/bin/python3').decision).toBe('allow');
    expect(d('exec:/usr/bin/curl').decision).toBe('deny');
  });
  it('requests are normalised like grants: .. is refused, not resolved around a deny', () => {
    expect(decide(m, 'fs:read:~/Documents/../.ssh/id_rsa').ok).toBe(false);
  });
  it('hostMatches', () => {
    expect(hostMatches('*.example.com', 'a.b.example.com')).toBe(true);
    expect(hostMatches('*.example.com', 'example.com')).toBe(false);
    expect(hostMatches('*.example.com', 'badexample.com')).toBe(false);
  });
});
