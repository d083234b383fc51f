/**
 * Incident response on running sessions: quarantine (any number at once) and release.
 *
 * Quarantine keeps the kill switch first: every target's launcher is asked to cut
 * egress and freeze at once, then each confirmation awaited, then every token revoked,
 * and only then is evidence taken (streamed to files), one session at a time, with
 * the same steps a violation uses (session/quarantine.ts). One failure never stops the
 * others.
 */
import { AgentboxError } from '../errors.js';
import { AuditSink } from '../audit/sink.js';
import type { Evidence, EvidenceInput } from '../session/evidence.js';
import { revokeToken, takeEvidence } from '../session/quarantine.js';
import { readSession, signalSession, type Session } from '../session/records.js';
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

/** Polls the session record until `pred` holds, at most `ms`. */
async function waitFor(state: string, id: string, pred: (s: Session) => boolean, ms: number): Promise<Session | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const s = readSession(state, id);
    if (s && pred(s)) return s;
    if (Date.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, 2));
  }
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

export async function quarantine(target: QuarantineTarget, reason: string, notify: Notify): Promise<QuarantineReport[]> {
  const state = stateDir();
  const list = targets(state, await reconcile(state), target);
  if (list.length === 0) throw new AgentboxError('USAGE', 'no running session matches', { details: ['agentbox ps lists sessions'] });
  const audit = new AuditSink(state);
  const results: QuarantineReport[] = [];
  const asked: { s: Session; t0: number }[] = [];
  for (const s of list) {
    if (s.state === 'quarantined') {
      notify.info(`${s.id} is already quarantined`);
      continue;
    }
    if (s.state !== 'running') {
      results.push({ session: s.id, agent: s.agent, quarantined: false, problem: `it is ${s.state}` });
      continue;
    }
    audit.append({ session: s.id, agent: s.agent, action: 'quarantine.requested', resource: s.id, decision: 'deny', reason });
    const t0 = performance.now();
    if (signalSession(s, 'quarantine')) asked.push({ s, t0 });
    else results.push({ session: s.id, agent: s.agent, quarantined: false, problem: `its launcher (pid ${s.launcherPid}) is gone; agentbox kill ${s.id} ends it` });
  }
  const confirmed: { q: Session; ms: number }[] = [];
  for (const { s, t0 } of asked) {
    const q = await waitFor(state, s.id, (x) => x.state === 'quarantined', 2000);
    if (q) confirmed.push({ q, ms: performance.now() - t0 });
    else results.push({ session: s.id, agent: s.agent, quarantined: false, problem: 'the launcher did not confirm the quarantine within 2 s' });
  }
  for (const { q } of confirmed) revokeToken(state, q, reason, eventsFor(audit, q));
  for (const { q, ms } of confirmed) {
    const r: QuarantineReport = { session: q.id, agent: q.agent, quarantined: true, isolatedMs: Number(ms.toFixed(1)), tokenRevoked: q.jti };
    const ev = await takeEvidence(state, q, reason, eventsFor(audit, q), await evidenceInput(q));
    if ('failed' in ev) r.problem = `evidence could not be taken: ${ev.failed}`;
    else Object.assign(r, { evidence: ev.dir, files: ev.files, notTaken: ev.notTaken });
    results.push(r);
  }
  return results;
}

/** Thaws a quarantined session; its egress stays cut. */
export async function release(id: string): Promise<void> {
  const state = stateDir();
  const s = readSession(state, id);
  if (!s) throw new AgentboxError('USAGE', `no session ${id}`);
  if (s.state !== 'quarantined') throw new AgentboxError('USAGE', `${id} is ${s.state}, not quarantined`);
  new AuditSink(state).append({ session: s.id, agent: s.agent, action: 'quarantine.release-requested', resource: s.id, decision: 'info', reason: 'release asked by an incident responder' });
  if (!signalSession(s, 'release')) throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: its launcher (pid ${s.launcherPid}) is gone; use agentbox kill`);
  const r = await waitFor(state, id, (x) => x.state === 'running', 2000);
  if (!r) throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: the launcher did not confirm the release`);
}
