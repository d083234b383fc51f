/**
 * The audit trail as people read it (pure): each session's timeline, and the KPIs over a
 * period, from verified-or-not records. `agentbox audit show` prints the timeline;
 * `agentbox report` draws both.
 *
 * KPI definitions (docs/visibility.md):
 * - allowed / denied: egress decisions (egress.connect, egress.http, egress.https with a
 *   decision of allow or deny; a `closed` entry is not a decision);
 * - escalations: consent requests; time to approve: from a request to its answer, for
 *   answers that allowed (median and the longest);
 * - blocked uploads: DLP and upload-limit refusals (violation.dlp, violation.upload-limit:
 *   the proxy records each refusal once as a violation);
 * - rollback rate: sessions whose changes were reverted / sessions that ended;
 * - MTTD: from a session's first violation or tripped behaviour rule to its quarantine
 *   (mean); MTTR: from a quarantine to its release or the session's end (mean);
 * - kernel denials: what Landlock, seccomp and the file calls refused (each session's
 *   denials.summary total); threshold hits: behaviour rules that tripped.
 */
import type { AuditRecord } from './record.js';

export type EventKind = 'launch' | 'file-activity' | 'fs-deny' | 'threshold' | 'egress-allow' | 'egress-deny' | 'consent-ask' | 'consent-answer' | 'violation' | 'quarantine' | 'release' | 'token' | 'control' | 'exit' | 'revert' | 'persist' | 'other';

export interface TimelineEvent {
  seq: number;
  time: string;
  kind: EventKind;
  action: string;
  resource: string;
  decision: AuditRecord['decision'];
  text: string;
}

export interface SessionTimeline {
  session: string;
  agent: string;
  start: string;
  end: string | null;
  exitCode: number | null;
  quarantined: boolean;
  events: TimelineEvent[];
}

const DECISION_ACTIONS = new Set(['egress.connect', 'egress.http', 'egress.https']);

export function kindOf(r: Pick<AuditRecord, 'action' | 'decision' | 'reason'>): EventKind {
  const a = r.action;
  if (a === 'launch') return 'launch';
  if (DECISION_ACTIONS.has(a)) return r.reason === 'closed' ? 'other' : r.decision === 'deny' ? 'egress-deny' : 'egress-allow';
  if (a === 'consent.request') return 'consent-ask';
  if (a === 'consent.answer') return 'consent-answer';
  if (a.startsWith('violation.')) return 'violation';
  if (a === 'fs.activity') return 'file-activity';
  if (a === 'fs.denied' || a === 'syscall.denied' || a === 'denials.summary') return 'fs-deny';
  if (a === 'monitor.tripped') return 'threshold';
  if (a === 'quarantine.requested' || a === 'quarantine.frozen') return 'quarantine';
  if (a === 'quarantine.released') return 'release';
  if (a.startsWith('token.')) return 'token';
  if (a.startsWith('control.')) return 'control';
  if (a === 'exit' || a === 'session.orphaned') return 'exit';
  if (a === 'revert') return 'revert';
  if (a === 'persist') return 'persist';
  return 'other';
}

/** One line of text for an entry: what happened, to what, why; the caller escapes it for its output. */
export function describe(r: AuditRecord): string {
  const by = typeof r.details?.by === 'string' ? ` by ${r.details.by}` : r.details?.by && typeof r.details.by === 'object' && 'name' in (r.details.by as object) ? ` by ${String((r.details.by as { name: unknown }).name)}` : '';
  switch (kindOf(r)) {
    case 'launch': {
      const grants = Array.isArray(r.details?.grants) ? (r.details.grants as unknown[]).map(String) : [];
      return `launched: ${r.resource}${grants.length ? ` (grants: ${grants.slice(0, 6).join(', ')}${grants.length > 6 ? ` and ${grants.length - 6} more` : ''})` : ''}`;
    }
    case 'file-activity':
      return `files under ${r.resource}: ${r.reason}`;
    case 'fs-deny':
      return r.action === 'denials.summary' ? `denials: ${r.reason}` : `denied: ${r.reason}`;
    case 'threshold':
      return `monitor rule ${r.resource} tripped: ${r.reason}`;
    case 'egress-allow':
      return `${r.action.slice('egress.'.length)} ${r.resource} allowed (${typeof r.details?.rule === 'string' ? r.details.rule : r.reason})`;
    case 'egress-deny':
      return `${r.action.slice('egress.'.length)} ${r.resource} denied: ${r.reason}`;
    case 'consent-ask':
      return `asked: ${r.reason}`;
    case 'consent-answer':
      return `consent for ${r.resource}: ${r.reason}`;
    case 'violation':
      return `${r.action.slice('violation.'.length)} violation towards ${r.resource}: ${r.reason}`;
    case 'quarantine':
      return r.action === 'quarantine.requested' ? `quarantine requested${by}: ${r.reason}` : `frozen: ${r.reason}`;
    case 'release':
      return `released: ${r.reason}`;
    case 'exit':
      return r.action === 'exit' ? `exited (${r.reason}${typeof r.details?.exitCode === 'number' ? `, exit code ${r.details.exitCode}` : ''})` : `orphaned: ${r.reason}`;
    case 'revert':
      return `reverted: ${r.reason}`;
    case 'persist':
      return `persisted: ${r.reason}`;
    default:
      return `${r.action} ${r.resource}: ${r.reason}`;
  }
}

/** Each session's events in log order, sessions ordered by their first entry. */
export function timelines(records: readonly AuditRecord[]): SessionTimeline[] {
  const by = new Map<string, SessionTimeline>();
  for (const r of records) {
    if (r.session === '-') continue;
    let t = by.get(r.session);
    if (!t) {
      t = { session: r.session, agent: r.agent, start: r.time, end: null, exitCode: null, quarantined: false, events: [] };
      by.set(r.session, t);
    }
    const kind = kindOf(r);
    if (kind === 'other' && DECISION_ACTIONS.has(r.action)) continue; // `closed` bookkeeping
    t.events.push({ seq: r.seq, time: r.time, kind, action: r.action, resource: r.resource, decision: r.decision, text: describe(r) });
    if (kind === 'exit') {
      t.end = r.time;
      if (typeof r.details?.exitCode === 'number') t.exitCode = r.details.exitCode;
    }
    if (kind === 'quarantine') t.quarantined = true;
  }
  return [...by.values()];
}

export interface Kpis {
  sessions: number;
  ended: number;
  allowed: number;
  denied: number;
  escalations: number;
  approved: number;
  timeToApproveMs: { median: number | null; max: number | null };
  blockedUploads: number;
  reverted: number;
  rollbackRate: number | null;
  quarantines: number;
  mttdMs: number | null;
  mttrMs: number | null;
  /** Denials by reason code or detector, most first. */
  deniedBy: { reason: string; count: number }[];
  /** What the kernel refused the boxes (Landlock, seccomp, file calls): every repeat counted. */
  kernelDenials: number;
  /** Behaviour rules that tripped (monitor.tripped). */
  thresholdHits: number;
}

const ms = (a: string, b: string) => Date.parse(b) - Date.parse(a);
const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);
function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function kpis(records: readonly AuditRecord[]): Kpis {
  let allowed = 0;
  let denied = 0;
  let escalations = 0;
  let blocked = 0;
  const asked = new Map<string, string>();
  const waits: number[] = [];
  const deniedBy = new Map<string, number>();
  const firstViolation = new Map<string, string>();
  const quarantinedAt = new Map<string, string>();
  const detect: number[] = [];
  const resolve: number[] = [];
  const sessions = new Set<string>();
  const ended = new Set<string>();
  const resolved = new Set<string>();
  const reverted = new Set<string>();
  let kernelDenials = 0;
  let thresholdHits = 0;
  const summarised = new Set<string>();
  const firstDenials = new Map<string, number>();
  for (const r of records) {
    if (r.session !== '-') sessions.add(r.session);
    const kind = kindOf(r);
    const code = typeof r.details?.code === 'string' ? r.details.code : undefined;
    if (kind === 'egress-allow') allowed++;
    if (kind === 'egress-deny') {
      denied++;
      const why = /detector ([a-z0-9-]+)/.exec(r.reason)?.[1] ?? code ?? r.reason.split(/[:;(]/)[0]!.trim().slice(0, 60);
      deniedBy.set(why, (deniedBy.get(why) ?? 0) + 1);
    }
    if (r.action === 'violation.dlp' || r.action === 'violation.upload-limit') blocked++;
    if ((kind === 'violation' || kind === 'threshold') && !firstViolation.has(r.session)) firstViolation.set(r.session, r.time);
    if (kind === 'threshold') thresholdHits++;
    // A session's denials.summary counts every repeat; without one (a session cut short), its entries do.
    if (r.action === 'denials.summary' && typeof r.details?.total === 'number') {
      kernelDenials += r.details.total;
      summarised.add(r.session);
    } else if (r.action === 'fs.denied' || r.action === 'syscall.denied') firstDenials.set(r.session, (firstDenials.get(r.session) ?? 0) + 1);
    if (kind === 'consent-ask') {
      escalations++;
      if (typeof r.details?.id === 'string') asked.set(r.details.id, r.time);
    }
    if (kind === 'consent-answer' && r.decision === 'allow' && typeof r.details?.id === 'string' && asked.has(r.details.id)) waits.push(ms(asked.get(r.details.id)!, r.time));
    // Asked for (agentbox quarantine), or done by the launcher itself (a violation or rule under quarantine).
    if ((r.action === 'quarantine.requested' || r.action === 'quarantine.frozen') && !quarantinedAt.has(r.session)) {
      quarantinedAt.set(r.session, r.time);
      const v = firstViolation.get(r.session);
      if (v) detect.push(ms(v, r.time));
    }
    if ((kind === 'release' || kind === 'exit') && quarantinedAt.has(r.session) && !resolved.has(r.session)) {
      resolve.push(ms(quarantinedAt.get(r.session)!, r.time));
      resolved.add(r.session);
    }
    if (kind === 'exit') ended.add(r.session);
    if (kind === 'revert') reverted.add(r.session);
  }
  for (const [session, n] of firstDenials) if (!summarised.has(session)) kernelDenials += n;
  const endedCount = ended.size;
  return {
    sessions: sessions.size,
    ended: endedCount,
    allowed,
    denied,
    escalations,
    approved: waits.length,
    timeToApproveMs: { median: median(waits), max: waits.length ? Math.max(...waits) : null },
    blockedUploads: blocked,
    reverted: reverted.size,
    rollbackRate: endedCount ? reverted.size / endedCount : null,
    quarantines: quarantinedAt.size,
    mttdMs: mean(detect),
    mttrMs: mean(resolve),
    kernelDenials,
    thresholdHits,
    deniedBy: [...deniedBy].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)),
  };
}
