/**
 * Sessions as a person manages them: list them (orphans found and finished first),
 * end them (through their launcher, or directly when it is gone), and the reaper's
 * watch over a container session whose launcher might die.
 */
import { AgentboxError } from '../errors.js';
import { signalIdentity } from '../host/proc.js';
import { launcherGone } from '../session/reaper.js';
import { rmSync } from 'node:fs';
import { removeSessionDir } from '../session/layers.js';
import { join } from 'node:path';
import { launcherAlive, readSession, sessionsDir, type Session } from '../session/records.js';
import { ask, controlSocket } from '../session/control.js';
import { stateDir } from '../session/state.js';
import { finishOrphan, reapOrphan, reconcile } from './orphans.js';
import type { Notify } from './notify.js';

export type { Session } from '../session/records.js';
export { REAPER_COMMAND } from '../session/reaper.js';

/** Every session record, orphans reconciled first; `all` includes ended ones. */
export async function listSessions(all: boolean): Promise<Session[]> {
  return (await reconcile(stateDir())).filter((s) => all || s.state !== 'exited');
}

export interface KillReport {
  ended: string[];
  /** Sessions that had already ended (the command exits 1 for them). */
  alreadyEnded: Session[];
}

/** Ends a session, or every live session of an agent. */
export async function kill(target: { id?: string; agent?: string }, notify: Notify): Promise<KillReport> {
  const state = stateDir();
  if (!target.id && !target.agent) throw new AgentboxError('USAGE', 'name a session, or --agent NAME');
  const sessions = await reconcile(state);
  const targets = target.agent ? sessions.filter((s) => s.agent === target.agent && s.state !== 'exited') : sessions.filter((s) => s.id === target.id);
  if (targets.length === 0) throw new AgentboxError('USAGE', target.agent ? `no running session of agent ${target.agent}` : `no session ${target.id}`, { details: ['agentbox ps lists sessions'] });
  const report: KillReport = { ended: [], alreadyEnded: [] };
  for (const s of targets) {
    if (s.state === 'exited') {
      report.alreadyEnded.push(s);
      continue;
    }
    if (s.state === 'orphaned' || !launcherAlive(s)) {
      if (process.getuid?.() !== 0) throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id}: its launcher is gone; ending it needs root (its box and layers are root's)`);
      await finishOrphan(state, s, 'agentbox kill');
      notify.info(`ended ${s.id} (its launcher was gone; ${s.snapshot === 'persist' ? 'its changes were committed' : 'its changes were reverted'})`);
    } else {
      // The launcher ends the session cleanly (revert, audit); asked on its control socket.
      const a = await ask(controlSocket(state, s.id), { kind: 'end', reason: 'killed' }, 5000).catch((e: Error) => ({ ok: false as const, error: e.message }));
      if (!a.ok && s.unit) {
        // agentboxd governs other agents too: it is never signalled on one agent's behalf.
        throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id}: agentboxd did not answer (${a.error}); stop the agent with systemctl stop ${s.unit}`);
      }
      if (!a.ok) {
        // A launcher that cannot answer (stopped, starved): SIGTERM, which it handles the same way once it runs.
        if (!signalIdentity(s.launcher, 'SIGTERM') || !signalIdentity(s.launcher, 'SIGCONT')) throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id}: the launcher did not answer (${a.error}) and cannot be signalled`);
        notify.info(`ending ${s.id} (the launcher did not answer on its control socket: ${a.error}; SIGTERM and SIGCONT sent)`);
      } else notify.info(`ending ${s.id}`);
    }
    report.ended.push(s.id);
  }
  return report;
}

/** The reaper (see session/reaper.ts): waits for the launcher to go, then finishes the session if it did not. */
export async function reap(id: string): Promise<void> {
  const state = stateDir();
  const first = readSession(state, id);
  if (!first) return;
  let ttl: NodeJS.Timeout | undefined;
  if (first.expiresAt) {
    // A launcher that hangs past the ttl: the box is ended anyway (the launcher, if it
    // wakes, finds it gone and closes the session the usual way).
    const due = Date.parse(first.expiresAt) + 10_000 - Date.now();
    ttl = setTimeout(async () => {
      const s = readSession(state, id);
      if (s && s.state !== 'exited') {
        if (s.runtime === 'container' && s.container) {
          const { dockerClient } = await import('../runtimes/container/engine.js');
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
    if (!s || s.state === 'exited') return;
    if (s.state === 'orphaned') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const s = readSession(state, id);
  if (s && s.state === 'orphaned') await reapOrphan(state, s, 'the session reaper');
}

export interface PruneReport {
  removed: string[];
  /** Ended sessions kept, and why (something is still mounted under them). */
  kept: { id: string; why: string }[];
}

/** Forgets ended sessions (record, token, session folder); the audit log and evidence stay. */
export async function prune(olderThanSeconds: number | undefined): Promise<PruneReport> {
  const state = stateDir();
  const report: PruneReport = { removed: [], kept: [] };
  const now = Date.now();
  for (const s of await reconcile(state)) {
    if (s.state !== 'exited') continue;
    const ended = Date.parse(s.endedAt ?? s.startedAt);
    if (olderThanSeconds !== undefined && now - ended < olderThanSeconds * 1000) continue;
    const dir = join(sessionsDir(state), s.id);
    // The one removal that never goes through a mount (a grant's bind would be user data).
    if (!removeSessionDir(dir)) {
      report.kept.push({ id: s.id, why: `something is still mounted under ${dir}` });
      continue;
    }
    // unlink(2) removes a link itself, never its target; the sessions folder is root's 0700.
    for (const ext of ['.token', '.json', '.cut', '.sock']) rmSync(join(sessionsDir(state), `${s.id}${ext}`), { force: true });
    report.removed.push(s.id);
  }
  return report;
}
