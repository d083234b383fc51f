/**
 * Organisation policy in Cedar, evaluated with the real Cedar engine
 * (@cedar-policy/cedar-wasm). Policies are guardrails over what a manifest grants:
 * agentbox adds one implicit `permit` (the manifest granted it), and any matching
 * `forbid` wins over it, as Cedar's semantics say.
 *
 * - Every policy is validated against agentbox.cedarschema in strict mode when it is
 *   loaded: a misspelt attribute is a located error, not a rule that never fires.
 * - A policy that fails while it is evaluated denies (Cedar skips erroring policies,
 *   which would let a broken forbid allow): agentbox fails closed and names it.
 * - Policy ids come from the `@id("...")` annotation, or FILE#N; `@reason("...")` is
 *   the plain-language text shown when the policy forbids something.
 */
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import type { PolicyRequest } from '../policy/entities.js';
import { MANIFEST_PERMIT_ID, type Authorizer, type PolicyInfo, type PolicyProblem, type PolicySource, type Verdict } from '../policy/verdict.js';

export { MANIFEST_PERMIT_ID, verdictText } from '../policy/verdict.js';
export type { PolicyInfo, PolicyProblem, PolicySource, Verdict } from '../policy/verdict.js';

type Cedar = typeof import('@cedar-policy/cedar-wasm/nodejs');
let cedarModule: Cedar | undefined;
/**
 * Loads the Cedar engine on first use (about 40 ms), so commands without policies never pay for it.
 *
 * Node 20's V8 crashes the process ("Fatal error: unreachable code" in
 * Deoptimizer::DoComputeBuiltinContinuation) when TurboFan has inlined the JS-to-Wasm
 * call into a caller that is lazily deoptimised while Cedar calls back into JS: under
 * a few thousand decisions it killed the launcher in most runs (bench/policy). Turning
 * that one inlining off before Cedar's code is compiled removes it (0 crashes in
 * repeated runs) and costs nothing measurable.
 */
function cedar(): Cedar {
  if (!cedarModule) {
    setFlagsFromString('--no-turbo-inline-js-wasm-calls');
    cedarModule = createRequire(import.meta.url)('@cedar-policy/cedar-wasm/nodejs') as Cedar;
  }
  return cedarModule;
}

export function cedarVersion(): string {
  return cedar().getCedarVersion();
}

function lineCol(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}

let engines = 0;

export class PolicyEngine implements Authorizer {
  private constructor(
    private readonly setId: string,
    private readonly schemaId: string,
    readonly policies: ReadonlyMap<string, PolicyInfo>,
  ) {}

  /** Parses, names and validates the policies; returns the engine or every problem found. */
  static load(sources: readonly PolicySource[], schema: PolicySource): { engine: PolicyEngine; problems: [] } | { engine: undefined; problems: PolicyProblem[] } {
    const c = cedar();
    const problems: PolicyProblem[] = [];
    const schemaCheck = c.checkParseSchema(schema.text);
    if (schemaCheck.type === 'failure') {
      return { engine: undefined, problems: schemaCheck.errors.map((e) => ({ file: schema.file, line: undefined, column: undefined, policy: undefined, message: e.message })) };
    }
    const texts: Record<string, string> = {};
    const infos = new Map<string, PolicyInfo>();
    const where = new Map<string, { file: string; text: string; offset: number }>();
    for (const src of sources) {
      const parsed = c.checkParsePolicySet({ staticPolicies: src.text });
      if (parsed.type === 'failure') {
        for (const e of parsed.errors) {
          const loc = e.sourceLocations?.[0];
          const lc = loc ? lineCol(src.text, loc.start) : undefined;
          const label = loc?.label ? ` (${loc.label})` : '';
          problems.push({ file: src.file, line: lc?.line, column: lc?.column, policy: undefined, message: `${e.message}${label}` });
        }
        continue;
      }
      const parts = c.policySetTextToParts(src.text);
      if (parts.type === 'failure') {
        problems.push({ file: src.file, line: undefined, column: undefined, policy: undefined, message: parts.errors.map((e) => e.message).join('; ') });
        continue;
      }
      if (parts.policy_templates.length > 0) {
        problems.push({ file: src.file, line: undefined, column: undefined, policy: undefined, message: 'policy templates (?principal/?resource slots) are not used by agentbox; write static policies' });
      }
      let cursor = 0;
      parts.policies.forEach((text, i) => {
        const at = src.text.indexOf(text, cursor);
        const offset = at >= 0 ? at : cursor;
        cursor = offset + text.length;
        const { line } = lineCol(src.text, offset);
        const json = c.policyToJson(text);
        if (json.type === 'failure') {
          problems.push({ file: src.file, line, column: 1, policy: undefined, message: json.errors.map((e) => e.message).join('; ') });
          return;
        }
        const ann = json.json.annotations ?? {};
        const id = ann.id ?? `${src.file.split('/').pop()}#${i + 1}`;
        if (id === MANIFEST_PERMIT_ID || infos.has(id)) {
          const other = infos.get(id);
          problems.push({ file: src.file, line, column: 1, policy: id, message: other ? `policy id "${id}" is also used at ${other.file}:${other.line}; ids name policies in audit events and must be unique` : `"${id}" is reserved for agentbox's implicit permit` });
          return;
        }
        infos.set(id, { id, effect: json.json.effect, reason: ann.reason, file: src.file, line });
        texts[id] = text;
        where.set(id, { file: src.file, text: src.text, offset });
      });
    }
    if (problems.length > 0) return { engine: undefined, problems };

    texts[MANIFEST_PERMIT_ID] = `@id("${MANIFEST_PERMIT_ID}") permit (principal, action, resource);`;
    const validation = c.validate({ schema: schema.text, policies: { staticPolicies: texts }, validationSettings: { mode: 'strict' } });
    if (validation.type === 'failure') {
      return { engine: undefined, problems: validation.errors.map((e) => ({ file: schema.file, line: undefined, column: undefined, policy: undefined, message: e.message })) };
    }
    for (const v of validation.validationErrors) {
      const w = where.get(v.policyId);
      const loc = v.error.sourceLocations?.[0];
      const lc = w && loc ? lineCol(w.text, w.offset + loc.start) : undefined;
      const help = v.error.help ? ` (${v.error.help})` : '';
      problems.push({ file: w?.file ?? '(policies)', line: lc?.line, column: lc?.column, policy: v.policyId, message: `${v.error.message}${help}` });
    }
    if (problems.length > 0) return { engine: undefined, problems };

    const n = ++engines;
    const setId = `agentbox-policies-${process.pid}-${n}`;
    const schemaId = `agentbox-schema-${process.pid}-${n}`;
    const pre = c.preparsePolicySet(setId, { staticPolicies: texts });
    const preSchema = c.preparseSchema(schemaId, schema.text);
    if (pre.type === 'failure' || preSchema.type === 'failure') {
      const errs = [...(pre.type === 'failure' ? pre.errors : []), ...(preSchema.type === 'failure' ? preSchema.errors : [])];
      return { engine: undefined, problems: errs.map((e) => ({ file: '(policies)', line: undefined, column: undefined, policy: undefined, message: e.message })) };
    }
    return { engine: new PolicyEngine(setId, schemaId, infos), problems: [] };
  }

  /** One Cedar decision. A request the schema refuses, or a policy that errors, is a deny. */
  authorize(r: PolicyRequest): Verdict {
    const answer = cedar().statefulIsAuthorized({
      principal: r.principal,
      action: r.action,
      resource: r.resource,
      context: r.context,
      entities: r.entities,
      preparsedPolicySetId: this.setId,
      preparsedSchemaName: this.schemaId,
      validateRequest: true,
    });
    if (answer.type === 'failure') {
      return { decision: 'deny', forbiddenBy: [], errors: [{ id: '(request)', message: answer.errors.map((e) => e.message).join('; ') }] };
    }
    const { decision, diagnostics } = answer.response;
    const errors = diagnostics.errors.map((e) => ({ id: e.policyId, message: e.error.message }));
    if (decision === 'allow' && errors.length === 0) return { decision: 'allow', forbiddenBy: [], errors: [] };
    const forbiddenBy = decision === 'deny' ? diagnostics.reason.map((id) => this.policies.get(id)).filter((p): p is PolicyInfo => p !== undefined) : [];
    return { decision: 'deny', forbiddenBy, errors };
  }
}

