/**
 * An agent's grants as Cedar requests (pure). The manifest's effective grants become
 * (principal Agent, action read|write|exec|connect|launch, resource Path|Host|Agent)
 * requests whose entities carry the attributes organisation policies read: the agent's
 * classification, ttl and network reach; a path's segments, labels and whether it is
 * full-disk; a host's name, port and labels.
 *
 * Manifest values only ever enter Cedar as JSON entity data (ids and attribute
 * values), never as policy text, so no manifest value can change what a policy says.
 */
import { isWithin } from '../model/paths.js';
import { hostMatches } from '../model/decide.js';
import { effectiveFs } from '../model/grants.js';
import { type Model, type RuleSource } from '../model/types.js';
import { usesProxy } from '../model/grants.js';

export const NS = 'Agentbox';
export type CedarAction = 'read' | 'write' | 'exec' | 'connect' | 'launch';

/** A Cedar value as cedar-wasm takes it in JSON. */
export type CedarValue = string | number | boolean | CedarValue[] | { [k: string]: CedarValue };
export interface EntityUid {
  type: string;
  id: string;
}
export interface Entity {
  uid: EntityUid;
  attrs: Record<string, CedarValue>;
  parents: EntityUid[];
}

export interface PolicyRequest {
  /** What is asked, in the grant grammar (`fs:read:/home/a/Documents`, `net:connect:h:443`, `launch`). */
  text: string;
  /** Where the manifest asked for it (`capabilities[2]`, `agent.command[0]`, `ttl`), if it did. */
  source: RuleSource | undefined;
  principal: EntityUid;
  action: EntityUid;
  resource: EntityUid;
  context: Record<string, CedarValue>;
  entities: Entity[];
}

/** Organisation labels for paths and hosts (the policy directory's labels.yaml). */
export interface Labels {
  paths: { prefix?: string; segment?: string; labels: string[]; sensitivity?: Sensitivity }[];
  hosts: { match: string; labels: string[] }[];
}
export type Sensitivity = 'normal' | 'sensitive' | 'restricted';
const RANK: Record<Sensitivity, number> = { normal: 0, sensitive: 1, restricted: 2 };
export const NO_LABELS: Labels = { paths: [], hosts: [] };

/** Folders found below a grant on disk with a name a labels entry uses (`segment:`), and whether the search finished. */
export type SegmentFinder = (root: string, names: readonly string[]) => { found: string[]; complete: boolean };

/** Agent attributes a policy can read; also what `policy test` cases set. */
export interface AgentFacts {
  name: string;
  classification: 'low' | 'moderate' | 'high' | 'unclassified';
  presets: string[];
  ttlSeconds: number | undefined;
  hasNetwork: boolean;
  consent: boolean;
  dlp: boolean;
  runtime: string;
  snapshot: string;
}

export function agentFacts(model: Model): AgentFacts {
  return {
    name: model.name,
    classification: model.classification ?? 'unclassified',
    presets: model.extends.map((p) => p.name),
    ttlSeconds: model.ttlSeconds,
    hasNetwork: usesProxy(model),
    consent: model.egress.consent !== undefined,
    dlp: model.egress.dlp !== undefined,
    runtime: model.runtime.kind,
    snapshot: model.runtime.snapshot,
  };
}

const uid = (type: string, id: string): EntityUid => ({ type: `${NS}::${type}`, id });

export function agentEntity(a: AgentFacts): Entity {
  return {
    uid: uid('Agent', a.name),
    attrs: {
      name: a.name,
      classification: a.classification,
      presets: [...a.presets],
      hasTtl: a.ttlSeconds !== undefined,
      ttlSeconds: a.ttlSeconds ?? 0,
      hasNetwork: a.hasNetwork,
      consent: a.consent,
      dlp: a.dlp,
      runtime: a.runtime,
      snapshot: a.snapshot,
    },
    parents: [],
  };
}

const expandHome = (p: string, home: string) => (p === '~' ? home : p.startsWith('~/') ? `${home}${p.slice(1)}` : p);

/**
 * A path's entity. `labels`: labels of entries covering the path (it lies inside a
 * labelled folder, or has a labelled folder name among its segments). `containsLabels`:
 * labels of labelled folders inside it, which a grant on it reaches; `unscanned` when
 * the search below it for labelled folder names could not finish.
 */
export function pathEntity(path: string, home: string, labels: Labels, find: SegmentFinder | undefined): Entity {
  const segments = path.split('/').filter(Boolean);
  const own = new Set<string>();
  const contains = new Set<string>();
  let sensitivity: Sensitivity = 'normal';
  const raise = (s: Sensitivity | undefined) => {
    if (s && RANK[s] > RANK[sensitivity]) sensitivity = s;
  };
  const segmentNames: string[] = [];
  for (const e of labels.paths) {
    if (e.prefix !== undefined) {
      const prefix = expandHome(e.prefix, home);
      if (isWithin(path, prefix)) {
        e.labels.forEach((l) => own.add(l));
        raise(e.sensitivity);
      } else if (isWithin(prefix, path)) {
        e.labels.forEach((l) => contains.add(l));
        raise(e.sensitivity);
      }
    } else if (e.segment !== undefined) {
      if (segments.includes(e.segment)) {
        e.labels.forEach((l) => own.add(l));
        raise(e.sensitivity);
      } else segmentNames.push(e.segment);
    }
  }
  if (segmentNames.length > 0 && find) {
    const r = find(path, segmentNames);
    for (const f of r.found) {
      const name = f.split('/').pop();
      for (const e of labels.paths) {
        if (e.segment === name) {
          e.labels.forEach((l) => contains.add(l));
          raise(e.sensitivity);
        }
      }
    }
    if (!r.complete) contains.add('unscanned');
  }
  for (const l of own) contains.add(l);
  const depth = segments.length;
  return {
    uid: uid('Path', path),
    attrs: {
      path,
      segments,
      depth,
      labels: [...own].sort(),
      containsLabels: [...contains].sort(),
      sensitivity,
      fullDisk: depth <= 1 || isWithin(home, path),
      underHome: isWithin(path, home),
    },
    parents: [],
  };
}

/** True when every host `grant` can name is also named by label pattern `pattern`. */
export function hostCovered(pattern: string, grant: string): boolean {
  if (grant.startsWith('*.')) {
    if (!pattern.startsWith('*.')) return false;
    const g = grant.slice(2);
    const p = pattern.slice(2);
    return g === p || g.endsWith(`.${p}`);
  }
  return hostMatches(pattern, grant);
}

export function hostEntity(host: string, port: number, labels: Labels): Entity {
  const ip = /^[0-9.]+$/.test(host) || host.includes(':');
  const found = new Set<string>();
  for (const h of labels.hosts) if (hostCovered(h.match, host)) for (const l of h.labels) found.add(l);
  return {
    uid: uid('Host', `${host.includes(':') ? `[${host}]` : host}:${port}`),
    attrs: {
      name: host,
      port,
      wildcard: host.startsWith('*.'),
      ip,
      labels: [...found].sort(),
    },
    parents: [],
  };
}

export type Phase = 'check' | 'run';

function request(agent: Entity, action: CedarAction, resource: Entity, text: string, source: RuleSource | undefined, context: Record<string, CedarValue>): PolicyRequest {
  const entities = resource.uid.type === agent.uid.type && resource.uid.id === agent.uid.id ? [agent] : [agent, resource];
  return { text, source, principal: agent.uid, action: uid('Action', action), resource: resource.uid, context, entities };
}

export function fsRequest(agent: Entity, action: 'read' | 'write' | 'exec', path: string, home: string, labels: Labels, find: SegmentFinder | undefined, phase: Phase, source?: RuleSource): PolicyRequest {
  const text = action === 'exec' ? `exec:${path}` : `fs:${action}:${path}`;
  return request(agent, action, pathEntity(path, home, labels, find), text, source, { phase });
}

export function connectRequest(agent: Entity, host: string, port: number, labels: Labels, phase: Phase, consented: boolean, source?: RuleSource, http?: { method: string; path: string }): PolicyRequest {
  const hostText = host.includes(':') ? `[${host}]` : host;
  const text = http ? `net:connect:${hostText}:${port} ${http.method} ${http.path}` : `net:connect:${hostText}:${port}`;
  return request(agent, 'connect', hostEntity(host, port, labels), text, source, { phase, consented, ...(http ? { method: http.method, path: http.path } : {}) });
}

export function launchRequest(agent: Entity, phase: Phase): PolicyRequest {
  return request(agent, 'launch', agent, 'launch', undefined, { phase });
}

/**
 * Every request a manifest's effective grants make: launch itself; read (and write)
 * for each fs grant; exec for the agent program and each exec grant; connect for each
 * network grant and for each host the manifest may ask consent for.
 */
export function manifestRequests(model: Model, labels: Labels, find: SegmentFinder | undefined, phase: Phase = 'check'): PolicyRequest[] {
  const agent = agentEntity(agentFacts(model));
  const launch = launchRequest(agent, phase);
  launch.source = { origin: 'manifest', file: model.origin.file, pointer: 'ttl', text: model.ttlSeconds === undefined ? 'not set' : `${model.ttlSeconds}s` };
  const out: PolicyRequest[] = [launch];
  for (const g of effectiveFs(model).fs) {
    out.push(fsRequest(agent, 'read', g.path, model.home, labels, find, phase, g.source));
    if (g.access === 'write') out.push(fsRequest(agent, 'write', g.path, model.home, labels, find, phase, g.source));
  }
  const program = model.agent.command[0];
  if (program) out.push(fsRequest(agent, 'exec', program, model.home, labels, find, phase, { origin: 'manifest', file: model.origin.file, pointer: 'agent.command[0]', text: program }));
  for (const g of model.grants.exec) out.push(fsRequest(agent, 'exec', g.path, model.home, labels, find, phase, g.source));
  for (const g of model.grants.net) out.push(connectRequest(agent, g.host, g.port, labels, phase, false, g.source));
  for (const c of model.egress.consent?.hosts ?? []) {
    // A consent entry is a grant a person may give later: policy bounds it now.
    if (c.port !== 'any' && c.hostKind !== 'any') out.push(connectRequest(agent, c.host, c.port, labels, phase, true, c.source));
  }
  return out;
}
