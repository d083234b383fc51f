/**
 * The agent's own pseudo-terminal, so it never shares the launcher's (no TIOCSTI into
 * the operator's shell, no reads of the operator's keystrokes after the session).
 *
 * openpty(3) and TIOCSWINSZ come from node-pty's native binding (its `spawn` cannot pass
 * the extra fds a box needs: the seccomp program and the grants as opened). The slave is
 * reopened by name so the agent's stdio is a blocking file description of its own; the
 * box makes it the controlling terminal (`setsid --ctty`), so job control and Ctrl-C,
 * Ctrl-Z and Ctrl-\ reach the agent's foreground job. The launcher's terminal is put in
 * raw mode and relayed: keystrokes in, output out, SIGWINCH as a resize.
 *
 * The master fd is not close-on-exec (openpty's); landlock-exec closes every fd above
 * stdio before the agent runs, so only agentbox's own helpers ever hold it.
 */
import { closeSync, constants, openSync, write } from 'node:fs';
import { createRequire } from 'node:module';
import tty from 'node:tty';
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';

interface NativePty {
  open(cols: number, rows: number): { master: number; slave: number; pty: string };
  resize(fd: number, cols: number, rows: number): void;
}

let native: NativePty | undefined;
function binding(): NativePty {
  if (!native) {
    const require = createRequire(import.meta.url);
    const utils = require('node-pty/lib/utils.js') as { loadNativeModule(name: string): { module: NativePty } };
    native = utils.loadNativeModule('pty').module;
  }
  return native;
}

export interface Pty {
  /** The slave, for the box's stdin, stdout and stderr (close it once the box has it). */
  slave: number;
  /** Its name (/dev/pts/N). */
  name: string;
  resize(cols: number, rows: number): void;
  closeSlave(): void;
  /** Relays the launcher's terminal until the returned function is called (then restores it). */
  relay(input: tty.ReadStream, output: NodeJS.WriteStream, attach?: AttachPoint): () => Promise<void>;
}

/**
 * Where `agentbox attach` reaches a running session's terminal: a unix socket (0600, in
 * the root-only session folder). A client sends one JSON line ({by, cols, rows}), then
 * frames of [type, uint32 length, payload]: `d` keystrokes, `r` a resize (cols, rows as
 * uint16). It receives what the agent writes, from then on.
 */
export interface AttachPoint {
  path: string;
  onAttach(by: string): void;
  onDetach(by: string): void;
}

/** A line the operator types while the relay holds the terminal (the consent question). */
type LineTaker = (line: string) => void;
let taker: { take: LineTaker; buffer: string } | undefined;
let relaying = false;

/**
 * Takes the next line typed on the launcher's terminal away from the agent, while a pty
 * relay is running; returns undefined when none is (then read /dev/tty as usual).
 */
export function takeTerminalLine(take: LineTaker): (() => void) | 'busy' | undefined {
  if (!relaying) return undefined;
  // One question on the terminal at a time: a second one is answered from another
  // terminal (agentbox approve), never by a line typed for the first.
  if (taker) return 'busy';
  const mine = { take, buffer: '' };
  taker = mine;
  return () => {
    if (taker === mine) {
      taker = undefined;
      resumeOutput?.();
    }
  };
}
/** While a question holds the terminal the agent's output waits, so it cannot hide or imitate the question. */
let resumeOutput: (() => void) | undefined;

export function openPty(cols: number, rows: number): Pty {
  const n = binding();
  const t = n.open(Math.max(1, cols), Math.max(1, rows));
  // Reopen the slave: node-pty set O_NONBLOCK on its file description.
  const slave = openSync(t.pty, constants.O_RDWR | constants.O_NOCTTY);
  closeSync(t.slave);
  let slaveOpen = true;
  const master = t.master;
  const pty: Pty = {
    slave,
    name: t.pty,
    resize: (c, r) => n.resize(master, Math.max(1, c), Math.max(1, r)),
    closeSlave: () => {
      if (slaveOpen) closeSync(slave);
      slaveOpen = false;
    },
    relay(input, output, attach) {
      relaying = true;
      const reader = new tty.ReadStream(master);
      const held: Buffer[] = [];
      let heldBytes = 0;
      resumeOutput = () => {
        reader.resume();
        for (const d of held.splice(0)) out(d);
        heldBytes = 0;
      };
      const out = (d: Buffer) => {
        if (taker) {
          held.push(d);
          heldBytes += d.length;
          if (heldBytes > 1 << 20) reader.pause();
          return;
        }
        // Attached clients get a copy; one that cannot keep up is dropped, never waited for.
        for (const c of clients) if (!c.write(d) && c.writableLength > 1 << 20) c.destroy();
        // Backpressure: a terminal that cannot keep up pauses the agent's output.
        if (!output.write(d)) {
          reader.pause();
          output.once('drain', () => reader.resume());
        }
      };
      const ended = new Promise<void>((resolve) => {
        reader.on('data', out);
        // EIO once every slave fd is closed: the agent and its jobs are gone.
        reader.on('error', () => resolve());
        reader.on('close', () => resolve());
      });
      // Keystrokes to the agent: a partial write keeps its rest, EAGAIN (the master is
      // non-blocking) retries shortly; at most 1 MiB waits (more is dropped, never held).
      const queue: Buffer[] = [];
      let queued = 0;
      let writing = false;
      const pump = () => {
        if (writing || queue.length === 0) return;
        writing = true;
        const b = queue[0]!;
        write(master, b, (err, n) => {
          writing = false;
          if (err && (err as NodeJS.ErrnoException).code === 'EAGAIN') return void setTimeout(pump, 5);
          if (err) return;
          queued -= n;
          if (n < b.length) queue[0] = b.subarray(n);
          else queue.shift();
          pump();
        });
      };
      const enqueue = (d: Buffer) => {
        if (queued + d.length > 1 << 20) return;
        queued += d.length;
        queue.push(d);
        pump();
      };
      const onInput = (d: Buffer, remote = false) => {
        if (taker && !remote) {
          // The consent question owns this line; echo it, deliver on Enter.
          for (const ch of d.toString('utf8')) {
            if (ch === '\r' || ch === '\n') {
              const t2 = taker;
              taker = undefined;
              output.write('\r\n');
              t2.take(t2.buffer);
              resumeOutput?.();
              return;
            }
            if (ch === '\x7f' || ch === '\b') t2Backspace();
            else if (ch >= ' ') {
              taker.buffer += ch;
              output.write(ch);
            }
          }
          return;
        }
        enqueue(d);
      };
      const t2Backspace = () => {
        if (taker && taker.buffer.length > 0) {
          taker.buffer = taker.buffer.slice(0, -1);
          output.write('\b \b');
        }
      };
      const clients = new Set<Socket>();
      const server = attach ? serveAttach(attach, clients, (d) => onInput(d, true), (c, r) => pty.resize(c, r)) : undefined;
      const onResize = () => pty.resize(output.columns ?? 80, output.rows ?? 24);
      const wasRaw = input.isRaw;
      input.setRawMode(true);
      input.on('data', (d: Buffer) => onInput(d));
      input.resume();
      process.on('SIGWINCH', onResize);
      return async () => {
        server?.close();
        for (const c of clients) c.destroy();
        process.off('SIGWINCH', onResize);
        input.removeAllListeners('data');
        input.setRawMode(wasRaw);
        input.pause();
        relaying = false;
        taker = undefined;
        pty.closeSlave();
        // What the agent wrote before it exited is shown; then the master is closed, so
        // nothing left in the box can reach this terminal.
        await Promise.race([ended, new Promise((r) => setTimeout(r, 500))]);
        reader.destroy();
      };
    },
  };
  return pty;
}

/** The attach socket: hello line, then frames; each client's keystrokes go to the agent. */
function serveAttach(a: AttachPoint, clients: Set<Socket>, input: (d: Buffer) => void, resize: (cols: number, rows: number) => void) {
  rmSync(a.path, { force: true });
  const server = createServer((c) => {
    let buf = Buffer.alloc(0);
    let by: string | undefined;
    c.on('error', () => c.destroy());
    c.on('close', () => {
      clients.delete(c);
      if (by !== undefined) a.onDetach(by);
    });
    c.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (by === undefined) {
        const nl = buf.indexOf(10);
        if (nl < 0) return void (buf.length > 4096 && c.destroy());
        try {
          const hello = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { by?: unknown; cols?: unknown; rows?: unknown };
          by = String(hello.by ?? 'unknown').slice(0, 200);
          if (typeof hello.cols === 'number' && typeof hello.rows === 'number') resize(hello.cols, hello.rows);
        } catch {
          return void c.destroy();
        }
        buf = buf.subarray(nl + 1);
        clients.add(c);
        a.onAttach(by);
      }
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (len > 1 << 16) return void c.destroy();
        if (buf.length < 5 + len) break;
        const type = String.fromCharCode(buf[0]!);
        const payload = buf.subarray(5, 5 + len);
        buf = buf.subarray(5 + len);
        if (type === 'd') input(Buffer.from(payload));
        else if (type === 'r' && payload.length === 4) resize(payload.readUInt16BE(0), payload.readUInt16BE(2));
      }
    });
  });
  server.listen(a.path, () => chmodSync(a.path, 0o600));
  server.on('error', () => undefined);
  return server;
}

/** A frame for the attach socket. */
export function attachFrame(type: 'd' | 'r', payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}
