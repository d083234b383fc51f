/**
 * Policy checks over the Cedar engine: a manifest's effective grants before rollout
 * (`policy check`, `launch --policy`), and an organisation's policy unit cases
 * (`policy test`). Pure apart from the engine itself.
 */
import { lexicalPath } from '../model/paths.js';
import { parseGrant, parseTtl } from '../model/grammar.js';
import type { Model } from '../model/types.js';
import type { Authorizer, Verdict } from './verdict.js';
import { agentEntity, connectRequest, fsRequest, launchRequest, manifestRequests, type AgentFacts, type Labels, type Phase, type PolicyRequest, type SegmentFinder } from './entities.js';

export interface CheckedRequest {
  request: PolicyRequest;
  verdict: Verdict;
}

export interface ManifestCheck {
  agent: string;
  results: CheckedRequest[];
  forbidden: CheckedRequest[];
}

export function checkManifest(engine: Authorizer, model: Model, labels: Labels, find: SegmentFinder | undefined): ManifestCheck {
  const results = manifestRequests(model, labels, find).map((request) => ({ request, verdict: engine.authorize(request) }));
  return { agent: model.name, results, forbidden: results.filter((r) => r.verdict.decision === 'deny') };
}

/** One policy unit case, as written in a tests/*.yaml file. */
export interface PolicyCase {
  name: string;
  /** Agent attributes; unset ones take the defaults below. */
  agent?: { name?: string; classification?: AgentFacts['classification']; presets?: string[]; ttl?: string | null; network?: boolean; consent?: boolean; dlp?: boolean; runtime?: string; snapshot?: string };
  /** `fs:read:PATH`, `fs:write:PATH`, `exec:PATH`, `net:connect:HOST:PORT` or `launch`. */
  request: string;
  expect: 'allow' | 'deny';
  /** When expect is deny: the policy ids that must be among the forbidding ones. */
  forbiddenBy?: string[];
  phase?: Phase;
  consented?: boolean;
  /** `~` in paths (default /home/user). */
  home?: string;
}

export interface CaseResult {
  file: string;
  name: string;
  pass: boolean;
  got: Verdict | undefined;
  message: string;
}

export function runCase(engine: Authorizer, c: PolicyCase, labels: Labels, file: string): CaseResult {
  const fail = (message: string, got?: Verdict): CaseResult => ({ file, name: c.name, pass: false, got, message });
  let ttlSeconds: number | undefined;
  if (c.agent?.ttl != null) {
    const t = parseTtl(c.agent.ttl);
    if (!t.ok) return fail(`agent.ttl: ${t.message}`);
    ttlSeconds = t.value;
  }
  const facts: AgentFacts = {
    name: c.agent?.name ?? 'test-agent',
    classification: c.agent?.classification ?? 'unclassified',
    presets: c.agent?.presets ?? [],
    ttlSeconds,
    hasNetwork: c.agent?.network ?? false,
    consent: c.agent?.consent ?? false,
    dlp: c.agent?.dlp ?? false,
    runtime: c.agent?.runtime ?? 'process',
    snapshot: c.agent?.snapshot ?? 'revert',
  };
  const agent = agentEntity(facts);
  const home = c.home ?? '/home/user';
  const phase = c.phase ?? 'check';
  let request: PolicyRequest;
  if (c.request === 'launch') request = launchRequest(agent, phase);
  else {
    const g = parseGrant(c.request);
    if (!g.ok) return fail(`request: ${g.message}`);
    if (g.value.type === 'net') request = connectRequest(agent, g.value.host, g.value.port, labels, phase, c.consented ?? false);
    else {
      const lex = lexicalPath(g.value.path, home);
      if (!lex.ok) return fail(`request: ${lex.message}`);
      const action = g.value.type === 'exec' ? 'exec' : g.value.access;
      request = fsRequest(agent, action, lex.literal, home, labels, undefined, phase);
    }
  }
  const got = engine.authorize(request);
  if (got.decision !== c.expect) return fail(`expected ${c.expect}, got ${got.decision}${got.forbiddenBy.length ? ` (forbidden by ${got.forbiddenBy.map((p) => p.id).join(', ')})` : ''}${got.errors.length ? ` (errors: ${got.errors.map((e) => `${e.id}: ${e.message}`).join('; ')})` : ''}`, got);
  const ids = got.forbiddenBy.map((p) => p.id);
  const missing = (c.forbiddenBy ?? []).filter((id) => !ids.includes(id));
  if (missing.length > 0) return fail(`denied, but not by ${missing.join(', ')} (forbidden by ${ids.join(', ') || 'nothing'})`, got);
  return { file, name: c.name, pass: true, got, message: c.expect === 'deny' ? `denied by ${ids.join(', ') || 'no permit'}` : 'allowed' };
}
