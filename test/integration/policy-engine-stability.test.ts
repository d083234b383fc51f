/**
 * Regression: Node 20's V8 aborted the whole process ("Fatal error: unreachable code"
 * in Deoptimizer::DoComputeBuiltinContinuation) after a few thousand Cedar decisions,
 * when TurboFan had inlined the JS-to-Wasm call into the proxy's decision path. The
 * engine turns that inlining off before Cedar loads; without it this child process
 * crashed in most runs. Runs the built code (dist/) the way the launcher does.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/load.js';

const script = `
const { readPolicyDir } = await import(${JSON.stringify(join(ROOT, 'dist/host/policy-files.js'))});
const { PolicyEngine, verdictText } = await import(${JSON.stringify(join(ROOT, 'dist/host/cedar-engine.js'))});
const { agentEntity, connectRequest } = await import(${JSON.stringify(join(ROOT, 'dist/policy/entities.js'))});
const { PolicyCache } = await import(${JSON.stringify(join(ROOT, 'dist/egress/policy-cache.js'))});
const dir = readPolicyDir(${JSON.stringify(join(ROOT, 'profiles/policies'))});
const { engine } = PolicyEngine.load(dir.sources, dir.schema);
const agent = agentEntity({ name: 'a', classification: 'moderate', presets: [], ttlSeconds: 600, hasNetwork: true, consent: false, dlp: false, runtime: 'process', snapshot: 'revert' });
const cache = new PolicyCache((h, p, c) => { const v = engine.authorize(connectRequest(agent, h, p, dir.labels, 'run', c)); return { allow: v.decision === 'allow', ids: v.forbiddenBy.map((x) => x.id), reason: verdictText(v) }; });
let denied = 0;
for (let i = 0; i < 20000; i++) if (!cache.decide(i % 2 ? 'h' + i + '.corp.example.com' : 'h' + i + '.elsewhere.net', 443, false).answer.allow) denied++;
console.log('denied', denied);
`;

describe('Cedar under sustained load', () => {
  it('20,000 decisions in one process: no V8 abort, and every off-allowlist host denied', async () => {
    for (let run = 0; run < 3; run++) {
      const r = await execa(process.execPath, ['--input-type=module', '-e', script], { reject: false });
      expect(r.exitCode, String(r.stderr).slice(0, 400)).toBe(0);
      expect(String(r.stdout).trim()).toBe('denied 10000');
    }
  }, 120_000);
});
