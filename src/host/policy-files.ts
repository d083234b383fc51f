/**
 * An organisation's policy directory on disk:
 *
 *   DIR/*.cedar        Cedar policies (validated against agentbox.cedarschema)
 *   DIR/labels.yaml    optional: labels and sensitivity for paths and hosts
 *   DIR/tests/*.yaml   policy unit cases for `agentbox policy test`
 *
 * plus the folder search behind `segment:` labels (is there a Sensitive folder below
 * this grant?), bounded so a grant on a huge tree cannot stall a check.
 */
import { lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { AgentboxError } from '../errors.js';
import type { PolicyCase } from '../policy/check.js';
import type { Labels, SegmentFinder } from '../policy/entities.js';
import type { PolicySource } from '../policy/verdict.js';
import { packageRoot } from './files.js';

export interface PolicyDir {
  dir: string;
  sources: PolicySource[];
  schema: PolicySource;
  labels: Labels;
}

export function schemaSource(): PolicySource {
  const file = join(packageRoot(), 'profiles', 'policies', 'agentbox.cedarschema');
  return { file, text: readFileSync(file, 'utf8') };
}

const LABEL = { type: 'string', pattern: '^[a-z][a-z0-9-]{0,47}$' };
const labelsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    paths: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['labels'],
        properties: {
          prefix: { type: 'string', pattern: '^(/|~/|~$)', maxLength: 4096 },
          segment: { type: 'string', pattern: '^[^/]+$', maxLength: 255 },
          labels: { type: 'array', items: LABEL, minItems: 1 },
          sensitivity: { enum: ['normal', 'sensitive', 'restricted'] },
        },
      },
    },
    hosts: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['match', 'labels'],
        properties: { match: { type: 'string', pattern: '^(\\*\\.)?[a-z0-9.-]+$|^[0-9a-f:.]+$', maxLength: 253 }, labels: { type: 'array', items: LABEL, minItems: 1 } },
      },
    },
  },
} as const;

const caseSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cases'],
  properties: {
    cases: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'request', 'expect'],
        properties: {
          name: { type: 'string', minLength: 1 },
          request: { type: 'string', minLength: 1 },
          expect: { enum: ['allow', 'deny'] },
          forbiddenBy: { type: 'array', items: { type: 'string' } },
          phase: { enum: ['check', 'run'] },
          consented: { type: 'boolean' },
          home: { type: 'string', pattern: '^/' },
          agent: {
            type: 'object',
            additionalProperties: false,
            properties: {
              name: { type: 'string' },
              classification: { enum: ['low', 'moderate', 'high', 'unclassified'] },
              presets: { type: 'array', items: { type: 'string' } },
              ttl: { type: ['string', 'null'] },
              network: { type: 'boolean' },
              consent: { type: 'boolean' },
              dlp: { type: 'boolean' },
              runtime: { type: 'string' },
              snapshot: { type: 'string' },
            },
          },
        },
      },
    },
  },
} as const;

let ajv: Ajv | undefined;
function check(schema: object, data: unknown, file: string, what: string): void {
  ajv ??= new Ajv({ allErrors: true, allowUnionTypes: true });
  const validate = ajv.compile(schema);
  if (!validate(data)) {
    const errs = (validate.errors ?? []).map((e) => `${e.instancePath || '(top)'} ${e.message}${e.params && 'allowedValues' in e.params ? ` (${(e.params.allowedValues as string[]).join(', ')})` : ''}`);
    throw new AgentboxError('USAGE', `${file}: not a valid ${what}`, { details: errs });
  }
}

function readYaml(file: string): unknown {
  try {
    return parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new AgentboxError('USAGE', `${file}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
}

export function readPolicyDir(dir: string): PolicyDir {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new AgentboxError('USAGE', `policy directory ${dir} does not exist`, { details: ['give a folder of *.cedar files, such as profiles/policies in the agentbox package'] });
  }
  if (!st.isDirectory()) throw new AgentboxError('USAGE', `${dir} is not a directory; --policy takes a folder of *.cedar files`);
  const names = readdirSync(dir).filter((f) => f.endsWith('.cedar')).sort();
  if (names.length === 0) throw new AgentboxError('USAGE', `${dir} holds no *.cedar policy files`);
  const sources = names.map((f) => ({ file: join(dir, f), text: readFileSync(join(dir, f), 'utf8') }));
  let labels: Labels = { paths: [], hosts: [] };
  const labelsFile = join(dir, 'labels.yaml');
  try {
    statSync(labelsFile);
    const data = readYaml(labelsFile) ?? {};
    check(labelsSchema, data, labelsFile, 'labels file (paths: [{prefix|segment, labels, sensitivity}], hosts: [{match, labels}])');
    const d = data as Partial<Labels>;
    labels = { paths: d.paths ?? [], hosts: d.hosts ?? [] };
    d.paths?.forEach((p, i) => {
      if ((p.prefix === undefined) === (p.segment === undefined)) throw new AgentboxError('USAGE', `${labelsFile}: paths[${i}] needs exactly one of prefix (a folder such as ~/Sensitive) or segment (a folder name such as Sensitive)`);
    });
  } catch (e) {
    if (e instanceof AgentboxError) throw e;
  }
  return { dir, sources, schema: schemaSource(), labels };
}

export function readPolicyCases(dir: string): { file: string; cases: PolicyCase[] }[] {
  const tests = join(dir, 'tests');
  let names: string[] = [];
  try {
    names = readdirSync(tests).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch {
    // no tests folder
  }
  if (names.length === 0) throw new AgentboxError('USAGE', `no policy cases in ${tests}/*.yaml`, { details: ['each file holds cases: [{name, request: fs:read:~/x | net:connect:h:443 | exec:/bin/x | launch, expect: allow|deny, agent: {...}}]'] });
  return names.map((f) => {
    const file = join(tests, f);
    const data = readYaml(file);
    check(caseSchema, data, file, 'policy case file');
    return { file, cases: (data as { cases: PolicyCase[] }).cases };
  });
}

/** Bounds of the folder search below a grant. */
export const SEGMENT_SEARCH = { maxDepth: 8, maxEntries: 20_000 };

/** Finds folders named `names` below `root` (no symlinks followed), breadth first, within SEGMENT_SEARCH. */
export const findSegments: SegmentFinder = (root, names) => {
  const found: string[] = [];
  let entries = 0;
  let queue: string[] = [root];
  try {
    if (!lstatSync(root).isDirectory()) return { found, complete: true };
  } catch {
    return { found, complete: true };
  }
  for (let depth = 0; depth < SEGMENT_SEARCH.maxDepth && queue.length > 0; depth++) {
    const next: string[] = [];
    for (const dir of queue) {
      let list;
      try {
        list = readdirSync(dir, { withFileTypes: true });
      } catch {
        continue; // unreadable here means unreadable to the agent too
      }
      for (const d of list) {
        if (++entries > SEGMENT_SEARCH.maxEntries) return { found, complete: false };
        if (!d.isDirectory()) continue;
        const p = join(dir, d.name);
        if (names.includes(d.name)) found.push(p);
        next.push(p);
      }
    }
    queue = next;
  }
  return { found, complete: queue.length === 0 };
};
