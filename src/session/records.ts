/**
 * Session records under STATE/sessions/ID.json: what `agentbox ps` lists and
 * `agentbox kill` ends. A record says `running` until the launcher records the exit;
 * a record whose process is gone is reported `exited`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeKind } from '../model/types.js';

export type SessionState = 'running' | 'quarantined' | 'exited';

export interface Session {
  id: string;
  agent: string;
  runtime: RuntimeKind;
  state: SessionState;
  /** The launcher-side process that leads the session's process group. */
  pid: number;
  /** The agentbox process that launched it. */
  launcherPid: number;
  startedAt: string;
  expiresAt: string | null;
  exitCode: number | null;
  endedAt: string | null;
  endReason: string | null;
  dir: string;
  /** The session's capability token id. */
  jti: string | null;
  /** cgroup directories of the session (member pids, freezer). */
  cgroups: string[];
  /** Writable layers (overlay upper directories) and the paths they cover. */
  layers: { path: string; upper: string }[];
  egressCut: boolean;
  quarantinedAt: string | null;
}

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
  writeFileSync(`${file}.tmp`, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function readSession(state: string, id: string): Session | undefined {
  const file = join(sessionsDir(state), `${id}.json`);
  if (!/^[a-z][a-z0-9-]*$/.test(id) || !existsSync(file)) return undefined;
  return refresh(JSON.parse(readFileSync(file, 'utf8')) as Session);
}

export function listSessions(state: string): Session[] {
  return readdirSync(sessionsDir(state))
    .filter((f) => f.endsWith('.json'))
    .map((f) => refresh(JSON.parse(readFileSync(join(sessionsDir(state), f), 'utf8')) as Session))
    .sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function refresh(s: Session): Session {
  if (s.state !== 'exited' && !alive(s.pid) && !alive(s.launcherPid)) return { ...s, state: 'exited', endReason: s.endReason ?? 'launcher gone' };
  return s;
}

/** What an incident responder asks of a session's launcher. */
export type SessionRequest = 'quarantine' | 'release' | 'end';
const SIGNAL: Record<SessionRequest, NodeJS.Signals> = { quarantine: 'SIGUSR1', release: 'SIGUSR2', end: 'SIGTERM' };

/**
 * Asks the session's launcher to quarantine, release or end it (the launcher cuts
 * egress, freezes, thaws, reverts and audits). When the launcher is gone, `end`
 * kills the box's process group directly; other requests return false.
 */
export function signalSession(s: Session, request: SessionRequest): boolean {
  if (alive(s.launcherPid)) {
    process.kill(s.launcherPid, SIGNAL[request]);
    return true;
  }
  if (request === 'end' && alive(s.pid)) {
    process.kill(-s.pid, 'SIGKILL');
    return true;
  }
  return false;
}
