/**
 * Session records under STATE/sessions/ID.json: what `agentbox ps` lists and `kill`,
 * `quarantine` and `release` act on. Processes are recorded with their start time, so a
 * pid the kernel has since given to another process is never taken for the session: a
 * record whose launcher is gone reads `orphaned` (its box is ended and its layers kept
 * by the next command that reconciles it), never `running`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeKind } from '../model/types.js';
import { isRunning, type ProcessIdentity } from '../host/proc.js';
import type { SessionLayers } from './layers.js';

export type SessionState = 'running' | 'quarantined' | 'orphaned' | 'exited';

export interface Session {
  id: string;
  agent: string;
  runtime: RuntimeKind;
  isolation: 'runc' | 'gvisor' | null;
  state: SessionState;
  /** The box's leading process on the host (SPEC §7's `pid`). */
  pid: number;
  /** The box's leading process with its start time. */
  box: ProcessIdentity | null;
  /** The agentbox process that launched it. */
  launcherPid: number;
  launcher: ProcessIdentity;
  /** The process that finishes the session if the launcher dies (container runtime). */
  reaper: ProcessIdentity | null;
  /** The Engine container (container runtime). */
  container: string | null;
  startedAt: string;
  expiresAt: string | null;
  exitCode: number | null;
  endedAt: string | null;
  endReason: string | null;
  /** STATE/sessions/ID: the layers image and the record's files. */
  dir: string;
  /** /run/agentbox/ID: mount points and sources the box sees. */
  run: string;
  /** The session's capability token id. */
  jti: string | null;
  /** cgroup directories of the session (member pids, freezer). */
  cgroups: string[];
  /** The writable layers: where the agent's writes are until the session ends. */
  layers: SessionLayers | null;
  snapshot: 'revert' | 'persist';
  uid: number;
  gid: number;
  egressCut: boolean;
  quarantinedAt: string | null;
  /** A system-service agent's unit, governed by agentboxd (the launcher is the daemon). */
  unit?: string | null;
}

export const SESSION_ID = /^[a-z][a-z0-9-]{0,80}$/;

export function newSessionId(agent: string): string {
  return `${agent}-${randomBytes(4).toString('hex')}`;
}

export function sessionsDir(state: string): string {
  const d = join(state, 'sessions');
  mkdirSync(d, { recursive: true, mode: 0o700 });
  return d;
}

export function writeSession(state: string, s: Session): void {
  const file = join(sessionsDir(state), `${s.id}.json`);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

function parse(text: string): Session | undefined {
  try {
    const s = JSON.parse(text) as Session;
    return typeof s.id === 'string' && SESSION_ID.test(s.id) ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The record as it stands now: a live-looking record whose launcher is gone reads orphaned. */
export function refresh(s: Session): Session {
  if ((s.state === 'running' || s.state === 'quarantined') && !isRunning(s.launcher ?? { pid: s.launcherPid, start: '' })) {
    return { ...s, state: 'orphaned', endReason: s.endReason ?? 'the launcher is gone' };
  }
  return s;
}

export function readSession(state: string, id: string): Session | undefined {
  if (!SESSION_ID.test(id)) return undefined;
  const file = join(sessionsDir(state), `${id}.json`);
  if (!existsSync(file)) return undefined;
  const s = parse(readFileSync(file, 'utf8'));
  return s && refresh(s);
}

export function listSessions(state: string): Session[] {
  const out: Session[] = [];
  for (const f of readdirSync(sessionsDir(state))) {
    if (!f.endsWith('.json')) continue;
    try {
      const s = parse(readFileSync(join(sessionsDir(state), f), 'utf8'));
      if (s) out.push(refresh(s));
    } catch {
      // removed meanwhile
    }
  }
  return out.sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
}

/** True while the session's launcher is the process recorded (not a reused pid). */
export function launcherAlive(s: Session): boolean {
  return isRunning(s.launcher);
}

/**
 * The egress cut marker: `agentbox quarantine` creates it before anything else, and the
 * session's proxy refuses every new connection and request while it exists, whatever
 * state the launcher was in when the cut was made.
 */
export function cutMarker(state: string, id: string): string {
  return join(state, 'sessions', `${id}.cut`);
}
