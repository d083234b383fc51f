/**
 * The session control socket, on a real unix socket with the kernel's peer credentials.
 *
 * Attack: another local account reaches a session's control socket (a permission slip on
 * the state folder, a socket path shared by mistake) and quarantines, releases, ends or
 * execs into someone else's session; or sends a request that is not one.
 * Defence: the socket is 0600 in the sessions folder, and every request is checked
 * against SO_PEERCRED (root or the state folder's owner only), answered with why when
 * refused, and audited either way with the caller's uid and pid. Malformed requests are
 * refused with the valid kinds.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, controlSocket, parseRequest, socketControl, type ControlRequest } from '../../src/session/control.js';

const state = mkdtempSync(join(tmpdir(), 'agentbox-control-'));
mkdirSync(join(state, 'sessions'), { mode: 0o700 });
const audited: { request: string; uid: number; served: boolean; detail: string }[] = [];
const handled: ControlRequest[] = [];
let stop: () => void = () => undefined;
const path = controlSocket(state, 'ctl-00000001');

/** One request from another account: a child node process with that uid (async: this process serves the socket). */
async function askAs(uid: number, line: string): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', `const c=require('net').connect(process.argv[1]);let b='';c.on('connect',()=>c.write(process.argv[2]+'\\n'));c.on('data',d=>b+=d);c.on('end',()=>process.stdout.write(b));c.on('error',e=>process.stdout.write('ERR '+e.code))`, path, line], { uid, gid: uid, encoding: 'utf8', timeout: 10_000 });
  return stdout;
}

beforeAll(async () => {
  stop = await socketControl(state, 'ctl-00000001', (request, caller, served, detail) => audited.push({ request, uid: caller.uid, served, detail })).listen(
    async (r) => {
      handled.push(r);
      return { ok: true, state: 'running', kind: r.kind };
    },
    () => undefined,
  );
});
afterAll(() => stop());

describe('the control socket', () => {
  it('is 0600 and serves root, audited with the kernel-reported uid and pid', async () => {
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const a = await ask(path, { kind: 'status' }, 2000);
    expect(a).toMatchObject({ ok: true, kind: 'status' });
    expect(audited.at(-1)).toMatchObject({ request: 'status', uid: 0, served: true });
  });

  it('another account cannot even connect (file mode), and past a permission slip SO_PEERCRED still refuses it', async () => {
    chmodSync(state, 0o711);
    chmodSync(join(state, 'sessions'), 0o711);
    expect(await askAs(64000, '{"kind":"end","reason":"x"}')).toBe('ERR EACCES');
    chmodSync(path, 0o666);
    const before = handled.length;
    const answer = JSON.parse(await askAs(64000, '{"kind":"end","reason":"pwned"}'));
    expect(answer.ok).toBe(false);
    expect(answer.error).toMatch(/uid 64000 .* may not control this session \(only root or uid 0/);
    expect(handled.length).toBe(before);
    expect(audited.at(-1)).toMatchObject({ request: 'end', uid: 64000, served: false });
    chmodSync(path, 0o600);
    chmodSync(join(state, 'sessions'), 0o700);
  });

  it('refuses what is not a request, naming the valid kinds', async () => {
    expect(() => parseRequest('{"kind":"shell"}')).toThrow(/valid kinds: status, quarantine, release, end, attach, exec/);
    expect(() => parseRequest('not json')).toThrow(/not JSON/);
    expect(() => parseRequest('{"kind":"exec","command":"rm -rf /"}')).toThrow(/list of strings/);
    expect(parseRequest('{"kind":"quarantine","why":"x","frozenBy":"cgroup freezer","extra":1}')).toEqual({ kind: 'quarantine', why: 'x', frozenBy: 'cgroup freezer' });
  });

  it('a caller that gets no answer in time is told so (a stopped launcher)', async () => {
    const silent = controlSocket(state, 'ctl-00000002');
    const { createServer } = await import('node:net');
    const server = createServer(() => undefined).listen(silent);
    await new Promise((r) => server.once('listening', r));
    const t0 = Date.now();
    await expect(ask(silent, { kind: 'status' }, 300)).rejects.toThrow(/no answer on .* within 300 ms/);
    expect(Date.now() - t0).toBeLessThan(1500);
    server.close();
  });
});
