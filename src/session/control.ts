/**
 * How a running session is told what to do: its control socket, in the style of runsc's
 * control channel. A unix socket beside the session's record (STATE/sessions/ID.sock,
 * mode 0600 in the 0700 sessions folder), served by the launcher (or by agentboxd for a
 * system-service agent). One JSON request per connection, one JSON answer. The peer is
 * the kernel's word (SO_PEERCRED): only root or the owner of the state folder is served,
 * and every request, served or refused, is audited with the caller's uid and pid.
 *
 * The launcher's own signals remain for what a terminal or a service manager sends:
 * SIGTERM and SIGHUP end the session, SIGINT goes to the agent. Quarantine, release,
 * kill, status, attach and exec are requests on the socket; quarantine does not depend
 * on this channel at all (actions/incident.ts freezes and cuts through the kernel first
 * and only then asks here for the launcher's evidence).
 */
import { chmodSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { AgentboxError } from '../errors.js';
import { peerCred, type PeerCred } from '../host/sockets.js';
import { termSafe } from '../escape/terminal.js';

/** What a caller may ask over the control socket. */
export type ControlRequest =
  | { kind: 'status' }
  /** `frozenBy`: the caller already froze and cut (the launcher records it, revokes, takes evidence). */
  | { kind: 'quarantine'; why: string; frozenBy?: string }
  | { kind: 'release' }
  | { kind: 'end'; reason: string }
  | { kind: 'attach' }
  | { kind: 'exec'; command: string[] };

/** What the launcher's own signals and terminal ask (never on the socket). */
export type LocalRequest = { kind: 'end'; reason: string } | { kind: 'forward'; signal: NodeJS.Signals };

export type ControlAnswer = { ok: true; state: string; [k: string]: unknown } | { ok: false; error: string };

/** Who asked: the kernel's credentials of the connecting process. */
export interface Caller extends PeerCred {
  /** How the audit names the caller. */
  text: string;
}

export type ControlHandler = (request: ControlRequest, caller: Caller) => Promise<ControlAnswer>;

export interface SessionControl {
  /** Serves requests until the returned function is called. */
  listen(handler: ControlHandler, local: (request: LocalRequest) => void): Promise<() => void>;
}

const KINDS = new Set(['status', 'quarantine', 'release', 'end', 'attach', 'exec']);
const MAX_REQUEST = 64 * 1024;

/** The control socket of a session: beside its record, in the root-only sessions folder. */
export function controlSocket(state: string, id: string): string {
  return join(state, 'sessions', `${id}.sock`);
}

/** Parses one request line; anything else is refused with what would be valid. */
export function parseRequest(line: string): ControlRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error('the request is not JSON');
  }
  const r = v as Record<string, unknown>;
  if (!r || typeof r !== 'object' || typeof r.kind !== 'string' || !KINDS.has(r.kind)) throw new Error(`unknown request; valid kinds: ${[...KINDS].join(', ')}`);
  const text = (k: string, max = 500) => (typeof r[k] === 'string' ? (r[k] as string).slice(0, max) : undefined);
  switch (r.kind) {
    case 'quarantine':
      return { kind: 'quarantine', why: text('why') ?? 'agentbox quarantine', ...(text('frozenBy') ? { frozenBy: text('frozenBy')! } : {}) };
    case 'end':
      return { kind: 'end', reason: text('reason') ?? 'killed' };
    case 'exec':
      if (!Array.isArray(r.command) || !r.command.every((a) => typeof a === 'string')) throw new Error('exec needs command: a list of strings');
      return { kind: 'exec', command: (r.command as string[]).slice(0, 256) };
    default:
      return { kind: r.kind as 'status' | 'release' | 'attach' };
  }
}

/** Root, or the account that owns the state folder (the one that launched the session). */
export function mayControl(caller: PeerCred, stateOwner: number): boolean {
  return caller.uid === 0 || caller.uid === stateOwner;
}

/**
 * The launcher's control socket plus its signals. `onRefused` audits a caller that may
 * not control the session (the answer names why).
 */
export function socketControl(state: string, id: string, audit: (request: string, caller: Caller, served: boolean, detail: string) => void): SessionControl {
  return {
    async listen(handler, local) {
      const path = controlSocket(state, id);
      if (Buffer.byteLength(path) > 107) throw new AgentboxError('CONTROL_UNAVAILABLE', `the control socket path ${path} is longer than a unix socket address allows (107 bytes); use a shorter AGENTBOX_STATE_DIR`);
      const owner = statSync(state).uid;
      rmSync(path, { force: true });
      const server: Server = createServer((c: Socket) => serve(c, owner, handler, audit));
      server.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      chmodSync(path, 0o600);
      const offSignals = signals(local);
      return () => {
        offSignals();
        server.close();
        rmSync(path, { force: true });
      };
    },
  };
}

function serve(c: Socket, owner: number, handler: ControlHandler, audit: (request: string, caller: Caller, served: boolean, detail: string) => void): void {
  c.on('error', () => c.destroy());
  let caller: Caller;
  try {
    const cred = peerCred(c);
    caller = { ...cred, text: `uid ${cred.uid} (pid ${cred.pid})` };
  } catch {
    c.destroy();
    return;
  }
  let buf = '';
  const answer = (a: ControlAnswer) => c.end(JSON.stringify(a) + '\n');
  c.setEncoding('utf8');
  c.on('data', (chunk: string) => {
    if (buf.includes('\n')) return;
    buf += chunk;
    if (buf.length > MAX_REQUEST) return void c.destroy();
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    let request: ControlRequest;
    try {
      request = parseRequest(buf.slice(0, nl));
    } catch (e) {
      audit('invalid', caller, false, (e as Error).message);
      return answer({ ok: false, error: (e as Error).message });
    }
    if (!mayControl(caller, owner)) {
      const why = `${caller.text} may not control this session (only root or uid ${owner}, the owner of the state folder)`;
      audit(request.kind, caller, false, why);
      return answer({ ok: false, error: why });
    }
    audit(request.kind, caller, true, request.kind === 'exec' ? termSafe(request.command.join(' ')) : request.kind === 'quarantine' ? request.why : '');
    handler(request, caller).then(answer, (e: Error) => answer({ ok: false, error: e.message.split('\n')[0] ?? 'failed' }));
  });
}

/**
 * SIGTERM/SIGHUP end the session; SIGINT (a Ctrl-C on a terminal the agent shares the
 * foreground of) goes to the agent, as `docker run` proxies it: a Ctrl-C never ends the
 * session or reverts its work by itself; the agent exiting does.
 */
function signals(local: (request: LocalRequest) => void): () => void {
  const table: [NodeJS.Signals, LocalRequest][] = [
    ['SIGTERM', { kind: 'end', reason: 'killed' }],
    ['SIGINT', { kind: 'forward', signal: 'SIGINT' }],
    ['SIGHUP', { kind: 'end', reason: 'signal SIGHUP' }],
  ];
  const offs = table.map(([sig, request]) => {
    const fn = () => local(request);
    process.on(sig, fn);
    return () => process.off(sig, fn);
  });
  return () => offs.forEach((off) => off());
}

/**
 * Sends one request to a session's control socket and waits for the answer, at most
 * `timeoutMs` (a launcher that is stopped or starved does not answer; the caller then
 * acts by itself).
 */
export function ask(path: string, request: ControlRequest, timeoutMs: number): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const c = connect(path);
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new AgentboxError('CONTROL_UNAVAILABLE', `no answer on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('connect', () => c.write(JSON.stringify(request) + '\n'));
    c.on('data', (d: string) => (buf += d));
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(new AgentboxError('CONTROL_UNAVAILABLE', `the control socket ${path} cannot be reached: ${e.message}`));
    });
    c.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlAnswer);
      } catch {
        reject(new AgentboxError('CONTROL_UNAVAILABLE', `the control socket ${path} answered something that is not JSON`));
      }
    });
  });
}
