/**
 * Incident response on running sessions: quarantine (any number at once) and release.
 *
 * Quarantine acts by itself, through the kernel, and never waits on the launcher first
 * (a launcher that is stopped, starved by a fork bomb or flooded with connections is
 * exactly when the kill switch has to work). For every target at once:
 * 1. the egress cut marker is written (the session's proxy refuses everything new while
 *    it exists) and the launcher's egress connections are shut down from outside
 *    (pidfd_getfd + shutdown: the box's accepted proxy connections and every upstream
 *    TCP connection), whether the launcher runs or not;
 * 2. the box is frozen through its kernel or engine object (runtimes/freeze.ts), and the
 *    connections cut again (any accepted meanwhile);
 * 3. only then is the launcher asked, on its control socket, to close its proxy, revoke
 *    the token and hand over what only it knows (the tunnels open at the cut). If it does
 *    not answer within a second, the token is revoked here;
 * 4. the evidence is taken here, from the session dir and the frozen cgroup.
 * One failure never stops the others; each step says what it did.
 */
import { AgentboxError } from '../errors.js';
import { AuditSink } from '../audit/sink.js';
import { sessionPids, type Evidence, type EvidenceInput } from '../session/evidence.js';
import { revokeToken, takeEvidence } from '../session/quarantine.js';
import { cutMarker, readSession, writeSession, type Session } from '../session/records.js';
import { ask, controlSocket, type ControlAnswer } from '../session/control.js';
import { isRunning } from '../host/proc.js';
import { severEgress, type Severed } from '../host/sockets.js';
import { proxyDir } from '../box/common.js';
import { freezeRecorded } from '../runtimes/freeze.js';
import { writeFileNoFollow } from '../host/open-exact.js';
import type { EventFn } from '../session/events.js';
import { stateDir } from '../session/state.js';
import { reconcile } from './orphans.js';
import type { Notify } from './notify.js';

export interface QuarantineTarget {
  id?: string;
  agent?: string;
  all?: boolean;
}

export interface QuarantineReport {
  session: string;
  agent: string;
  quarantined: boolean;
  isolatedMs?: number;
  evidence?: string;
  files?: Evidence['files'];
  notTaken?: Evidence['notTaken'];
  tokenRevoked?: string | null;
  /** How the box was frozen, and the connections cut from outside. */
  frozenBy?: string;
  severed?: Severed[];
  /** Whether the launcher answered on its control socket (false: stopped, starved or gone). */
  launcherAnswered?: boolean;
  problem?: string;
}

function targets(state: string, sessions: Session[], t: QuarantineTarget): Session[] {
  const live = sessions.filter((s) => s.state === 'running' || s.state === 'quarantined');
  if (t.all) return live;
  if (t.agent) return live.filter((s) => s.agent === t.agent);
  if (!t.id) throw new AgentboxError('USAGE', 'name a session, --agent NAME or --all');
  const s = readSession(state, t.id);
  if (!s) throw new AgentboxError('USAGE', `no session ${t.id}`, { details: ['agentbox ps lists sessions'] });
  return [s];
}

/**
 * What the responder's side can take beyond /proc: the Engine's process list for a
 * container (under gVisor, runsc's own); the Engine not answering is named, not fatal.
 */
async function evidenceInput(s: Session): Promise<EvidenceInput> {
  if (s.runtime === 'microvm') return { connectionsUnavailable: "the micro-VM's sockets live in its own kernel; egress.json is taken only by its launcher" };
  if (s.runtime !== 'container' || !s.container) return {};
  const gvisor = s.isolation === 'gvisor';
  const base: EvidenceInput = gvisor ? { connectionsUnavailable: "under gVisor the sandbox's sockets live in its own network stack (the Sentry), not in any host table" } : {};
  try {
    const { dockerClient, engineProcesses } = await import('../runtimes/container/engine.js');
    const docker = await dockerClient();
    return { ...base, processes: () => engineProcesses(docker, s.container!, gvisor ? 'gvisor' : 'runc') };
  } catch (e) {
    const why = `the Engine could not be reached: ${(e as Error).message.split('\n')[0]}`;
    return { ...base, processes: async () => ({ unavailable: why }) };
  }
}

function eventsFor(audit: AuditSink, s: Session): EventFn {
  return (action, resource, decision, reason, details) => audit.append({ session: s.id, agent: s.agent, action, resource, decision, reason, ...(details ? { details } : {}) });
}

/** How long the launcher has to answer on its control socket before the caller acts alone. */
const LAUNCHER_ANSWER_MS = 1000;

/** Who runs this command, for the audit: the kernel's uid, and the login name where known. */
function operator(): { uid: number; name: string } {
  const uid = process.getuid?.() ?? -1;
  return { uid, name: process.env.SUDO_USER ?? process.env.USER ?? `uid ${uid}` };
}

/** The launcher's egress connections, cut from outside (only while the recorded launcher is that process). */
function sever(s: Session): Severed[] {
  // A system-service agent: its own TCP connections (to agentboxd's proxy and any direct
  // grant); the daemon's sockets serve other agents too and are not touched.
  if (s.unit) {
    const pids = sessionPids(s);
    if (pids.length === 0 && s.box && isRunning(s.box)) pids.push(s.box.pid);
    // A pid that exits meanwhile (the agent forking short-lived children) is skipped, never fatal.
    return pids.flatMap((pid) => {
      try {
        return severEgress(pid, '');
      } catch {
        return [];
      }
    });
  }
  if (!isRunning(s.launcher)) return [];
  return severEgress(s.launcher.pid, `${proxyDir({ dir: s.dir, run: s.run })}/proxy.sock`);
}

/** Sever that never stops the kill switch: the freeze comes whatever it throws. */
function trySever(s: Session, problems: string[]): Severed[] {
  try {
    return sever(s);
  } catch (e) {
    problems.push(`connections not shut down from outside: ${(e as Error).message.split('\n')[0]}`);
    return [];
  }
}

interface Isolated {
  s: Session;
  frozenBy: string;
  severed: Severed[];
  ms: number;
}

/** Steps 1 and 2 for one session: cut and freeze, by this process alone. */
async function cutAndFreeze(state: string, s: Session, reason: string, by: { uid: number; name: string }): Promise<Isolated> {
  const t0 = performance.now();
  // Root writes into the sessions folder: by fd, never through a symlink at the name or above it.
  writeFileNoFollow(cutMarker(state, s.id), JSON.stringify({ at: new Date().toISOString(), by, reason }) + '\n', 0o600, true);
  const problems: string[] = [];
  const severed = trySever(s, problems);
  const frozenBy = await freezeRecorded(s);
  severed.push(...trySever(s, problems));
  return { s, frozenBy, severed, ms: performance.now() - t0 };
}

export async function quarantine(target: QuarantineTarget, reason: string, notify: Notify): Promise<QuarantineReport[]> {
  const state = stateDir();
  const list = targets(state, await reconcile(state), target);
  if (list.length === 0) throw new AgentboxError('USAGE', 'no running session matches', { details: ['agentbox ps lists sessions'] });
  const by = operator();
  const results: QuarantineReport[] = [];
  const live: Session[] = [];
  const orphans: Session[] = [];
  for (const s of list) {
    if (s.state === 'quarantined') notify.info(`${s.id} is already quarantined`);
    else if (s.state === 'orphaned') orphans.push(s);
    else if (s.state !== 'running') results.push({ session: s.id, agent: s.agent, quarantined: false, problem: `it is ${s.state}` });
    else live.push(s);
  }
  // The kill switch first, for every target at once; the audit and the rest come after.
  const requestedAt = new Date().toISOString();
  const isolated: Isolated[] = [];
  await Promise.all(
    live.map(async (s) => {
      try {
        isolated.push(await cutAndFreeze(state, s, reason, by));
      } catch (e) {
        // The launcher (or agentboxd) still isolates it its own way: proxy closed, and it freezes what it can.
        const asked = await ask(controlSocket(state, s.id), { kind: 'quarantine', why: reason }, LAUNCHER_ANSWER_MS).catch((x: Error) => ({ ok: false, error: x.message }) as ControlAnswer);
        results.push({ session: s.id, agent: s.agent, quarantined: false, problem: `${(e as Error).message.split('\n')[0]}; egress is cut (marker and connections), the box could not be frozen by this command${asked.ok ? ' (its launcher isolated it on request)' : ''}: agentbox kill ${s.id} ends it` });
      }
    }),
  );
  const audit = new AuditSink(state);
  for (const s of live) audit.append({ session: s.id, agent: s.agent, action: 'quarantine.requested', resource: s.id, decision: 'deny', reason, details: { by, at: requestedAt } });
  for (const { s, frozenBy, severed, ms } of isolated) {
    const event = eventsFor(audit, s);
    event('quarantine.egress-cut', s.id, 'deny', `egress cut by ${by.name}: the proxy refuses everything new, and ${severed.length} open connection(s) ${s.unit ? 'of the agent' : 'of the launcher'} were shut down from outside`, { severed, by });
    event('quarantine.frozen', s.id, 'deny', frozenBy, { ms: Number(ms.toFixed(2)), trigger: reason, by });
  }
  // Step 3: the launcher's part, each asked at once; one that does not answer is done here.
  const answers = await Promise.all(isolated.map(({ s, frozenBy }) => ask(controlSocket(state, s.id), { kind: 'quarantine', why: reason, frozenBy }, LAUNCHER_ANSWER_MS).catch((e: Error) => ({ ok: false, error: e.message }) as ControlAnswer)));
  for (const [i, { s, frozenBy, severed, ms }] of isolated.entries()) {
    const answer = answers[i]!;
    const event = eventsFor(audit, s);
    const q: Session = { ...s, state: 'quarantined', egressCut: true, quarantinedAt: s.quarantinedAt ?? requestedAt };
    if (!answer.ok) {
      // The launcher is stopped, starved or gone: the record and the token are done here.
      const now = readSession(state, s.id);
      if (now && now.state === 'running') writeSession(state, { ...now, state: 'quarantined', egressCut: true, quarantinedAt: requestedAt });
      event('quarantine.launcher-silent', s.id, 'info', `the launcher did not answer on its control socket (${answer.error}); the token is revoked and the evidence taken by ${by.name}`);
      revokeToken(state, q, reason, event);
    }
    const r: QuarantineReport = { session: s.id, agent: s.agent, quarantined: true, isolatedMs: Number(ms.toFixed(1)), frozenBy, severed, launcherAnswered: answer.ok, tokenRevoked: s.jti };
    const input = await evidenceInput(s);
    if (answer.ok && answer.egress !== undefined) input.egress = answer.egress;
    const ev = await takeEvidence(state, q, reason, event, { ...input, operator: by, severed });
    if ('failed' in ev) r.problem = `evidence could not be taken: ${ev.failed}`;
    else Object.assign(r, { evidence: ev.dir, files: ev.files, notTaken: ev.notTaken });
    results.push(r);
  }
  // A session whose launcher died: its box went with it (reconcile ended what was left);
  // the token is revoked and the kept layers taken as evidence.
  for (const s of orphans) {
    const event = eventsFor(audit, s);
    event('quarantine.requested', s.id, 'deny', reason, { by, at: requestedAt });
    revokeToken(state, s, reason, event);
    const frozenBy = `nothing left to freeze: the box ended with its launcher (pid ${s.launcher.pid}); its writable layers are kept until agentbox kill`;
    const r: QuarantineReport = { session: s.id, agent: s.agent, quarantined: true, frozenBy, severed: [], launcherAnswered: false, tokenRevoked: s.jti };
    const ev = await takeEvidence(state, s, reason, event, { operator: by, connectionsUnavailable: 'the box had ended: there were no sockets left to read' });
    if ('failed' in ev) r.problem = `evidence could not be taken: ${ev.failed}`;
    else Object.assign(r, { evidence: ev.dir, files: ev.files, notTaken: ev.notTaken });
    results.push(r);
  }
  return results;
}

/** Thaws a quarantined session; its egress stays cut. */
export async function release(id: string): Promise<Session> {
  const state = stateDir();
  const s = readSession(state, id);
  if (!s) throw new AgentboxError('USAGE', `no session ${id}`);
  if (s.state !== 'quarantined') throw new AgentboxError('USAGE', `${id} is ${s.state}, not quarantined`);
  new AuditSink(state).append({ session: s.id, agent: s.agent, action: 'quarantine.release-requested', resource: s.id, decision: 'info', reason: 'release asked by an incident responder', details: { by: operator() } });
  const answer = await ask(controlSocket(state, id), { kind: 'release' }, 5000).catch((e: Error) => ({ ok: false, error: e.message }) as ControlAnswer);
  if (answer.ok) return s;
  if (!isRunning(s.launcher)) throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: its launcher (pid ${s.launcher.pid}) is gone; agentbox kill ${id} ends it (its layers are kept until then)`);
  throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: the launcher did not release it (${answer.error}); the box stays frozen`);
}
