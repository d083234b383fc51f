/**
 * `agentbox learn`: runs the agent in the observation box (model/learn.ts), then
 * proposes the minimal manifest of what it used (generate/learned.ts). The session is
 * an ordinary one (audited, reverted: nothing it wrote is kept); what it used comes
 * from the kernel's view (fanotify on the home overlay and the program folders) and its
 * connections from the egress proxy's decisions in the audit log.
 */
import { existsSync, readFileSync } from 'node:fs';
import { AgentboxError } from '../errors.js';
import type { Model } from '../model/types.js';
import { learnModel } from '../model/learn.js';
import { proposeManifest, type Learned } from '../generate/learned.js';
import { readAudit } from '../audit/sink.js';
import { observationAvailable } from '../host/watchers.js';
import { stateDir } from '../session/state.js';
import { launch, prepareLaunch, type LaunchRequest } from './launch.js';
import type { Notify } from './notify.js';
import type { LaunchResult } from '../session/options.js';
import { writeFileNoFollow } from '../host/open-exact.js';

export interface LearnOutcome {
  manifest: string;
  session: string;
  result: LaunchResult;
  grants: number;
}

const EGRESS_DECISIONS = new Set(['egress.connect', 'egress.http', 'egress.https']);

export async function learn(model: Model, req: Omit<LaunchRequest, 'dryRun' | 'observe'>, notify: Notify): Promise<LearnOutcome> {
  const avail = observationAvailable();
  if (!avail.available) throw new AgentboxError('CONTROL_UNAVAILABLE', `learn watches the agent through the kernel, which is not possible here; nothing was started`, { details: avail.missing });
  const observed = learnModel(model, existsSync);
  const request: LaunchRequest = { ...req, dryRun: false, observe: true, runtime: 'process' };
  const prepared = await prepareLaunch(observed, request, notify);
  const outcome = await launch(prepared, request, notify);
  if ('dryRun' in outcome) throw new AgentboxError('INTERNAL', 'learn ran as a dry run');
  const r = outcome.result;
  if (!r.observed?.all) throw new AgentboxError('CONTROL_UNAVAILABLE', `the learn session ${r.session} was not observed; no manifest is proposed`);
  const hosts = new Map<string, { host: string; port: number; count: number }>();
  for (const e of readAudit(stateDir())) {
    if (e.session !== r.session || !EGRESS_DECISIONS.has(e.action) || e.decision !== 'allow' || e.reason === 'closed') continue;
    const m = /^(.*):(\d+)$/.exec(e.resource);
    if (!m) continue;
    const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
    const k = `${host}:${m[2]}`;
    const h = hosts.get(k) ?? { host, port: Number(m[2]), count: 0 };
    h.count++;
    hosts.set(k, h);
  }
  const learned: Learned = {
    session: r.session,
    command: prepared.command,
    paths: r.observed.all.paths.map((p) => ({ path: p.path, reads: p.counts.reads, writes: p.counts.writes, execs: p.counts.execs, opens: p.counts.opens })),
    changes: r.changes.map((c) => ({ kind: c.kind, path: c.path })),
    programs: r.observed.all.programs,
    hosts: [...hosts.values()],
    denials: r.observed.denials.map((d) => `${d.verb} ${d.what} ×${d.count} (${d.rule})`),
    at: new Date().toISOString(),
  };
  const original = readFileSync(model.origin.file, 'utf8');
  const manifest = proposeManifest(original, model, learned, existsSync);
  return { manifest, session: r.session, result: r, grants: (manifest.match(/^ {2}- /gm) ?? []).length };
}

/** Writes the proposal where asked, without following a link planted at that name. */
export function writeProposal(out: string, text: string): void {
  writeFileNoFollow(out, text, 0o644, true);
}
