/**
 * `agentbox ps` and `agentbox kill`, and the reaper's hidden command.
 */
import type { Command } from 'commander';
import { AgentboxError, ExitCode } from '../../errors.js';
import { finishOrphan, reapOrphan, reconcile } from '../../actions/orphans.js';
import { launcherGone, REAPER_COMMAND } from '../../session/reaper.js';
import { launcherAlive, readSession, signalSession, type Session } from '../../session/records.js';
import { stateDir } from '../../session/state.js';
import { signalIdentity } from '../../host/proc.js';
import { termSafe } from '../../generate/escape/terminal.js';
import type { Io } from '../io.js';

/** The state as a person reads it: a released session's egress stays cut. */
const shownState = (s: Session) => (s.state === 'running' && s.egressCut ? 'egress-cut' : s.state);

export async function psCommand(opts: { all?: boolean }, io: Io): Promise<number> {
  const sessions = (await reconcile(stateDir())).filter((s) => opts.all || s.state !== 'exited');
  if (io.json) {
    io.data(sessions);
    return 0;
  }
  if (sessions.length === 0) {
    io.out(opts.all ? 'no sessions' : 'no running sessions (--all lists ended ones)');
    return 0;
  }
  const rows = [['SESSION', 'AGENT', 'RUNTIME', 'STATE', 'PID', 'EXIT', 'STARTED', 'EXPIRES']];
  for (const s of sessions) rows.push([s.id, termSafe(s.agent), s.runtime + (s.isolation && s.isolation !== 'runc' ? `/${s.isolation}` : ''), shownState(s), String(s.pid), s.exitCode === null ? '-' : String(s.exitCode), s.startedAt, s.expiresAt ?? '-']);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  return 0;
}

export async function killCommand(id: string | undefined, opts: { agent?: string }, io: Io): Promise<number> {
  const state = stateDir();
  if (!id && !opts.agent) throw new AgentboxError('USAGE', 'name a session, or --agent NAME');
  const sessions = await reconcile(state);
  const targets = opts.agent ? sessions.filter((s) => s.agent === opts.agent && s.state !== 'exited') : sessions.filter((s) => s.id === id);
  if (targets.length === 0) throw new AgentboxError('USAGE', opts.agent ? `no running session of agent ${opts.agent}` : `no session ${id}`, { details: ['agentbox ps lists sessions'] });
  let code: number = ExitCode.ok;
  const ended: string[] = [];
  for (const s of targets) {
    if (s.state === 'exited') {
      io.info(`${s.id} has already ended (${s.endReason ?? 'exited'}${s.exitCode === null ? '' : `, exit code ${s.exitCode}`}); nothing to kill`);
      code = ExitCode.checkFailed;
      continue;
    }
    if (s.state === 'orphaned' || !launcherAlive(s)) {
      if (process.getuid?.() !== 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id}: its launcher is gone; ending it needs root (its box and layers are root's)`);
      await finishOrphan(state, s, 'agentbox kill');
      io.info(`ended ${s.id} (its launcher was gone; ${s.snapshot === 'persist' ? 'its changes were committed' : 'its changes were reverted'})`);
    } else {
      // The launcher ends the session cleanly (revert, audit).
      signalSession(s, 'end');
      io.info(`ending ${s.id}`);
    }
    ended.push(s.id);
  }
  if (io.json) io.data(ended);
  return code;
}

/** The reaper (see session/reaper.ts): waits for the launcher to go, then finishes the session if it did not. */
export async function reapCommand(id: string): Promise<number> {
  const state = stateDir();
  const first = readSession(state, id);
  if (!first) return 0;
  let ttl: NodeJS.Timeout | undefined;
  if (first.expiresAt) {
    // A launcher that hangs past the ttl: the box is ended anyway (the launcher, if it
    // wakes, finds it gone and closes the session the usual way).
    const due = Date.parse(first.expiresAt) + 10_000 - Date.now();
    ttl = setTimeout(async () => {
      const s = readSession(state, id);
      if (s && s.state !== 'exited') {
        if (s.runtime === 'container' && s.container) {
          const { dockerClient } = await import('../../runtimes/container/runtime.js');
          await (await dockerClient()).getContainer(s.container).kill({ signal: 'SIGKILL' }).catch(() => undefined);
        } else signalIdentity(s.box, 'SIGKILL');
      }
    }, Math.max(0, due));
    ttl.unref();
  }
  await launcherGone();
  clearTimeout(ttl);
  // The launcher closes the record as it exits; give a clean end a moment to land.
  for (let i = 0; i < 20; i++) {
    const s = readSession(state, id);
    if (!s || s.state === 'exited') return 0;
    if (s.state === 'orphaned') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const s = readSession(state, id);
  if (s && s.state === 'orphaned') await reapOrphan(state, s, 'the session reaper');
  return 0;
}

export function registerSessions(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('ps')
    .description('list agent sessions')
    .option('--all', 'include sessions that have ended')
    .addHelpText('after', `
States: running; egress-cut (released after a quarantine: egress stays cut);
quarantined; orphaned (its launcher died: the box was ended, its changes are kept
until agentbox kill decides); exited.

Examples:
  agentbox ps
  agentbox ps --json | jq '.[] | select(.state == "running") | .id'`)
    .action((opts: { all?: boolean }) => run((io) => psCommand(opts, io)));
  program
    .command('kill')
    .description('end a session (its changes are reverted unless it persists them)')
    .argument('[session]', 'session id from agentbox ps')
    .option('--agent <name>', 'every running session of this agent')
    .addHelpText('after', `
Exit codes: 0 ended; 1 the session had already ended; 2 no such session.

Examples:
  agentbox kill cowork-3f9a12c0
  agentbox kill --agent cowork`)
    .action((id: string | undefined, opts: { agent?: string }) => run((io) => killCommand(id, opts, io)));
  program
    .command(REAPER_COMMAND, { hidden: true })
    .argument('<session>')
    .action((id: string) => run(() => reapCommand(id)));
}
