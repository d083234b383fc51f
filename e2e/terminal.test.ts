/**
 * A real terminal for the agent, driven on a real pseudo-terminal by a helper
 * (test/helpers/ptyscript.py) as a person at a terminal would drive it.
 *
 * Attack: keystroke injection into the operator's shell (TIOCSTI on a terminal the agent
 * shares with the launcher), or output written by a box after its session ended.
 * Defence: the agent gets a pseudo-terminal of its own (process runtime: openpty and
 * `setsid --ctty`; container runtime: the Engine's), the launcher relays it and closes
 * the master when the agent exits.
 *
 * Also checked, on the process and container runtimes: job control (Ctrl-Z stops the
 * foreground job), Ctrl-C interrupts a `sleep` inside while the session goes on, a
 * window size change reaches the agent, and the session's exit code is the agent's.
 */
import { execa } from 'execa';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const DRIVER = join(import.meta.dirname, '..', 'test', 'helpers', 'ptyscript.py');
const base = mkdtempSync(join(tmpdir(), 'agentbox-terminal-'));
chmodSync(base, 0o755);
const state = join(base, 'state');

type Step = ['expect', string] | ['send', string] | ['resize', number, number] | ['sleep', number];
interface Transcript {
  screen: string;
  after_exit: string;
  status: number;
  failed: Step | null;
}

async function drive(steps: Step[], argv: string[]): Promise<Transcript> {
  const r = await execa('python3', [DRIVER, JSON.stringify(steps), ...argv], { reject: false, env: { NO_COLOR: '1', AGENTBOX_STATE_DIR: state, TERM: 'xterm' } });
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Transcript;
}

const PROMPT = '\\$ $';

describe.each(['process', 'container'])('an interactive shell on the %s runtime', (runtime) => {
  it('Ctrl-C interrupts the agent\'s job, not the session; Ctrl-Z stops it; the window size follows', async () => {
    const t = await drive(
      [
        ['expect', PROMPT],
        ['send', 'sleep 30\r'],
        ['sleep', 1],
        ['send', '\u0003'],
        // Computed, so the echo of the typed line cannot match.
        ['send', 'echo alive-$((6*7))\r'],
        ['expect', 'alive-42'],
        ['resize', 40, 120],
        ['sleep', 0.5],
        ['send', 'stty size\r'],
        ['expect', '40 120'],
        ['send', 'sleep 30\r'],
        ['sleep', 1],
        ['send', '\u001a'],
        ['expect', 'Stopped'],
        ['send', 'jobs; echo jobs-$((1+1)); kill -KILL %1\r'],
        ['expect', 'jobs-2'],
        // The stopped job is reaped before the shell is asked to exit.
        ['send', 'sleep 0.5; jobs; echo reaped-$((2+2))\r'],
        ['expect', 'reaped-4'],
        ['send', 'exit 7\r'],
      ],
      [process.execPath, BIN, 'launch', 'shell', '--runtime', runtime],
    );
    expect(t.failed, t.screen).toBeNull();
    expect(t.screen).toMatch(/\^C/);
    expect(t.screen).toMatch(/ended with exit code 7/);
    expect(t.status).toBe(7);
    expect(t.after_exit).toBe('');
  }, 120_000);
});

describe('keystroke injection', () => {
  it('TIOCSTI from the box reaches only the box\'s own terminal, never the operator\'s shell', async () => {
    // The agent tries TIOCSTI on every fd it has and on /dev/tty; then, on the operator's
    // terminal, a shell reads whatever is waiting in its input queue.
    const inject = join(base, 'inject.py');
    writeFileSync(inject, `import fcntl, os, termios
ok = []
fds = [0, 1, 2]
try:
    fds.append(os.open("/dev/tty", os.O_RDWR))
except OSError as e:
    print("no /dev/tty:", e.errno)
for fd in fds:
    try:
        for ch in b"echo INJECTED-$((3*5))\\n":
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([ch]))
        ok.append(fd)
    except OSError as e:
        print("fd", fd, "refused:", e.errno)
print("injected into", ok, flush=True)
`, { mode: 0o644 });
    const manifest = join(base, 'inject.yaml');
    writeFileSync(manifest, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: inject }\nextends: [viewer]\nagent: { command: [/usr/bin/python3, ${inject}] }\ncapabilities:\n  - fs:read:${inject}\n  - exec:/usr/bin\n`);
    const outer = `${process.execPath} ${BIN} launch ${manifest}; echo LAUNCH-DONE; read -t 2 line; echo "OUTER-READ:[$line]"`;
    const t = await drive([['expect', 'OUTER-READ']], ['/bin/sh', '-c', outer]);
    expect(t.failed, t.screen).toBeNull();
    expect(t.screen).toMatch(/injected into/);
    expect(t.screen).toMatch(/OUTER-READ:\[\]/);
    // The computed marker only appears if some shell ran the injected line.
    expect(t.screen).not.toMatch(/INJECTED-15/);
  }, 60_000);
});

describe.each(['process', 'container'])('agentbox attach on the %s runtime', (runtime) => {
  it('a second terminal joins the session, types into it, sees its output, detaches with Ctrl-P Ctrl-Q; both audited', async () => {
    // The launching terminal: waits at the prompt, then (after the attach) exits.
    const launching = drive(
      [
        ['expect', PROMPT],
        ['expect', 'from-attach-42'],
        ['sleep', 0.5],
        ['send', 'exit 0\r'],
      ],
      [process.execPath, BIN, 'launch', 'shell', '--runtime', runtime],
    );
    let id: string | undefined;
    for (let i = 0; i < 300 && !id; i++) {
      const r = await execa(process.execPath, [BIN, 'ps', '-q', '--filter', 'agent=shell', '--filter', `runtime=${runtime}`, '--filter', 'state=running'], { reject: false, env: { AGENTBOX_STATE_DIR: state } });
      id = String(r.stdout).trim().split('\n').filter(Boolean).pop();
      if (!id) await new Promise((x) => setTimeout(x, 100));
    }
    expect(id).toBeDefined();
    await new Promise((x) => setTimeout(x, 1500));
    const attached = await drive(
      [
        ['send', 'echo from-attach-$((6*7))\r'],
        ['expect', 'from-attach-42'],
        ['send', '\u0010\u0011'],
      ],
      [process.execPath, BIN, 'attach', id!],
    );
    expect(attached.failed, attached.screen).toBeNull();
    expect(attached.status).toBe(0);
    expect(attached.screen).toMatch(/detached from/);
    const t = await launching;
    expect(t.failed, t.screen).toBeNull();
    expect(t.status).toBe(0);
    const log = readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { session: string; action: string; details?: { by?: string } });
    expect(log.filter((e) => e.session === id).map((e) => e.action)).toEqual(expect.arrayContaining(['session.attach', 'session.detach']));
    expect(log.find((e) => e.session === id && e.action === 'session.attach')?.details?.by).toMatch(/^root on \/dev\/pts\/\d+$/);
  }, 120_000);
});

describe('a launch with only some stdio on a terminal', () => {
  it('the agent never holds the operator\'s terminal: a terminal stdout or stderr reaches it as a pipe', async () => {
    // Attack: stdin piped, stdout on the operator's terminal: the terminal fd is open for
    // reading too, so an agent could read the operator's keystrokes from its fd 1.
    const outer = `echo input | ${process.execPath} ${BIN} launch shell -- /bin/sh -c 'cat >/dev/null; for f in 0 1 2; do echo "fd$f=$(readlink /proc/$$/fd/$f)"; done'; echo LAUNCH-DONE`;
    const t = await drive([['expect', 'LAUNCH-DONE']], ['/bin/sh', '-c', outer]);
    expect(t.failed, t.screen).toBeNull();
    expect(t.screen).toMatch(/fd0=pipe:/);
    expect(t.screen).toMatch(/fd1=(pipe|socket):/);
    expect(t.screen).toMatch(/fd2=(pipe|socket):/);
    expect(t.screen).not.toMatch(/fd\d=\/dev\/pts/);
  }, 60_000);
});

describe('a Ctrl-C without a terminal of its own (SIGINT to the launcher)', () => {
  const env = { NO_COLOR: '1', AGENTBOX_STATE_DIR: state };
  it('process runtime: goes to the agent, which decides; the session is not ended by it', async () => {
    const f = join(base, 'int.yaml');
    writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: int }\nextends: [viewer]\nagent: { command: [/bin/sh, -c, 'trap "echo got-int" INT; sleep 20 & wait; echo after-int; exit 3'] }\ncapabilities: [exec:/usr/bin, exec:/bin]\n`);
    const l = execa(process.execPath, [BIN, 'launch', f], { reject: false, stdin: 'ignore', env });
    await new Promise((r) => setTimeout(r, 1500));
    l.kill('SIGINT');
    const r = await l;
    expect(r.stdout).toMatch(/got-int/);
    expect(r.stdout).toMatch(/after-int/);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/ended with exit code 3/);
  }, 60_000);

  it('micro-VM: is not passed to QEMU (which would end the session); the session goes on', async () => {
    const f = join(base, 'int-vm.yaml');
    writeFileSync(f, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: int-vm }\nextends: [viewer]\nagent: { command: [/bin/sleep, '120'] }\nruntime: { kind: microvm }\n`);
    const l = execa(process.execPath, [BIN, 'launch', f], { reject: false, stdin: 'ignore', env });
    let id: string | undefined;
    for (let i = 0; i < 600 && !id; i++) {
      id = String((await execa(process.execPath, [BIN, 'ps', '-q', '--filter', 'agent=int-vm'], { reject: false, env })).stdout).trim().split('\n').filter(Boolean).pop();
      if (!id) await new Promise((x) => setTimeout(x, 100));
    }
    expect(id).toBeDefined();
    await new Promise((r) => setTimeout(r, 8000));
    l.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 1500));
    const ps = await execa(process.execPath, [BIN, '--json', 'ps'], { reject: false, env });
    expect((JSON.parse(String(ps.stdout)) as { id: string; state: string }[]).find((x) => x.id === id)?.state).toBe('running');
    await execa(process.execPath, [BIN, 'kill', id!], { reject: false, env });
    const r = await l;
    expect(r.stderr).toMatch(/a Ctrl-C is not passed into the micro-VM/);
  }, 120_000);
});
