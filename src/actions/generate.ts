/**
 * `generate`: the plan and every artifact for the targets, written under OUT with
 * plan.json (shell scripts executable: MDM agents run them directly).
 */
import { generate, planJson, type Artifact } from '../generate/index.js';
import { buildPlan, type Bundle, type Target } from '../plan/plan.js';
import type { Model } from '../model/types.js';
import { readTemplates, writeTree } from '../host/files.js';

export function generateTo(model: Model, targets: readonly Target[], bundles: readonly Bundle[], out: string): { artifacts: Artifact[]; planJson: string } {
  const plan = buildPlan(model, targets, bundles);
  const artifacts = generate(model, plan, readTemplates());
  const json = planJson(plan, artifacts);
  writeTree(out, [...artifacts.map((a) => ({ path: a.path, content: a.content, ...(a.path.endsWith('.sh') ? { mode: 0o755 } : {}) })), { path: 'plan.json', content: json }]);
  return { artifacts, planJson: json };
}
