/**
 * The session lifecycle with a fake Box: no bubblewrap, no engine, just the session's
 * own logic (session/lifecycle.ts) against a box that records what it is asked to do.
 * Quarantine, release and end arrive through a SessionControl; the ttl, a revoked token
 * and a DLP violation under onViolation: quarantine drive the rest. The egress proxy,
 * the audit log, the token and the evidence are the real ones, in a temporary state dir.
 */
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSession, type LaunchResult } from '../../src/session/lifecycle.js';
import type { Box } from '../../src/session/box.js';
import type { ControlAnswer, ControlHandler, ControlRequest, SessionControl } from '../../src/session/control.js';
import { readSession, type Session } from '../../src/session/records.js';
import { revoke } from '../../src/tokens/token.js';
import { readAudit } from '../../src/audit/sink.js';
import { verifyLog } from '../../src/audit/verify.js';
import { deviceKey } from '../../src/audit/sink.js';
import type { Model } from '../../src/model/types.js';
import { model } from '../helpers/load.js';

let sink: Server;
let sinkPort = 0;
let sinkBodies = 0;
beforeAll(async () => {
  sink = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      sinkBodies++;
      res.end('ok');
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  sinkPort = (sink.address() as AddressInfo).port;
});
afterAll(() => sink.close());

/** A box that records every call; the agent "runs" until it is signalled to end. */
function fakeBox(state: string, id: string, proxy = false) {
  const calls: string[] = [];
  let finish: (code: number) => void = () => undefined;
  const dir = join(state, 'sessions', id);
  const run = join(state, 'run', id);
  mkdirSync(dir, { recursive: true });
  mkdirSync(run, { recursive: true });
  const box: Box = {
    runtime: 'process',
    isolation: null,
    id,
    paths: { dir, run },
    layers: null,
    proxySocket: proxy ? join(run, 'proxy', 'egress.sock') : undefined,
    uid: process.getuid!(),
    gid: process.getgid!(),
    cgroupDirs: [],
    controls: ['fake'],
    start: async () => {
      calls.push('start');
      return { pid: process.pid, identity: null, exited: new Promise<number>((r) => (finish = r)) };
    },
    signal: (sig) => {
      calls.push(`signal ${sig}`);
      if (sig === 'SIGTERM' || sig === 'SIGKILL') finish(sig === 'SIGTERM' ? 143 : 137);
    },
    freeze: () => {
      calls.push('freeze');
      return 'fake freezer';
    },
    thaw: () => {
      calls.push('thaw');
    },
    limitHits: () => ({ pids: 0, memory: 0 }),
    cleanup: () => {
      calls.push('cleanup');
    },
  };
  return { box, calls, exit: (code: number) => finish(code) };
}

/** A control channel the test drives: requests as the control socket hands them over, from root. */
function channel(): SessionControl & { send(r: ControlRequest): Promise<ControlAnswer | undefined> } {
  let handler: ControlHandler | undefined;
  return {
    listen: async (h) => {
      handler = h;
      return () => (handler = undefined);
    },
    send: async (r) => handler?.(r, { pid: process.pid, uid: 0, gid: 0, text: 'uid 0 (test)' }),
  };
}

const manifest = (extra = '') => model(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: fake }\nagent: { command: [/bin/true] }\n${extra}`);

function start(m: Model, extra: { proxy?: boolean } = {}) {
  const state = mkdtempSync(join(tmpdir(), 'agentbox-session-'));
  const id = `fake-${Math.random().toString(16).slice(2, 10)}`;
  const fb = fakeBox(state, id, extra.proxy);
  const control = channel();
  const log: string[] = [];
  const result: Promise<LaunchResult> = runSession(m, { command: ['/bin/true'], state, verbose: false, log: (l) => log.push(l), control }, fb.box);
  return { state, id, ...fb, control, log, result };
}

async function until<T>(what: string, fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const record = (state: string, id: string): Session | undefined => readSession(state, id);
const actions = (state: string) => readAudit(state).map((e) => e.action);

describe('the session with a fake box', () => {
  it('quarantine freezes and cuts egress, release thaws with egress still cut, end signals and closes the record', async () => {
    const s = start(manifest());
    await until('the record', () => record(s.state, s.id)?.pid);
    const answer = await s.control.send({ kind: 'quarantine', why: 'test' });
    expect(answer).toMatchObject({ ok: true, state: 'quarantined', egressCut: true, tokenRevoked: record(s.state, s.id)?.jti });
    const q = await until('quarantined', () => (record(s.state, s.id)?.state === 'quarantined' ? record(s.state, s.id) : undefined));
    expect(q.egressCut).toBe(true);
    expect(s.calls).toContain('freeze');
    s.control.send({ kind: 'release' });
    const r = await until('released', () => (record(s.state, s.id)?.state === 'running' ? record(s.state, s.id) : undefined));
    expect(r.egressCut).toBe(true);
    expect(s.calls.filter((c) => c === 'thaw').length).toBeGreaterThanOrEqual(1);
    s.control.send({ kind: 'end', reason: 'killed' });
    const result = await s.result;
    expect(result.endReason).toBe('killed');
    expect(result.exitCode).toBe(143);
    // Ending a session thaws it first (a frozen process cannot act on a signal), then SIGTERM.
    expect(s.calls.indexOf('signal SIGTERM')).toBeGreaterThan(s.calls.lastIndexOf('freeze'));
    expect(s.calls.at(-1)).toBe('cleanup');
    expect(record(s.state, s.id)).toMatchObject({ state: 'exited', endReason: 'killed', exitCode: 143 });
    const a = actions(s.state);
    for (const x of ['token.minted', 'launch', 'quarantine.egress-cut', 'quarantine.frozen', 'quarantine.released', 'exit']) expect(a).toContain(x);
    // A request revokes the token and answers; the caller takes the evidence (none here).
    expect(a).toContain('token.revoked');
    expect(a).not.toContain('quarantine.evidence');
    expect(verifyLog(readFileSync(join(s.state, 'audit.jsonl'), 'utf8'), deviceKey(s.state).publicKey, true).ok).toBe(true);
  });

  it('the ttl ends the session', async () => {
    const s = start(manifest('ttl: 1s'));
    const result = await s.result;
    expect(result.endReason).toBe('ttl');
    expect(actions(s.state)).toContain('ttl.expired');
    expect(s.log.join('\n')).toMatch(/reached its ttl of 1s/);
  });

  it('a revoked token ends its session', async () => {
    const s = start(manifest());
    const jti = await until('the token id', () => record(s.state, s.id)?.jti ?? undefined);
    revoke(s.state, jti, 'test revocation');
    const result = await s.result;
    expect(result.endReason).toBe('token revoked');
    expect(actions(s.state)).toContain('token.revoked-ended');
  });

  it('a quarantined session is not ended by the revocation of its own token', async () => {
    const s = start(manifest());
    const jti = await until('the token id', () => record(s.state, s.id)?.jti ?? undefined);
    s.control.send({ kind: 'quarantine', why: 'test' });
    await until('quarantined', () => record(s.state, s.id)?.state === 'quarantined');
    revoke(s.state, jti, 'revoked by the responder');
    await new Promise((r) => setTimeout(r, 600));
    expect(record(s.state, s.id)?.state).toBe('quarantined');
    s.control.send({ kind: 'end', reason: 'killed' });
    expect((await s.result).endReason).toBe('killed');
  });

  it('an agent that exits on its own ends the session with its exit code', async () => {
    const s = start(manifest());
    await until('the record', () => record(s.state, s.id)?.pid);
    s.exit(7);
    const result = await s.result;
    expect(result).toMatchObject({ exitCode: 7, endReason: 'exited', committed: null });
    expect(s.calls).not.toContain('signal SIGTERM');
  });

  it('a DLP violation under onViolation: quarantine freezes, revokes the token and takes evidence', async () => {
    const s = start(manifest(`extends: [organizer]\ncapabilities:\n  - net:connect:127.0.0.1:${sinkPort}\negress:\n  dlp: { detectors: [aws-access-key] }\n  onViolation: quarantine\n`), { proxy: true });
    await until('the record', () => record(s.state, s.id)?.pid);
    const before = sinkBodies;
    const status = await new Promise<number>((resolve, reject) => {
      const body = 'key=AKIA2E3NGX5M4HYT7Q2W';
      const req = request({ socketPath: s.box.proxySocket!, method: 'POST', path: `http://127.0.0.1:${sinkPort}/upload`, headers: { host: `127.0.0.1:${sinkPort}`, 'content-length': String(body.length) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(status).toBe(403);
    expect(sinkBodies).toBe(before);
    await until('the evidence', () => actions(s.state).some((a) => a.startsWith('quarantine.evidence')));
    const a = actions(s.state);
    expect(a).toContain('quarantine.frozen');
    expect(a).toContain('token.revoked');
    expect(a).toContain('quarantine.evidence');
    expect(a.indexOf('token.revoked')).toBeLessThan(a.indexOf('quarantine.evidence'));
    expect(s.calls).toContain('freeze');
    expect(record(s.state, s.id)?.state).toBe('quarantined');
    s.control.send({ kind: 'end', reason: 'killed' });
    expect((await s.result).endReason).toBe('killed');
  });
});
