/**
 * `agentbox ps` and `agentbox kill`, and the reaper's hidden command.
 */
import type { Command } from 'commander';
import { ExitCode } from '../../errors.js';
import { kill, listSessions, reap, REAPER_COMMAND, type Session } from '../../actions/sessions.js';
import { termSafe } from '../../escape/terminal.js';
import type { Io } from '../io.js';

/** The state as a person reads it: a released session's egress stays cut. */
const shownState = (s: Session) => (s.state === 'running' && s.egressCut ? 'egress-cut' : s.state);

export async function psCommand(opts: { all?: boolean }, io: Io): Promise<number> {
  const sessions = await listSessions(Boolean(opts.all));
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
  const r = await kill({ ...(id ? { id } : {}), ...(opts.agent ? { agent: opts.agent } : {}) }, io);
  for (const s of r.alreadyEnded) io.info(`${s.id} has already ended (${s.endReason ?? 'exited'}${s.exitCode === null ? '' : `, exit code ${s.exitCode}`}); nothing to kill`);
  if (io.json) io.data(r.ended);
  return r.alreadyEnded.length > 0 ? ExitCode.checkFailed : ExitCode.ok;
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
    .action((id: string) => run(async () => (await reap(id), 0)));
}
