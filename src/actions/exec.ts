/**
 * `agentbox exec SESSION -- CMD`: a command inside a running box, as the agent runs: the
 * same namespaces, uid, cgroup, seccomp filter and Landlock rules (process runtime), or
 * the same container (container runtime: the Engine's exec, so the container's seccomp,
 * capabilities and user apply). For an admin or a responder; audited with who ran it.
 *
 * Process runtime, from the outside in: join the session's cgroups (a shell that writes
 * its own pid, so every child is counted and frozen with the box), drop to the agent's
 * uid, enter the box's user namespace first and then its mount, pid, network, IPC, UTS
 * and cgroup namespaces (nsenter), drop every capability and set no_new_privs (setpriv),
 * then the box's environment only, and landlock-exec with the box's rules plus its
 * seccomp program on fd 3. With a terminal the command gets a pty of its own.
 * The micro-VM's guest has nothing that starts a process after boot: refused (exit 4).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { AgentboxError, ExitCode } from '../errors.js';
import { AuditSink } from '../audit/sink.js';
import { whichSync } from '../host/which.js';
import { openPty } from '../host/pty.js';
import { seccompBytes } from '../box/seccomp.js';
import { EXEC_SPEC, type ExecSpec } from '../session/box.js';
import { readSession, type Session } from '../session/records.js';
import { stateDir } from '../session/state.js';
import { ask, controlSocket } from '../session/control.js';
import { answererIdentity } from '../egress/consent.js';
import type { Notify } from './notify.js';

/** A process inside the box's innermost namespaces: a session cgroup member in another user namespace that is not bubblewrap itself. */
function innerPid(s: Session): number | undefined {
  const mine = readlinkSync('/proc/self/ns/user');
  for (const dir of s.cgroups) {
    let procs: number[] = [];
    try {
      procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      continue;
    }
    for (const pid of procs.sort((a, b) => b - a)) {
      try {
        if (readlinkSync(`/proc/${pid}/ns/user`) === mine) continue;
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'bwrap') continue;
        return pid;
      } catch {
        // gone
      }
    }
  }
  return undefined;
}

function spec(s: Session): ExecSpec {
  const f = join(s.dir, EXEC_SPEC);
  if (!existsSync(f)) throw new AgentboxError('CONTROL_UNAVAILABLE', `session ${s.id} recorded no way in (it was started by an older agentbox); nothing was run`);
  return JSON.parse(readFileSync(f, 'utf8')) as ExecSpec;
}

function audit(s: Session, action: string, cmd: string[], reason: string, details: Record<string, unknown>): void {
  new AuditSink(stateDir()).append({ session: s.id, agent: s.agent, action, resource: cmd.join(' ').slice(0, 400), decision: action === 'session.exec' ? 'allow' : 'info', reason, details });
}

export async function execInSession(id: string, cmd: string[], notify: Notify): Promise<number> {
  if (cmd.length === 0) throw new AgentboxError('USAGE', 'give the command to run after --, such as: agentbox exec SESSION -- ls -la');
  const s = readSession(stateDir(), id);
  if (!s) throw new AgentboxError('USAGE', `no session ${id} (agentbox ps lists them)`);
  if (s.state !== 'running') {
    throw new AgentboxError('CHECK_FAILED', `session ${id} is ${s.state}${s.state === 'quarantined' ? ' (frozen: a command would hang; agentbox release it first, or read its evidence)' : ''}; nothing was run`);
  }
  const me = process.getuid?.() ?? -1;
  if (me !== 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `joining session ${id} needs root (entering a box's namespaces and cgroups does); nothing was run`);
  if (s.runtime === 'microvm') {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `exec into a micro-VM session is not supported: its guest has no service that starts processes after boot (and adding one would be a way in for the host's side only agentbox should have); nothing was run`, { details: ['quarantine it to take evidence, or end it and launch a new session'] });
  }
  // The launcher is asked first, on its control socket: it checks the session's state and
  // audits the request with the caller's uid (SO_PEERCRED).
  const asked = await ask(controlSocket(stateDir(), id), { kind: 'exec', command: cmd }, 3000).catch((e: Error) => ({ ok: false as const, error: e.message }));
  if (!asked.ok) throw new AgentboxError('CONTROL_UNAVAILABLE', `session ${id}: ${asked.error}; nothing was run`);
  const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const who = answererIdentity();
  audit(s, 'session.exec', cmd, `exec by ${who}`, { by: who, uid: me, tty, runtime: s.runtime });
  const code = s.runtime === 'container' ? await containerExec(s, spec(s), cmd, tty) : await processExec(s, spec(s), cmd, tty, notify);
  audit(s, 'session.exec.exit', cmd, `exit code ${code}`, { by: who, exitCode: code });
  return code;
}

async function processExec(s: Session, sp: ExecSpec, cmd: string[], tty: boolean, notify: Notify): Promise<number> {
  const pid = innerPid(s);
  if (!pid) throw new AgentboxError('CONTROL_UNAVAILABLE', `no process of session ${s.id} is left inside its box to join; nothing was run`);
  const tools = { nsenter: whichSync('nsenter'), setpriv: whichSync('setpriv'), setsid: whichSync('setsid') };
  const missing = Object.entries(tools).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length > 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `${missing.join(', ')} not installed (apt-get install util-linux); nothing was run`);
  if (sp.landlock.length === 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `session ${s.id} runs without Landlock rules to carry in; nothing was run`);
  const procs = s.cgroups.map((d) => join(d, 'cgroup.procs')).filter((f) => existsSync(f));
  // The shell's script is fixed text; paths and the command arrive as its arguments.
  const joinCgroups = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1"; shift; n=$((n-1)); done; exec "$@"';
  const helper = sp.landlock[0]!;
  const rules = sp.landlock.slice(1, sp.landlock[sp.landlock.length - 1] === '--' ? -1 : undefined);
  // bubblewrap's --disable-userns nests the agent's user namespace in the one that owns the
  // box's other namespaces, so the order is: every namespace but the user one (as root),
  // then the agent's user namespace with the agent's uid (nsenter -S/-G: only that uid is
  // mapped there), then no capabilities and no_new_privs.
  // The namespaces are held open here, then the process is checked to still be the
  // session's: a pid the kernel gave to another process meanwhile is never entered.
  const NS = ['mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup', 'user'] as const;
  const nsFds = NS.map((n) => openSync(`/proc/${pid}/ns/${n}`, 'r'));
  if (innerPid(s) === undefined || !s.cgroups.some((d) => { try { return readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid)); } catch { return false; } })) {
    for (const fd of nsFds) closeSync(fd);
    throw new AgentboxError('CONTROL_UNAVAILABLE', `the process of session ${s.id} left while agentbox joined it; nothing was run`);
  }
  const fdOf = (n: (typeof NS)[number]) => `/proc/self/fd/${4 + NS.indexOf(n)}`;
  const inner = [
    tools.nsenter!, `--mount=${fdOf('mnt')}`, `--pid=${fdOf('pid')}`, `--net=${fdOf('net')}`, `--ipc=${fdOf('ipc')}`, `--uts=${fdOf('uts')}`, `--cgroup=${fdOf('cgroup')}`, '--',
    '/usr/bin/nsenter', `--user=${fdOf('user')}`, '-S', String(s.uid), '-G', String(s.gid), '--',
    '/usr/bin/setpriv', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--',
    '/usr/bin/env', '-i', '-C', sp.cwd, ...sp.env.map(([k, v]) => `${k}=${v}`),
    helper, ...rules, '--seccomp-fd', '3', '--', ...cmd,
  ];
  const argv = ['/bin/sh', '-c', joinCgroups, 'agentbox-exec', String(procs.length), ...procs, ...(tty ? [tools.setsid!, '--ctty'] : []), ...inner];
  const term = tty ? openPty(process.stdout.columns ?? 80, process.stdout.rows ?? 24) : undefined;
  // Without a pty of its own, the command never gets a terminal fd of the operator's: a
  // terminal stdin becomes /dev/null, a terminal stdout or stderr a pipe relayed here.
  const stdio = term ? [term.slave, term.slave, term.slave] : [process.stdin.isTTY ? 'ignore' : 'inherit', process.stdout.isTTY ? 'pipe' : 'inherit', process.stderr.isTTY ? 'pipe' : 'inherit'];
  const c = spawn(argv[0]!, argv.slice(1), { stdio: [...stdio, 'pipe', ...nsFds] as Parameters<typeof spawn>[2]['stdio'], detached: !term });
  term?.closeSlave();
  for (const fd of nsFds) closeSync(fd);
  c.stdout?.pipe(process.stdout);
  c.stderr?.pipe(process.stderr);
  const seccomp = c.stdio[3] as NodeJS.WritableStream;
  seccomp.on('error', () => undefined);
  seccomp.end(seccompBytes());
  const stop = term ? term.relay(process.stdin as import('node:tty').ReadStream, process.stdout) : undefined;
  // Ctrl-C on a shared terminal goes to the command, not to this process.
  const forward = () => c.pid && process.kill(-c.pid, 'SIGINT');
  if (!term) process.on('SIGINT', forward);
  const code = await new Promise<number>((resolve) => {
    c.on('error', (e) => {
      notify.warn(`cannot join the box: ${e.message}`);
      resolve(125);
    });
    c.on('exit', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : signal === 'SIGKILL' ? 137 : 128)));
  });
  process.off('SIGINT', forward);
  await stop?.();
  return code;
}

async function containerExec(s: Session, sp: ExecSpec, cmd: string[], tty: boolean): Promise<number> {
  if (!s.container) throw new AgentboxError('CONTROL_UNAVAILABLE', `session ${s.id} recorded no container; nothing was run`);
  const { dockerClient } = await import('../runtimes/container/engine.js');
  const { demux, relayRaw } = await import('../runtimes/container/stream.js');
  const docker = await dockerClient();
  const ex = await docker.getContainer(s.container).exec({ Cmd: cmd, User: `${s.uid}:${s.gid}`, Env: sp.env.map(([k, v]) => `${k}=${v}`), WorkingDir: sp.cwd, AttachStdin: true, AttachStdout: true, AttachStderr: true, Tty: tty });
  const stream = (await ex.start({ hijack: true, stdin: true, Tty: tty })) as unknown as import('node:stream').Duplex;
  const stdin = process.stdin as import('node:tty').ReadStream;
  const raw = tty ? stdin.isRaw : undefined;
  if (raw !== undefined) stdin.setRawMode(true);
  if (tty) void ex.resize({ h: process.stdout.rows ?? 24, w: process.stdout.columns ?? 80 }).catch(() => undefined);
  process.stdin.pipe(stream);
  await (tty ? relayRaw(stream, process.stdout) : demux(stream, { stdout: process.stdout, stderr: process.stderr }));
  process.stdin.unpipe(stream);
  if (raw !== undefined) stdin.setRawMode(raw);
  process.stdin.pause();
  const info = await ex.inspect();
  return info.ExitCode ?? ExitCode.internal;
}
