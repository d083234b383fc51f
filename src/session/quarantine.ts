/**
 * Quarantine, in one place for `agentbox quarantine` and for a violation under
 * `onViolation: quarantine`, in the order that keeps the kill switch working whatever
 * else fails:
 * 1. isolate: egress cut (the proxy stops forwarding and closes every tunnel), then
 *    every process frozen (cgroup freezer, docker pause, QMP stop), and the record says so;
 * 2. the session's token revoked;
 * 3. evidence streamed to files; a part that cannot be taken is named in its manifest,
 *    and a failure here is audited, never fatal.
 */
import { revoke } from '../tokens/token.js';
import type { SessionProxy } from '../egress/session-proxy.js';
import { collectEvidence, type Evidence, type EvidenceInput } from './evidence.js';
import { writeSession, type Session } from './records.js';
import type { EventFn } from './events.js';


interface Freezable {
  freeze(): string | Promise<string>;
}

/** Cuts egress and freezes the box (the launcher's half of a quarantine). */
export async function isolate(session: Session, box: Freezable, sp: SessionProxy | undefined, why: string, event: EventFn, state: string, by?: { frozenBy: string; by: string }): Promise<void> {
  const t0 = performance.now();
  session.egressCut = true;
  const closing = sp?.close();
  const cutMs = performance.now() - t0;
  let frozenBy: string;
  try {
    // Already frozen through the kernel by `agentbox quarantine`: recorded, not redone.
    frozenBy = by?.frozenBy ?? (await box.freeze());
  } finally {
    void closing?.catch(() => undefined);
  }
  session.state = 'quarantined';
  session.quarantinedAt = new Date().toISOString();
  writeSession(state, session);
  if (by) {
    event('quarantine.proxy-closed', session.id, 'deny', `the launcher closed its proxy after ${by.by} froze and cut the box`, { ms: Number(cutMs.toFixed(2)) });
    return;
  }
  event('quarantine.egress-cut', session.id, 'deny', 'the proxy stopped forwarding and closed every tunnel', { ms: Number(cutMs.toFixed(2)) });
  event('quarantine.frozen', session.id, 'deny', frozenBy, { ms: Number((performance.now() - t0).toFixed(2)), trigger: why });
}

/** Revokes the session's token (step 2); a failure is audited, never thrown. */
export function revokeToken(state: string, session: Pick<Session, 'id' | 'jti'>, why: string, event: EventFn): void {
  try {
    if (session.jti && revoke(state, session.jti, why)) event('token.revoked', session.jti, 'deny', why);
  } catch (e) {
    event('token.revoke-failed', session.jti ?? '-', 'info', (e as Error).message);
  }
}

/** Takes the evidence of a frozen session (step 3): what was taken, or why nothing was (audited, never thrown). */
export async function takeEvidence(state: string, session: Session, why: string, event: EventFn, input: EvidenceInput = {}): Promise<Evidence | { failed: string }> {
  try {
    const ev = await collectEvidence(state, session, why, input);
    event('quarantine.evidence', ev.dir, 'info', ev.notTaken.length ? `forensic snapshot taken while frozen; ${ev.notTaken.length} part(s) could not be taken` : 'forensic snapshot taken while frozen', { files: ev.files, notTaken: ev.notTaken });
    return ev;
  } catch (e) {
    const failed = (e as Error).message.split('\n')[0] ?? 'failed';
    event('quarantine.evidence-failed', session.id, 'info', failed);
    return { failed };
  }
}
