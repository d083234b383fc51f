/**
 * `agentbox policy check FILE --policy DIR`: a manifest's effective grants against the
 * organisation's Cedar policies, before rollout (exit 0 all allowed, 3 something is
 * forbidden, 2 a manifest or policy error).
 * `agentbox policy test DIR`: the policy unit cases in DIR/tests (exit 0 all pass, 1 not).
 */
import type { Command } from 'commander';
import { manifestOptionsHelp, type ManifestOptions } from '../context.js';
import { loadModel } from '../../actions/load.js';
import type { Io } from '../io.js';
import { cedarVersion, checkAgainst, policyTest, rel, verdictText } from '../../actions/policy.js';

export async function policyCheckCommand(arg: string, opts: ManifestOptions & { policy: string }, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const { check, engine, policy } = checkAgainst(model, opts.policy);
  if (io.json) {
    io.data({
      agent: model.name,
      policyDir: policy.dir,
      cedar: cedarVersion(),
      policies: [...engine.policies.keys()],
      allowed: check.forbidden.length === 0,
      results: check.results.map((r) => ({
        request: r.request.text,
        pointer: r.request.source?.pointer ?? null,
        decision: r.verdict.decision,
        forbiddenBy: r.verdict.forbiddenBy,
        errors: r.verdict.errors,
      })),
    });
  } else {
    io.out(`${model.name} against ${engine.policies.size} polic${engine.policies.size === 1 ? 'y' : 'ies'} in ${rel(policy.dir)} (Cedar ${cedarVersion()})`);
    for (const r of check.results) {
      const at = r.request.source ? io.style.dim(`  ${r.request.source.pointer}`) : '';
      if (r.verdict.decision === 'allow') io.out(`  ${io.style.green('allowed  ')} ${r.request.text}${at}`);
      else {
        io.out(`  ${io.style.red('forbidden')} ${r.request.text}${at}`);
        io.out(`            ${verdictText(r.verdict)}`);
      }
    }
    const n = check.forbidden.length;
    io.out(n === 0 ? `every one of ${check.results.length} requests is allowed` : `${n} of ${check.results.length} requests forbidden: remove those grants or change the policy`);
  }
  return check.forbidden.length === 0 ? 0 : 3;
}

export async function policyTestCommand(dir: string, io: Io): Promise<number> {
  const results = policyTest(dir);
  const failed = results.filter((r) => !r.pass);
  if (io.json) io.data({ policyDir: dir, passed: results.length - failed.length, failed: failed.length, results: results.map(({ got: _got, ...r }) => r) });
  else {
    for (const r of results) io.out(`${r.pass ? io.style.green('pass') : io.style.red('FAIL')}  ${rel(r.file)}: ${r.name}${r.pass ? io.style.dim(`  (${r.message})`) : `\n      ${r.message}`}`);
    io.out(`${results.length - failed.length} passed, ${failed.length} failed`);
  }
  return failed.length === 0 ? 0 : 1;
}

export function registerPolicy(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  const policy = program
    .command('policy')
    .description('organisation policy in Cedar: check manifests before rollout, unit-test the policies')
    .addHelpText('after', `
A policy directory holds *.cedar policies (validated against agentbox's Cedar schema,
profiles/policies/agentbox.cedarschema), an optional labels.yaml, and tests/*.yaml cases.
Policies are guardrails: what a manifest grants is permitted unless a forbid matches.

Examples:
  agentbox policy check cowork --policy /etc/agentbox/policy
  agentbox policy check my-agent.yaml --policy org/ --json | jq '.results[] | select(.decision=="deny")'
  agentbox policy test org/`);
  policy
    .command('check')
    .description('evaluate a manifest\'s effective grants against the policies (exit 0 allowed, 3 forbidden, 2 invalid)')
    .argument('<manifest>', 'manifest file or shipped agent profile name')
    .requiredOption('--policy <dir>', 'the organisation\'s policy directory (*.cedar, labels.yaml)')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--home <dir>', manifestOptionsHelp.home)
    .addHelpText('after', `
Each grant becomes a Cedar request (Agent, read|write|exec|connect|launch, Path|Host|Agent);
every forbidden one is listed with the policy id and its @reason.

Examples:
  agentbox policy check cowork --policy profiles/policies
  agentbox policy check cowork --profile viewer --policy org/`)
    .action((arg: string, opts) => run((io) => policyCheckCommand(arg, opts, io)));
  policy
    .command('test')
    .description('run the policy unit cases in DIR/tests/*.yaml (exit 0 all pass, 1 a case failed, 2 invalid)')
    .argument('<dir>', 'the policy directory')
    .addHelpText('after', `
A case file:
  cases:
    - name: full-disk read needs low classification
      agent: { classification: high, network: true, ttl: 10m }
      request: fs:read:/            # or net:connect:HOST:PORT, exec:PATH, launch
      expect: deny
      forbiddenBy: [no-full-disk-unless-low]

Examples:
  agentbox policy test profiles/policies
  agentbox policy test org/ --json`)
    .action((dir: string) => run((io) => policyTestCommand(dir, io)));
}
