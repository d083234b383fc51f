/**
 * Sessions whose launcher died (kill -9, a crash, a reboot): the next command that looks
 * at sessions, or the container runtime's reaper, finishes what the launcher left.
 *
 * reap: ends the box by its recorded identity (a pid since reused by another process is
 * never signalled), removes the container and every host mount of the session, keeps
 * the writable layers as evidence, marks the session `orphaned` and audits it.
 * finish (`agentbox kill` of an orphaned session): lists the kept layers, commits them
 * (snapshot: persist) or drops them, and closes the record as `exited`.
 */
import { closeSync, existsSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AuditSink } from '../audit/sink.js';
import { isRunning, signalIdentity } from '../host/proc.js';
import { commitLayers, dropLayers, layerChanges, remountLayers, removeSessionDir, unmountUnder, type SessionLayers } from '../session/layers.js';
import { listSessions, readSession, sessionsDir, writeSession, type Session } from '../session/records.js';
import { listSummary } from '../session/summary.js';
import { removeCgroupDirs } from '../runtimes/process/cgroups.js';

const isRoot = () => process.getuid?.() === 0;

/** The record's layers; a record written before layers were recorded this way has none to finish. */
function layersOf(s: Session): SessionLayers | null {
  return s.layers && !Array.isArray(s.layers) && typeof s.layers === 'object' ? s.layers : null;
}

/** One actor per session at a time (the reaper and a `ps` may race): a lock file with the holder's pid. */
function withLock<T>(state: string, id: string, fn: () => Promise<T>): Promise<T | undefined> {
  const file = join(sessionsDir(state), `${id}.lock`);
  try {
    const fd = openSync(file, 'wx', 0o600);
    writeSync(fd, String(process.pid));
    closeSync(fd);
  } catch {
    const holder = Number((() => {
      try {
        return readFileSync(file, 'utf8');
      } catch {
        return '0';
      }
    })());
    if (holder > 0 && existsSync(`/proc/${holder}`)) return Promise.resolve(undefined);
    try {
      unlinkSync(file);
    } catch {
      // raced
    }
    return withLock(state, id, fn);
  }
  return fn().finally(() => {
    try {
      unlinkSync(file);
    } catch {
      // gone
    }
  });
}

/** Ends what is left of a session's box and removes the runtime's objects; the layers stay. */
async function endBox(s: Session): Promise<string[]> {
  const did: string[] = [];
  // A system-service agent's cgroup is its unit's, which systemd reuses for the unit's next
  // start: only the recorded box process itself (pid and start time) is ended; systemd
  // stopped the rest when agentboxd went (BindsTo=).
  if (s.unit) {
    if (signalIdentity(s.box, 'SIGKILL')) did.push(`box process ${s.box!.pid} killed`);
    return did;
  }
  if (s.runtime === 'container' && s.container) {
    const { dockerClient, removeSessionContainer } = await import('../runtimes/container/engine.js');
    if (await removeSessionContainer(await dockerClient(), s.id, s.container)) did.push(`container ${s.container.slice(0, 12)} removed`);
  }
  for (const dir of s.cgroups ?? []) {
    let pids: number[] = [];
    try {
      pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      // gone
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (pids.length > 0) did.push(`${pids.length} processes in ${dir} killed`);
  }
  if (signalIdentity(s.box, 'SIGKILL', s.runtime === 'process')) did.push(`box process ${s.box!.pid} killed`);
  // Give the kernel a moment to empty the cgroups, then remove them.
  for (let i = 0; i < 50 && removeCgroupDirs(s.cgroups ?? []).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  // An image-backed layer is kept on disk; a tmpfs one stays mounted (it is the only copy).
  const layers = layersOf(s);
  const keep = layers?.fs === 'tmpfs' ? [layers.mount] : [];
  if (s.run) {
    unmountUnder(s.run, keep);
    if (keep.length === 0) removeSessionDir(s.run);
  }
  // A record from before layers were recorded this way: whatever it mounted under its directory.
  if (!layers && s.dir) unmountUnder(s.dir);
  return did;
}

/** Finishes an orphaned session's box; returns the updated record (or undefined when another process is on it). */
export async function reapOrphan(state: string, s: Session, by: string): Promise<Session | undefined> {
  return withLock(state, s.id, async () => {
    const now = readSession(state, s.id);
    if (!now || now.state !== 'orphaned' || now.endedAt !== null || isRunning(now.launcher)) return now;
    const did = await endBox(now);
    const rec: Session = { ...now, state: 'orphaned', endReason: now.endReason ?? 'the launcher is gone', endedAt: now.endedAt ?? new Date().toISOString() };
    writeSession(state, rec);
    new AuditSink(state).append({ session: s.id, agent: s.agent, action: 'session.orphaned', resource: s.id, decision: 'deny', reason: `the launcher (pid ${s.launcher.pid}) is gone; the box was ended and its writable layers kept until agentbox kill`, details: { by, did } });
    return rec;
  });
}

/** Reaps every orphaned session this account can (root: all); returns the sessions as they now stand. */
export async function reconcile(state: string): Promise<Session[]> {
  const sessions = listSessions(state);
  if (!isRoot()) return sessions;
  const out: Session[] = [];
  for (const s of sessions) {
    if (s.state === 'orphaned' && s.endedAt === null) out.push((await reapOrphan(state, s, 'reconciled by the next agentbox command').catch(() => s)) ?? s);
    else out.push(s);
  }
  return out;
}

/** `agentbox kill` of an orphaned session: its kept layers reverted or committed, the record closed. */
export async function finishOrphan(state: string, s: Session, by: string): Promise<Session | undefined> {
  return withLock(state, s.id, async () => {
    const now = readSession(state, s.id) ?? s;
    if (now.endedAt === null) await endBox(now);
    const audit = new AuditSink(state);
    const event = (action: string, decision: 'allow' | 'deny' | 'info', reason: string, details?: Record<string, unknown>) => audit.append({ session: now.id, agent: now.agent, action, resource: now.id, decision, reason, ...(details ? { details } : {}) });
    const layers = layersOf(now);
    if (layers) {
      try {
        remountLayers(layers);
        const changes = layerChanges(layers.layers).map((c) => `${c.kind} ${c.path}`);
        if (now.snapshot === 'persist') {
          const r = commitLayers(layers.layers, now.uid, now.gid);
          if (r.ok) event('persist', 'info', `${changes.length - r.skipped.length} changes committed after the launcher died`, { changes: listSummary(changes), by });
          else event('persist.failed', 'deny', 'the commit failed', { failures: listSummary(r.failures), by });
          if (!r.ok) return now;
        } else event('revert', 'info', `${changes.length} changes discarded`, { changes: listSummary(changes), by });
        dropLayers(layers);
      } catch (e) {
        event('session.cleanup-error', 'info', (e as Error).message.split('\n')[0] ?? 'failed');
      }
    }
    if (now.run) removeSessionDir(now.run);
    removeSessionDir(now.dir);
    const rec: Session = { ...now, state: 'exited', endedAt: now.endedAt ?? new Date().toISOString(), endReason: `${now.endReason ?? 'the launcher is gone'}; ended by agentbox kill`, layers: null };
    writeSession(state, rec);
    event('exit', 'info', 'orphaned session ended', { by });
    return rec;
  });
}
