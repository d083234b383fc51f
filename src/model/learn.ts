/**
 * The observation box of `agentbox learn`, as a model. Pure.
 *
 * From the agent's own model it keeps the program (and what it implies), the
 * environment, the denies (a preset's ~/.ssh stays hidden while learning) and the
 * literal address grants (a loopback API the manifest names). It adds:
 * - the whole home, through a throw-away overlay (reads see the home, writes land in the
 *   session's layer and are always reverted: snapshot is forced to revert);
 * - execution of the system's program folders, watched for what runs;
 * - the network through the proxy to any host, each connection recorded;
 * and drops the behaviour rules (learning is not enforcing). `extra`: what an earlier
 * round's box refused outside the home for want of a grant (actions/learn.ts repeats
 * the run with those granted, so the proposal covers what the agent does once they are). Nothing of this model is a
 * proposal: `manifest/propose.ts` builds that from what the session did.
 */
import type { FsGrant, ExecGrant, Model, RuleSource } from './types.js';

export const LEARN_POINTER = 'learn';

const source = (text: string): RuleSource => ({ origin: 'manifest', file: 'agentbox learn', pointer: LEARN_POINTER, text });

/** The program folders the observation box may run from (those that exist are watched). */
export const LEARN_PROGRAM_DIRS = ['/usr', '/opt'];

/** A use the previous round's box refused outside the home that no rule forbids: granted in the next round. */
export interface LearnExtra {
  access: 'read' | 'list' | 'exec';
  path: string;
}

export function learnModel(m: Model, existing: (path: string) => boolean, extra: readonly LearnExtra[] = []): Model {
  const home: FsGrant = { path: m.home, access: 'write', source: source('fs:write:~ (learn: the home, through a throw-away overlay)') };
  const implied = m.grants.fs.filter((g) => g.source.pointer === 'agent.command[0]');
  const programDirs = LEARN_PROGRAM_DIRS.filter(existing);
  const exec: ExecGrant[] = [
    ...m.grants.exec.filter((g) => g.implied !== undefined),
    ...programDirs.map((d) => ({ path: d, source: source(`exec:${d} (learn: every program, watched)`) })),
    ...extra.filter((x) => x.access === 'exec').map((x) => ({ path: x.path, source: source(`exec:${x.path} (learn: refused in an earlier round)`) })),
  ];
  const reads: FsGrant[] = extra.filter((x) => x.access !== 'exec').map((x) => ({ path: x.path, access: 'read', source: source(`fs:read:${x.path} (learn: refused in an earlier round)`) }));
  return {
    ...m,
    grants: {
      fs: [home, ...implied, ...reads],
      net: m.grants.net.filter((g) => g.hostKind === 'ipv4' || g.hostKind === 'ipv6'),
      exec,
    },
    runtime: { ...m.runtime, kind: 'process', snapshot: 'revert' },
    monitor: [],
    egress: { ...m.egress, learnAnyHost: true, consent: undefined },
    learn: { programDirs },
  };
}

/** True for a grant the observation box added (learn's home, program folders, any host). */
export const isLearnGrant = (s: RuleSource) => s.pointer === LEARN_POINTER && s.file === 'agentbox learn';
