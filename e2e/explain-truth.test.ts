/**
 * explain tells the truth about the box: for each request, what `explain` answers is
 * what the agent inside the box then finds, on the process and container runtimes.
 *
 * Attack (on the reviewer): a policy read as "denied" that the box in fact allows
 * (`explain shell fs:read:/etc/passwd` said denied while the box read it).
 * Defence: explain and describe answer from the same view of the system folders, the
 * covered secrets and the private /tmp that the box plans build; this test holds the
 * two against each other with the real box.
 */
import { execa } from 'execa';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-truth-'));
chmodSync(base, 0o755);
const home = join(base, 'home');
mkdirSync(join(home, 'Documents'), { recursive: true });
mkdirSync(join(home, '.ssh'), { recursive: true });
writeFileSync(join(home, 'Documents', 'a.txt'), 'doc');
writeFileSync(join(home, '.ssh', 'id_ed25519'), 'key');
mkdirSync(join(base, 'elsewhere'));
writeFileSync(join(base, 'elsewhere', 'b.txt'), 'b');
chmodSync(join(home, '.ssh'), 0o755);
const state = join(base, 'state');
const cli = (args: string[]) => execa(process.execPath, [BIN, ...args], { reject: false, stdin: 'ignore', env: { NO_COLOR: '1', AGENTBOX_STATE_DIR: state } });

const REQUESTS: [access: 'read' | 'write', path: string][] = [
  ['read', '/etc/passwd'],
  ['write', '/etc/passwd'],
  ['read', '/etc/shadow'],
  ['read', '/usr/bin/env'],
  ['write', '/usr/bin/agentbox-truth'],
  ['write', '/tmp/agentbox-truth'],
  ['read', `${home}/Documents/a.txt`],
  ['write', `${home}/Documents/new.txt`],
  ['read', `${home}/.ssh/id_ed25519`],
  ['read', `${base}/elsewhere/b.txt`],
];

describe.each(['process', 'container'])('explain against the %s box', (runtime) => {
  it('every answer matches what the agent finds', async () => {
    const manifest = join(base, `truth-${runtime}.yaml`);
    writeFileSync(manifest, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: truth }\nextends: [viewer]\nagent: { command: [/bin/sh] }\ncapabilities:\n  - fs:read:~/Documents\n  - exec:/usr/bin\n  - exec:/bin\nruntime: { kind: ${runtime} }\n`);
    const said: string[] = [];
    for (const [access, path] of REQUESTS) {
      const r = await cli(['explain', manifest, `fs:${access}:${path}`, '--home', home]);
      said.push(/^allowed/.test(r.stdout) ? 'allow' : 'deny');
    }
    // In the box: the same requests, tried for real ("cat" to read, ">>" to write).
    const script = REQUESTS.map(([access, path]) => (access === 'read' ? `if cat '${path}' >/dev/null 2>&1; then echo allow; else echo deny; fi` : `if ( : >> '${path}' ) 2>/dev/null; then echo allow; else echo deny; fi`)).join('\n');
    const r = await cli(['launch', manifest, '--home', home, '--', '/bin/sh', '-c', script]);
    expect(r.exitCode, r.stderr).toBe(0);
    const found = String(r.stdout).trim().split('\n');
    expect(REQUESTS.map((q, i) => `${q[0]} ${q[1]}: explain ${said[i]}, box ${found[i]}`)).toEqual(REQUESTS.map((q, i) => `${q[0]} ${q[1]}: explain ${said[i]}, box ${said[i]}`));
  }, 120_000);
});
