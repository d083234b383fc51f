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
import { learnModel, type LearnExtra } from '../model/learn.js';
import { isWithin } from '../model/paths.js';
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
  /** The last round's session; `sessions` lists every round's. */
  session: string;
  sessions: string[];
  result: LaunchResult;
  grants: number;
}

const EGRESS_DECISIONS = new Set(['egress.connect', 'egress.http', 'egress.https']);

/** At most this many runs: each grants what the previous one was refused outside the home. */
export const LEARN_ROUNDS = 3;

export async function learn(model: Model, req: Omit<LaunchRequest, 'dryRun' | 'observe'>, notify: Notify): Promise<LearnOutcome> {
  const avail = observationAvailable();
  if (!avail.available) throw new AgentboxError('CONTROL_UNAVAILABLE', `learn watches the agent through the kernel, which is not possible here; nothing was started`, { details: avail.missing });
  const request: LaunchRequest = { ...req, dryRun: false, observe: true, runtime: 'process' };
  const extra: LearnExtra[] = [];
  const paths = new Map<string, Learned['paths'][number]>();
  const programs = new Map<string, number>();
  const changes = new Map<string, string>();
  const hosts = new Map<string, { host: string; port: number; count: number }>();
  let r: LaunchResult | undefined;
  let command: readonly string[] = [];
  let uncovered: NonNullable<Learned['uncovered']> = [];
  const sessions: string[] = [];
  for (let round = 1; round <= LEARN_ROUNDS; round++) {
    const prepared = await prepareLaunch(learnModel(model, existsSync, extra), request, notify);
    command = prepared.command;
    const outcome = await launch(prepared, request, notify);
    if ('dryRun' in outcome) throw new AgentboxError('INTERNAL', 'learn ran as a dry run');
    r = outcome.result;
    sessions.push(r.session);
    if (!r.observed?.all) throw new AgentboxError('CONTROL_UNAVAILABLE', `the learn session ${r.session} was not observed; no manifest is proposed`);
    // What every round used counts: a later round may take another path once granted more.
    for (const p of r.observed.all.paths) {
      const u = paths.get(p.path) ?? { path: p.path, reads: 0, writes: 0, execs: 0, opens: 0 };
      u.reads += p.counts.reads;
      u.writes += p.counts.writes;
      u.execs += p.counts.execs;
      u.opens += p.counts.opens;
      paths.set(p.path, u);
    }
    for (const p of r.observed.all.programs) programs.set(p.path, (programs.get(p.path) ?? 0) + p.runs);
    for (const c of r.changes) changes.set(c.path, c.kind);
    for (const h of egressOf(r.session)) {
      const k = `${h.host}:${h.port}`;
      const e = hosts.get(k) ?? { ...h, count: 0 };
      e.count += h.count;
      hosts.set(k, e);
    }
    const refused = r.observed.denials
      // A listing is not granted: a folder's read grant would cover everything under it
      // (Landlock's rights are hierarchical), more than listing it ever needed.
      .filter((d) => d.layer !== 'seccomp' && d.layer !== 'mask' && (d.access === 'read' || d.access === 'exec') && /^no (exec )?grant covers/.test(d.rule) && !isWithin(d.what, model.home))
      .map((d) => ({ access: d.access as LearnExtra['access'], path: d.what, count: d.count }));
    const fresh = refused.filter((x) => !extra.some((e) => e.path === x.path && e.access === x.access));
    uncovered = [...extra.map((e) => ({ ...e, count: 1 })), ...fresh];
    if (fresh.length === 0 || round === LEARN_ROUNDS) break;
    notify.info(`agentbox: learn round ${round} was refused ${fresh.length} path${fresh.length === 1 ? '' : 's'} outside the home that no rule forbids; running again with ${fresh.length === 1 ? 'it' : 'them'} granted`);
    extra.push(...fresh.map(({ access, path }) => ({ access, path })));
  }
  const last = r!;
  const learned: Learned = {
    session: sessions.join(', '),
    command,
    paths: [...paths.values()],
    changes: [...changes].map(([path, kind]) => ({ kind, path })),
    programs: [...programs].map(([path, runs]) => ({ path, runs })),
    hosts: [...hosts.values()],
    denials: last.observed!.denials.filter((d) => !uncovered.some((u) => u.path === d.what)).map((d) => `${d.verb} ${d.what} ×${d.count} (${d.rule}${d.access === 'list' && /^no grant covers/.test(d.rule) ? '; a folder cannot be granted for listing alone' : ''})`),
    uncovered,
    at: new Date().toISOString(),
  };
  const original = readFileSync(model.origin.file, 'utf8');
  const manifest = proposeManifest(original, model, learned, existsSync);
  return { manifest, session: last.session, sessions, result: last, grants: (manifest.match(/^ {2}- /gm) ?? []).length };
}

/** The allowed connections and requests a session's proxy decided, from the audit log. */
function egressOf(session: string): { host: string; port: number; count: number }[] {
  const hosts = new Map<string, { host: string; port: number; count: number }>();
  for (const e of readAudit(stateDir())) {
    if (e.session !== session || !EGRESS_DECISIONS.has(e.action) || e.decision !== 'allow' || e.reason === 'closed') continue;
    const m = /^(.*):(\d+)$/.exec(e.resource);
    if (!m) continue;
    const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
    const k = `${host}:${m[2]}`;
    const h = hosts.get(k) ?? { host, port: Number(m[2]), count: 0 };
    h.count++;
    hosts.set(k, h);
  }
  return [...hosts.values()];
}

/** Writes the proposal where asked, without following a link planted at that name. */
export function writeProposal(out: string, text: string): void {
  writeFileNoFollow(out, text, 0o644, true);
}
