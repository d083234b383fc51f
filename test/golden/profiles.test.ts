/**
 * Golden files: the whole output tree of every shipped agent profile (and each agent
 * under each role preset), pinned byte for byte. Dropping a profile into profiles/agents
 * adds its tree here; an intended change is reviewed with `vitest -u` and a diff.
 */
import { describe, expect, it } from 'vitest';
import { loadManifest } from '../../src/manifest/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { generate, planJson } from '../../src/generate/index.js';
import { ctx, shippedAgents, templates } from '../helpers/load.js';

const variants: { label: string; profile?: string[] }[] = [{ label: 'as-shipped' }, { label: 'viewer', profile: ['viewer'] }, { label: 'editor', profile: ['editor'] }];

describe('golden artifacts of the shipped profiles', () => {
  for (const agent of shippedAgents()) {
    const name = agent.file.split('/').pop()!.replace(/\.yaml$/, '');
    for (const v of variants) {
      it(`${name} (${v.label})`, async () => {
        const r = loadManifest(agent, ctx(v.profile ? { profileOverride: v.profile } : {}));
        expect(r.errors).toEqual([]);
        const plan = buildPlan(r.model!, ['linux', 'windows', 'macos'], ['intune', 'jamf']);
        const artifacts = generate(r.model!, plan, templates);
        for (const a of artifacts) await expect(a.content).toMatchFileSnapshot(`./files/${name}/${v.label}/${a.path}`);
        await expect(planJson(plan, artifacts)).toMatchFileSnapshot(`./files/${name}/${v.label}/plan.json`);
      });
    }
  }

  it('generation is deterministic: the same input gives the same bytes', () => {
    for (const agent of shippedAgents()) {
      const once = () => {
        const m = loadManifest(agent, ctx()).model!;
        const plan = buildPlan(m, ['linux']);
        const a = generate(m, plan, templates);
        return planJson(plan, a) + a.map((x) => x.content).join('\0');
      };
      expect(once()).toBe(once());
    }
  });
});
