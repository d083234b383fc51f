/**
 * Golden bwrap command lines: the box each shipped agent profile gets on the process
 * runtime, as root and without root, from fixed host facts (paths, tools, merged /usr),
 * pinned as text. A change to the box shows up here as a reviewed diff (`vitest -u`).
 */
import { describe, expect, it } from 'vitest';
import { loadManifest } from '../../src/manifest/load.js';
import { buildLaunchPlan, type LaunchFacts } from '../../src/box/bwrap.js';
import type { PathKind } from '../../src/box/common.js';
import { effectiveFs } from '../../src/model/grants.js';
import type { Model } from '../../src/model/types.js';
import { shellLine } from '../../src/escape/shell.js';
import { ctx, shippedAgents } from '../helpers/load.js';

/** What a Debian 12 host shows at the paths the plan asks about (every grant exists as a folder). */
const kind = (p: string): PathKind => (/^\/etc\/(shadow|gshadow|sudoers)$/.test(p) ? 'file' : p === '/etc/sudoers.d' ? 'dir' : 'missing');

function facts(model: Model, root: boolean): LaunchFacts {
  const uid = root ? model.agent.uid : 1000;
  return {
    root,
    uid,
    gid: uid,
    topLinks: { '/bin': 'usr/bin', '/sbin': 'usr/sbin', '/lib': 'usr/lib', '/lib64': 'usr/lib64' },
    kind,
    session: { dir: '/var/lib/agentbox/sessions/golden-00000000', run: root ? '/run/agentbox/golden-00000000' : '/var/lib/agentbox/run/golden-00000000' },
    landlockHelper: '/opt/agentbox/dist/native/landlock-exec',
    cgroupProcs: root ? ['/sys/fs/cgroup/pids/agentbox/golden-00000000/cgroup.procs'] : [],
    cwd: '/home/user',
    term: 'xterm-256color',
    socat: '/usr/bin/socat',
    setpriv: '/usr/bin/setpriv',
    unshare: '/usr/bin/unshare',
    bwrap: '/usr/bin/bwrap',
    grants: effectiveFs(model).fs.map((g, i, all) => ({ path: g.path, access: g.access, kind: 'dir' as const, ...(g.access === 'write' ? { layer: all.slice(0, i).filter((x) => x.access === 'write').length } : {}) })),
    socketMasks: [],
    tmpBytes: 4 * 1024 ** 3,
    memfdNoexec: root,
  };
}

/** One option and its values per line, as a reviewer reads a command line. */
function grouped(argv: readonly string[]): string {
  const lines: string[][] = [];
  for (const a of argv) {
    if (lines.length === 0 || a.startsWith('-')) lines.push([a]);
    else lines.at(-1)!.push(a);
  }
  return lines.map((l) => shellLine(l)).join(' \\\n  ');
}

describe('golden bwrap command lines of the shipped profiles', () => {
  for (const agent of shippedAgents()) {
    const name = agent.file.split('/').pop()!.replace(/\.yaml$/, '');
    for (const root of [true, false]) {
      it(`${name} (${root ? 'root' : 'unprivileged'})`, async () => {
        const r = loadManifest(agent, ctx());
        expect(r.errors).toEqual([]);
        const m = r.model!;
        const plan = buildLaunchPlan(m, m.agent.command, facts(m, root));
        const text = [
          `# ${name}, ${root ? 'as root' : 'without root'}: controls ${plan.controls.join(', ')}`,
          grouped(plan.argv),
          `# environment`,
          ...plan.env.map(([k, v]) => `${k}=${v}`),
          `# layers: ${plan.layers.map((l) => l.path).join(', ') || 'none'}`,
          '',
        ].join('\n');
        await expect(text).toMatchFileSnapshot(`./bwrap/${name}-${root ? 'root' : 'user'}.txt`);
      });
    }
  }
});
