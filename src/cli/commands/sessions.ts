/**
 * `agentbox ps` and `agentbox kill`.
 */
import type { Command } from 'commander';
import { AgentboxError } from '../../errors.js';
import { listSessions, readSession, signalSession } from '../../session/records.js';
import { stateDir } from '../../session/state.js';
import type { Io } from '../io.js';

export async function psCommand(opts: { all?: boolean }, io: Io): Promise<number> {
  const sessions = listSessions(stateDir()).filter((s) => opts.all || s.state !== 'exited');
  if (io.json) {
    io.data(sessions);
    return 0;
  }
  if (sessions.length === 0) {
    io.out(opts.all ? 'no sessions' : 'no running sessions (--all lists ended ones)');
    return 0;
  }
  io.out(['SESSION', 'AGENT', 'RUNTIME', 'STATE', 'PID', 'STARTED', 'EXPIRES'].join('\t'));
  for (const s of sessions) io.out([s.id, s.agent, s.runtime, s.state, String(s.pid), s.startedAt, s.expiresAt ?? '-'].join('\t'));
  return 0;
}

export async function killCommand(id: string | undefined, opts: { agent?: string }, io: Io): Promise<number> {
  const state = stateDir();
  const targets = opts.agent ? listSessions(state).filter((s) => s.agent === opts.agent && s.state !== 'exited') : id ? [readSession(state, id)].filter((s) => s !== undefined) : [];
  if (!id && !opts.agent) throw new AgentboxError('USAGE', 'name a session, or --agent NAME');
  if (targets.length === 0) throw new AgentboxError('USAGE', opts.agent ? `no running session of agent ${opts.agent}` : `no session ${id}`, { details: ['agentbox ps lists sessions'] });
  for (const s of targets) {
    if (s.state === 'exited') {
      io.info(`${s.id} has already ended`);
      continue;
    }
    // The launcher ends the session cleanly (revert, audit); if it is gone, end the box directly.
    signalSession(s, 'end');
    io.info(`ending ${s.id}`);
  }
  if (io.json) io.data(targets.map((s) => s.id));
  return 0;
}

export function registerSessions(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('ps')
    .description('list agent sessions')
    .option('--all', 'include sessions that have ended')
    .addHelpText('after', `
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
Examples:
  agentbox kill cowork-3f9a12c0
  agentbox kill --agent cowork`)
    .action((id: string | undefined, opts: { agent?: string }) => run((io) => killCommand(id, opts, io)));
}
