/**
 * `agentbox attach SESSION`: this terminal joins a running session's terminal. Process
 * runtime: the launcher's attach socket (root only; the agent's pty is relayed to every
 * attached client); container runtime: the Engine's attach to the container's tty.
 * Ctrl-P Ctrl-Q detaches (as with docker); the session goes on. Audited with who attached.
 */
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import type { ReadStream } from 'node:tty';
import { AgentboxError } from '../errors.js';
import { AuditSink } from '../audit/sink.js';
import { attachFrame } from '../host/pty.js';
import { attachSocket } from '../session/box.js';
import { readSession } from '../session/records.js';
import { stateDir } from '../session/state.js';
import { ask, controlSocket } from '../session/control.js';
import { answererIdentity } from '../egress/consent.js';

const DETACH = Buffer.from([0x10, 0x11]);

export async function attach(id: string): Promise<{ ended: boolean }> {
  const s = readSession(stateDir(), id);
  if (!s) throw new AgentboxError('USAGE', `no session ${id} (agentbox ps lists them)`);
  if (s.state !== 'running' && s.state !== 'quarantined') throw new AgentboxError('CHECK_FAILED', `session ${id} has ${s.state === 'exited' ? 'ended' : `state ${s.state}`}; there is no terminal to attach to`);
  if ((process.getuid?.() ?? -1) !== 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `attaching to session ${id} needs root (its terminal is the root launcher's)`);
  if (s.runtime === 'microvm') throw new AgentboxError('CONTROL_UNAVAILABLE', 'a micro-VM session has no terminal to attach to: its output is two consoles the launcher relays; nothing was attached');
  const stdin = process.stdin as ReadStream;
  if (!stdin.isTTY || !process.stdout.isTTY) throw new AgentboxError('USAGE', 'attach needs a terminal (stdin and stdout)');
  const by = answererIdentity();
  const asked = await ask(controlSocket(stateDir(), id), { kind: 'attach' }, 3000).catch((e: Error) => ({ ok: false as const, error: e.message }));
  if (!asked.ok) throw new AgentboxError('CONTROL_UNAVAILABLE', `session ${id}: ${asked.error}; nothing was attached`);
  if (s.runtime === 'container') return containerAttach(s.container, s.id, s.agent, by, stdin);
  const path = attachSocket({ dir: s.dir, run: s.run });
  if (!existsSync(path)) throw new AgentboxError('CHECK_FAILED', `session ${id} has no terminal of its own (it was launched without one: its stdin was not a terminal); nothing to attach to`);
  const sock = connect(path);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', (e) => reject(new AgentboxError('CHECK_FAILED', `cannot reach session ${id}'s terminal: ${e.message}`)));
  });
  sock.write(JSON.stringify({ by, cols: process.stdout.columns, rows: process.stdout.rows }) + '\n');
  return relay(stdin, (d) => sock.write(attachFrame('d', d)), () => {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(process.stdout.columns ?? 80, 0);
    b.writeUInt16BE(process.stdout.rows ?? 24, 2);
    sock.write(attachFrame('r', b));
  }, sock, () => sock.end());
}

/** Raw terminal in and out until the other side ends (the session ended) or Ctrl-P Ctrl-Q (detached). */
function relay(stdin: ReadStream, send: (d: Buffer) => void, resize: () => void, from: NodeJS.ReadableStream, close: () => void): Promise<{ ended: boolean }> {
  return new Promise((resolve) => {
    const wasRaw = stdin.isRaw;
    stdin.setRawMode(true);
    let done = false;
    const finish = (ended: boolean) => {
      if (done) return;
      done = true;
      stdin.off('data', onData);
      process.off('SIGWINCH', resize);
      stdin.setRawMode(wasRaw);
      stdin.pause();
      close();
      resolve({ ended });
    };
    let held = false;
    const onData = (chunk: Buffer) => {
      // A Ctrl-P held back from the last chunk goes first.
      const d = held ? Buffer.concat([Buffer.from([DETACH[0]!]), chunk]) : chunk;
      held = false;
      for (let i = 1; i < d.length; i++) {
        if (d[i - 1] === DETACH[0] && d[i] === DETACH[1]) {
          if (i > 1) send(d.subarray(0, i - 1));
          return finish(false);
        }
      }
      // A lone trailing Ctrl-P waits for the next key before it is sent.
      if (d[d.length - 1] === DETACH[0]) {
        held = true;
        if (d.length > 1) send(d.subarray(0, -1));
      } else send(d);
    };
    stdin.on('data', onData);
    stdin.resume();
    process.on('SIGWINCH', resize);
    from.on('data', (c: Buffer) => process.stdout.write(c));
    from.on('end', () => finish(true));
    from.on('close', () => finish(true));
    from.on('error', () => finish(true));
  });
}

async function containerAttach(container: string | null, id: string, agent: string, by: string, stdin: ReadStream): Promise<{ ended: boolean }> {
  if (!container) throw new AgentboxError('CONTROL_UNAVAILABLE', `session ${id} recorded no container`);
  const { dockerClient } = await import('../runtimes/container/engine.js');
  const c = (await dockerClient()).getContainer(container);
  const info = await c.inspect();
  if (!info.Config.Tty) throw new AgentboxError('CHECK_FAILED', `session ${id} has no terminal of its own (it was launched without one); nothing to attach to`);
  const audit = new AuditSink(stateDir());
  audit.append({ session: id, agent, action: 'session.attach', resource: id, decision: 'allow', reason: `attached to the agent's terminal by ${by}`, details: { by } });
  const stream = (await c.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as unknown as import('node:stream').Duplex;
  const r = await relay(stdin, (d) => stream.write(d), () => void c.resize({ h: process.stdout.rows ?? 24, w: process.stdout.columns ?? 80 }).catch(() => undefined), stream, () => stream.end());
  audit.append({ session: id, agent, action: 'session.detach', resource: id, decision: 'info', reason: `detached from the agent's terminal by ${by}`, details: { by } });
  return r;
}
