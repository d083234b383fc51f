/**
 * Just-in-time consent answered from another terminal: the requests agents are held
 * on, and an answer (once, for the session, or deny) that the waiting session audits
 * with who gave it.
 */
import { AgentboxError } from '../errors.js';
import { answerApproval, answererIdentity, APPROVAL_ID, pendingApprovals, type ConsentDecision, type ConsentRequest } from '../egress/consent.js';
import { stateDir } from '../session/state.js';

export type { ConsentDecision } from '../egress/consent.js';

export function pending(): { state: string; requests: (ConsentRequest & { secondsLeft: number })[] } {
  const state = stateDir();
  return { state, requests: pendingApprovals(state).map((r) => ({ ...r, secondsLeft: Math.max(0, Math.round((Date.parse(r.expiresAt) - Date.now()) / 1000)) })) };
}

export function answer(id: string, decision: ConsentDecision): ConsentRequest {
  const state = stateDir();
  if (!APPROVAL_ID.test(id)) throw new AgentboxError('USAGE', `"${id}" is not a request id; ids are 8 hex digits as agentbox approvals lists them`);
  try {
    return answerApproval(state, id, decision, answererIdentity());
  } catch (e) {
    const waiting = pendingApprovals(state).map((r) => `${r.id}  ${r.agent} → ${r.host}:${r.port}`);
    throw new AgentboxError('USAGE', (e as Error).message, { details: waiting.length ? ['waiting now:', ...waiting] : [`no agent is waiting for an answer in ${state} (answer as the account that launched the session)`] });
  }
}
