/**
 * Organisation policy (Cedar): a policy directory loaded and validated into an engine,
 * a manifest's effective grants checked against it (`policy check`, `launch --policy`),
 * and the directory's unit cases run (`policy test`).
 */
import { relative } from 'node:path';
import { AgentboxError } from '../errors.js';
import { findSegments, readPolicyCases, readPolicyDir, type PolicyDir } from '../host/policy-files.js';
import { checkManifest, runCase, type CaseResult, type ManifestCheck } from '../policy/check.js';
import { cedarVersion, PolicyEngine, verdictText, type PolicyProblem } from '../host/cedar-engine.js';
import type { Model } from '../model/types.js';

export { cedarVersion, verdictText };

/** A path relative to the working directory when that is shorter to read. */
export const rel = (f: string) => {
  const r = relative(process.cwd(), f);
  return r.startsWith('..') ? f : r;
};

function problemText(p: PolicyProblem): string {
  const where = p.line === undefined ? rel(p.file) : `${rel(p.file)}:${p.line}:${p.column ?? 1}`;
  return `${where}${p.policy ? ` policy ${p.policy}:` : ''} ${p.message}`;
}

/** Reads and validates a policy directory into an engine, or throws a located error (exit 2). */
export function loadPolicies(dir: string): { engine: PolicyEngine; policy: PolicyDir } {
  const policy = readPolicyDir(dir);
  const loaded = PolicyEngine.load(policy.sources, policy.schema);
  if (!loaded.engine) {
    throw new AgentboxError('USAGE', `the policies in ${dir} have ${loaded.problems.length} error${loaded.problems.length === 1 ? '' : 's'}; nothing was evaluated`, {
      details: loaded.problems.map(problemText),
    });
  }
  return { engine: loaded.engine, policy };
}

/** The manifest's grants against the policies; used by `policy check` and `launch --policy`. */
export function checkAgainst(model: Model, dir: string): { check: ManifestCheck; engine: PolicyEngine; policy: PolicyDir } {
  const { engine, policy } = loadPolicies(dir);
  return { check: checkManifest(engine, model, policy.labels, findSegments), engine, policy };
}

/** The lines naming each forbidden grant, its place in the manifest and the policy that forbade it. */
export function forbiddenLines(check: ManifestCheck): string[] {
  return check.forbidden.map((r) => {
    const at = r.request.source ? ` (${r.request.source.pointer}${r.request.source.origin === 'preset' ? `, preset ${r.request.source.preset}` : ''}: ${r.request.source.text})` : '';
    return `${r.request.text}${at} is forbidden by ${verdictText(r.verdict)}`;
  });
}

/** The policy unit cases in DIR/tests/*.yaml, each run against DIR's policies. */
export function policyTest(dir: string): CaseResult[] {
  const { engine, policy } = loadPolicies(dir);
  return readPolicyCases(dir).flatMap(({ file, cases }) => cases.map((c) => runCase(engine, c, policy.labels, file)));
}
