/**
 * Attack: a grant that covers agentbox's own state folder (fs:read:~ holds
 * ~/.local/state/agentbox) lets the agent reach other sessions' control sockets, the
 * device key's folder and the audit log; a session started later puts its control socket
 * there while the box runs. Defence: the state folder is denied in every box whose grants
 * cover it and whose uid could enter it, named as agentbox's own rule, so every runtime
 * masks it; root's 0700 state is out of reach already, and the socket scan does not walk
 * folders the agent uid cannot enter.
 */
import { chmodSync, mkdtempSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withStateDenied } from '../../src/actions/launch.js';
import { model } from '../helpers/load.js';

describe("agentbox's state is never the agent's", () => {
  const home = mkdtempSync(join(tmpdir(), 'agentbox-statehome-'));
  const state = join(home, '.local/state/agentbox');
  mkdirSync(state, { recursive: true });

  const owner = process.getuid!();

  it('a grant covering the state folder gets a deny for it, from agentbox, when the agent uid is its owner', () => {
    const m = model(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: [/usr/bin/true] }\ncapabilities: ["fs:read:${home}"]\n`);
    const d = withStateDenied(m, state, owner).denies.fs.filter((x) => x.source.preset === 'agentbox');
    expect(d).toEqual([{ path: state, access: 'all', source: expect.objectContaining({ origin: 'preset', text: expect.stringContaining("agentbox's own state") }) }]);
  });

  it('through a symlink too: both the written and the resolved path are denied', () => {
    const link = join(home, 'state-link');
    symlinkSync(state, link);
    const m = model(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: [/usr/bin/true] }\ncapabilities: ["fs:read:${home}"]\n`);
    expect(withStateDenied(m, link, owner).denies.fs.filter((x) => x.source.preset === 'agentbox').map((x) => x.path).sort()).toEqual([link, state].sort());
  });

  it('a model whose grants do not cover it is left as it is', () => {
    const m = model(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: [/usr/bin/true] }\ncapabilities: ["fs:read:/usr/share"]\n`);
    expect(withStateDenied(m, state, owner)).toBe(m);
  });

  it('a 0700 state folder of another account is out of the agent uid\'s reach: no mask, unless it gives group or others anything', () => {
    const m = model(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: [/usr/bin/true] }\ncapabilities: ["fs:read:${home}"]\n`);
    chmodSync(state, 0o700);
    expect(withStateDenied(m, state, owner + 64000)).toBe(m);
    chmodSync(state, 0o750);
    expect(withStateDenied(m, state, owner + 64000).denies.fs.some((x) => x.path === state)).toBe(true);
    chmodSync(state, 0o700);
  });
});
