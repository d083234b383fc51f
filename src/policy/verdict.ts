/**
 * Organisation-policy decisions as data (pure): what a policy is called, what a verdict
 * says, and how a deny reads in plain language. The Cedar engine that produces them
 * is src/host/cedar-engine.ts (it loads WebAssembly and sets a V8 flag, so it lives
 * with the host-touching code).
 */
import type { PolicyRequest } from './entities.js';

export interface PolicySource {
  file: string;
  text: string;
}

export interface PolicyProblem {
  file: string;
  line: number | undefined;
  column: number | undefined;
  policy: string | undefined;
  message: string;
}

export interface PolicyInfo {
  id: string;
  effect: 'permit' | 'forbid';
  reason: string | undefined;
  file: string;
  line: number;
}

export interface Verdict {
  decision: 'allow' | 'deny';
  /** The forbid policies that decided a deny (empty for an allow). */
  forbiddenBy: PolicyInfo[];
  /** Policies that failed while evaluated (a deny, fail closed). */
  errors: { id: string; message: string }[];
}

/** The implicit permit: the manifest granted the request. */
export const MANIFEST_PERMIT_ID = 'agentbox.manifest-grant';

/** What checks and the proxy need of a policy engine. */
export interface Authorizer {
  readonly policies: ReadonlyMap<string, PolicyInfo>;
  authorize(r: PolicyRequest): Verdict;
}

/** Plain-language text of a deny: each forbidding policy with its reason, and any policy that failed. */
export function verdictText(v: Verdict): string {
  const parts = v.forbiddenBy.map((p) => `policy ${p.id}${p.reason ? `: ${p.reason}` : ''} (${p.file}:${p.line})`);
  for (const e of v.errors) parts.push(`policy ${e.id} could not be evaluated (${e.message}); agentbox denies rather than skip it`);
  return parts.join('; ') || 'no policy permits it';
}
