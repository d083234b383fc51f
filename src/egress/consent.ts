/**
 * Just-in-time consent: when the agent reaches a host its manifest marks `consent: ask`,
 * the connection is held and a person is asked, in plain words:
 *
 * - on the launching terminal when it is one (read from /dev/tty, so the agent's own
 *   stdin is not consumed), and
 * - always through STATE/approvals/ID.json, which `agentbox approvals` lists and
 *   `agentbox approve ID --once|--session` / `agentbox deny ID` answer from another
 *   terminal (the answer is STATE/approvals/ID.answer, written by rename).
 *
 * The first answer wins; no answer within the timeout is a deny. STATE/approvals is
 * 0700 and owned by the state dir's owner, so only that account (root for system
 * sessions) can answer; the agent never sees the state dir.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { identify, isRunning, type ProcessIdentity } from '../host/proc.js';
import { termSafe } from '../escape/terminal.js';
import { takeTerminalLine } from '../host/pty.js';

export interface ConsentRequest {
  id: string;
  session: string;
  agent: string;
  host: string;
  port: number;
  /** Plain words: "to upload (POST /v1/files)", "to open an encrypted connection". */
  purpose: string;
  /** The sentence a person reads. */
  question: string;
  launcherPid: number;
  /** The launcher with its start time: a request whose launcher is gone is not pending. */
  launcher?: ProcessIdentity;
  requestedAt: string;
  expiresAt: string;
}

export type ConsentDecision = 'once' | 'session' | 'deny';

export interface ConsentAnswer {
  answer: ConsentDecision | 'timeout';
  /** Who answered: account, sudo origin, terminal; `timeout` when nobody did. */
  by: string;
  via: 'tty' | 'cli' | 'timeout';
  at: string;
}

export const APPROVAL_ID = /^[0-9a-f]{8}$/;

export function approvalsDir(state: string): string {
  const dir = join(state, 'approvals');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Who is answering, for the audit trail: `root (sudo from alice) on /dev/pts/3`. */
export function answererIdentity(env: NodeJS.ProcessEnv = process.env): string {
  let name: string;
  try {
    name = userInfo().username;
  } catch {
    name = `uid ${process.getuid?.() ?? '?'}`;
  }
  const sudo = env.SUDO_USER ? ` (sudo from ${env.SUDO_USER})` : '';
  let tty = '';
  try {
    const t = readlinkTty();
    if (t) tty = ` on ${t}`;
  } catch {
    // no terminal
  }
  return `${name}${sudo}${tty}`;
}

function readlinkTty(): string | undefined {
  for (const fd of [0, 1, 2]) {
    try {
      const link = readlinkSync(`/proc/self/fd/${fd}`);
      if (link.startsWith('/dev/pts/') || link.startsWith('/dev/tty')) return link;
    } catch {
      // not a link
    }
  }
  return undefined;
}

/** Pending requests of live sessions, oldest first. */
export function pendingApprovals(state: string, now = Date.now()): ConsentRequest[] {
  const dir = approvalsDir(state);
  const out: ConsentRequest[] = [];
  for (const f of readdirSync(dir)) {
    const m = /^([0-9a-f]{8})\.json$/.exec(f);
    if (!m || existsSync(join(dir, `${m[1]}.answer`))) continue;
    try {
      const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as ConsentRequest;
      if (r.id === m[1] && Date.parse(r.expiresAt) > now && isRunning(r.launcher ?? { pid: r.launcherPid, start: '' })) out.push(r);
    } catch {
      // a request being written, or removed meanwhile
    }
  }
  return out.sort((a, b) => a.requestedAt.localeCompare(b.requestedAt));
}

/** Writes the answer a waiting session reads (`approve` / `deny`). */
export function answerApproval(state: string, id: string, answer: ConsentDecision, by: string): ConsentRequest {
  const dir = approvalsDir(state);
  const file = join(dir, `${id}.json`);
  if (!APPROVAL_ID.test(id) || !existsSync(file)) throw new Error(`no pending request ${id}`);
  const req = JSON.parse(readFileSync(file, 'utf8')) as ConsentRequest;
  if (existsSync(join(dir, `${id}.answer`))) throw new Error(`request ${id} was already answered`);
  if (Date.parse(req.expiresAt) <= Date.now()) throw new Error(`request ${id} timed out at ${req.expiresAt} and was denied`);
  const tmp = join(dir, `.${id}.${process.pid}.tmp`);
  const a: ConsentAnswer = { answer, by, via: 'cli', at: new Date().toISOString() };
  writeFileSync(tmp, JSON.stringify(a), { mode: 0o600 });
  renameSync(tmp, join(dir, `${id}.answer`));
  return req;
}

export interface AskInput {
  host: string;
  port: number;
  purpose: string;
}

export interface BrokerOptions {
  state: string;
  session: string;
  agent: string;
  timeoutSeconds: number;
  /** Prompt on the launching terminal too. */
  tty: boolean;
  /** Messages for the person at the launching terminal (stderr). */
  log: (line: string) => void;
  pollMs?: number;
}

export class ConsentBroker {
  private readonly waiting = new Set<() => void>();

  constructor(private readonly o: BrokerOptions) {}

  /** Asks and resolves with the first answer, or a timeout deny. */
  ask(input: AskInput, onRequest: (r: ConsentRequest) => void): Promise<ConsentAnswer> {
    const dir = approvalsDir(this.o.state);
    const id = randomBytes(4).toString('hex');
    const now = new Date();
    const question = `${this.o.agent} wants to connect to ${input.host}:${input.port} ${input.purpose}. Allow once / allow for this session / deny?`;
    const req: ConsentRequest = {
      id,
      session: this.o.session,
      agent: this.o.agent,
      host: input.host,
      port: input.port,
      purpose: input.purpose,
      question,
      launcherPid: process.pid,
      ...(identify(process.pid) ? { launcher: identify(process.pid)! } : {}),
      requestedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + this.o.timeoutSeconds * 1000).toISOString(),
    };
    writeFileSync(join(dir, `${id}.json`), JSON.stringify(req, null, 2), { mode: 0o600 });
    onRequest(req);
    this.o.log(`agentbox: ${termSafe(question)}`);
    this.o.log(`agentbox:   answer from another terminal: agentbox approve ${id} --once | agentbox approve ${id} --session | agentbox deny ${id}  (denied in ${this.o.timeoutSeconds}s without an answer)`);

    return new Promise<ConsentAnswer>((resolve) => {
      let done = false;
      let rl: ReturnType<typeof createInterface> | undefined;
      const finish = (a: ConsentAnswer) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        clearTimeout(timer);
        rl?.close();
        took?.();
        this.waiting.delete(cancel);
        rmSync(join(dir, `${id}.json`), { force: true });
        rmSync(join(dir, `${id}.answer`), { force: true });
        resolve(a);
      };
      const cancel = () => finish({ answer: 'deny', by: 'agentbox (session ending)', via: 'timeout', at: new Date().toISOString() });
      this.waiting.add(cancel);
      const poll = setInterval(() => {
        const f = join(dir, `${id}.answer`);
        if (!existsSync(f)) return;
        try {
          const a = JSON.parse(readFileSync(f, 'utf8')) as ConsentAnswer;
          if (a.answer === 'once' || a.answer === 'session' || a.answer === 'deny') finish({ answer: a.answer, by: String(a.by).slice(0, 200), via: 'cli', at: String(a.at) });
          else finish({ answer: 'deny', by: 'agentbox (unreadable answer)', via: 'cli', at: new Date().toISOString() });
        } catch {
          // being renamed into place; next tick
        }
      }, this.o.pollMs ?? 100);
      poll.unref?.();
      const timer = setTimeout(() => finish({ answer: 'timeout', by: 'nobody', via: 'timeout', at: new Date().toISOString() }), this.o.timeoutSeconds * 1000);
      // While the agent has a terminal of its own, the launcher's keystrokes go to it; the
      // question takes the next line typed instead.
      const taken = this.o.tty ? takeTerminalLine((line) => answerLine(line)) : undefined;
      const took = typeof taken === 'function' ? taken : undefined;
      const answerLine = (line: string) => {
        const l = line.trim().toLowerCase();
        const answer: ConsentDecision = l === 'o' || l === 'once' ? 'once' : l === 's' || l === 'session' ? 'session' : 'deny';
        finish({ answer, by: answererIdentity(), via: 'tty', at: new Date().toISOString() });
      };
      if (took) {
        process.stderr.write(`\r\nagentbox: ${termSafe(question)}\r\nagentbox: [o]nce / [s]ession / [d]eny (default deny)? `);
      } else if (taken === 'busy') {
        this.o.log(`agentbox: another question holds this terminal; answer this one with agentbox approve ${id} --once|--session or agentbox deny ${id}`);
      } else if (this.o.tty) {
        try {
          const input = createReadStream('/dev/tty');
          input.on('error', () => rl?.close());
          rl = createInterface({ input, terminal: false });
          process.stderr.write(`agentbox: [o]nce / [s]ession / [d]eny (default deny)? `);
          rl.once('line', answerLine);
          rl.on('close', () => input.destroy());
        } catch {
          // no terminal after all: the CLI path still answers
        }
      }
    });
  }

  /** Denies every held request (the session is ending or quarantined). */
  close(): void {
    for (const c of [...this.waiting]) c();
  }
}
