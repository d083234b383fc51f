/**
 * Attack: swapping a granted folder for a symlink while agentbox launches. In the attack
 * review a process outside the box, running as the agent's uid, swapped the grant for a
 * link to a folder the manifest denies; in 8 of 40 launches the box then read the denied
 * folder, because the grant was looked up by path when the box was built.
 * Defence: each grant is opened once, component by component with O_PATH|O_NOFOLLOW, and
 * the box binds what was opened; a swap before the open fails the launch (exit 4), a
 * swap after it changes nothing the box sees. A grant whose parent the agent's uid can
 * write is named in a warning.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

describe('a grant swapped for a symlink during launch', () => {
  it('40 launches against a swapping process never show the denied folder', async () => {
    const base = mkdtempSync(join(tmpdir(), 'agentbox-race-'));
    chmodSync(base, 0o755);
    // The grant's parent is writable by the agent's uid: exactly the case the warning names.
    const parent = join(base, 'shared');
    mkdirSync(join(parent, 'docs'), { recursive: true });
    mkdirSync(join(base, 'secret'));
    writeFileSync(join(parent, 'docs', 'readme'), 'granted\n');
    writeFileSync(join(base, 'secret', 'readme'), 'DENIED\n');
    chownSync(parent, 64000, 64000);
    chmodSync(join(base, 'secret'), 0o755);
    writeFileSync(join(base, 'race.yaml'), `apiVersion: agentbox/v1
kind: Agent
metadata: { name: race }
extends: [viewer]
agent: { command: [/bin/cat, ${join(parent, 'docs', 'readme')}] }
capabilities: ["fs:read:${join(parent, 'docs')}", exec:/bin]
deny: ["fs:${join(base, 'secret')}"]
`);
    // Another process of the agent's uid flips docs <-> a link to the denied folder as fast as it can.
    const swapper = execa('setpriv', ['--reuid=64000', '--regid=64000', '--clear-groups', '/bin/sh', '-c', `cd ${parent}; while true; do mv docs docs.real && ln -s ${join(base, 'secret')} docs; rm docs; mv docs.real docs; done`], { reject: false });
    const outcomes: string[] = [];
    let warned = false;
    try {
      for (let i = 0; i < 40; i++) {
        const r = await execa(process.execPath, [BIN, 'launch', join(base, 'race.yaml'), '--home', base], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: join(base, 'state'), NO_COLOR: '1' } });
        if (String(r.stderr).includes(`uid 64000 can rename entries in ${parent}`)) warned = true;
        outcomes.push(String(r.stdout).includes('DENIED') ? 'DENIED' : r.exitCode === 0 ? 'granted' : `exit ${r.exitCode}`);
      }
    } finally {
      swapper.kill('SIGKILL');
      await swapper;
    }
    expect(outcomes.filter((o) => o === 'DENIED')).toEqual([]);
    // Each launch read the real grant, or refused the manifest because the grant was a
    // link when it was loaded (2), or failed closed because it became one by the time it
    // was opened (4), or found the name missing mid-swap (cat: 1).
    for (const o of outcomes) expect(['granted', 'exit 1', 'exit 2', 'exit 4']).toContain(o);
    expect(outcomes.filter((o) => o === 'granted').length).toBeGreaterThan(0);
    expect(warned).toBe(true);
  }, 180_000);
});
