/**
 * Every artifact of every shipped profile (and of hand-written manifests covering the
 * awkward cases) passes the real parser for its syntax, and the systemd unit's exposure
 * score stays within the bounds the spine promises.
 */
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadManifest } from '../../src/manifest/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { generate, type Artifact } from '../../src/generate/index.js';
import type { Model } from '../../src/model/types.js';
import { ctx, shippedAgents, templates } from '../helpers/load.js';
import { AGENTBOX_BIN } from '../../src/generate/linux/systemd.js';
import { apparmorCheck, iptablesTest, NetNs, nftCheck, systemdExposure, systemdVerify } from '../helpers/real-parsers.js';

const handWritten: Record<string, string> = {
  'literal-addresses': `apiVersion: agentbox/v1
kind: Agent
metadata: { name: literal-addresses }
extends: [organizer]
agent: { command: [/usr/bin/python3, -c, "print('a \\"quoted\\" $HOME %h arg')"], env: { GREETING: "50% \\"off\\" $USER" } }
capabilities:
  - fs:read:/srv/shared/Bob's Receipts (2024)
  - fs:write:~/Documents/Café & Co, #1
  - net:connect:127.0.0.1:8443
  - net:connect:[::1]:9443
  - net:connect:10.20.30.40:5432
  - net:connect:*.corp.example.com:443
deny:
  - fs:write:/srv/shared/Bob's Receipts (2024)/originals
  - net:connect:10.20.30.41:22
  - net:[2001:db8::7]
  - exec:/usr/bin/nc.openbsd
ttl: 90s
limits: { memory: 512MiB, pids: 64, cpus: 0.5 }
`,
  'no-extends': `apiVersion: agentbox/v1
kind: Agent
metadata: { name: no-extends }
agent: { command: [/opt/tools/bin/agent] }
capabilities:
  - fs:read:/opt/tools
`,
};

interface Case {
  label: string;
  model: Model;
  artifacts: Artifact[];
  dir: string;
}

const cases: Case[] = [];
let ns: NetNs;
const work = mkdtempSync(join(tmpdir(), 'agentbox-shipped-'));

beforeAll(async () => {
  ns = await NetNs.create();
  const sources = [
    ...shippedAgents().flatMap((a) => [undefined, ['viewer'], ['editor']].map((p) => ({ src: a, profile: p }))),
    ...Object.entries(handWritten).map(([k, text]) => ({ src: { file: `${k}.yaml`, text }, profile: undefined })),
  ];
  for (const { src, profile } of sources) {
    const r = loadManifest(src, ctx(profile ? { profileOverride: profile } : {}));
    if (!r.model) throw new Error(`${src.file}: ${r.errors.map((e) => e.message).join('; ')}`);
    const artifacts = generate(r.model, buildPlan(r.model, ['linux']), templates);
    const label = `${src.file}${profile ? ` --profile ${profile.join(',')}` : ''}`;
    const dir = join(work, String(cases.length));
    for (const a of artifacts) {
      mkdirSync(dirname(join(dir, a.path)), { recursive: true });
      writeFileSync(join(dir, a.path), a.content);
    }
    cases.push({ label, model: r.model, artifacts, dir });
  }
});
afterAll(async () => ns?.destroy());

const file = (c: Case, control: string) => join(c.dir, c.artifacts.find((a) => a.control === control)!.path);

describe('real parsers accept every artifact', () => {
  it('systemd-analyze verify: no diagnostics at all (the agent unit with the firewall unit and agentboxd it requires)', async () => {
    for (const c of cases) {
      const units = c.artifacts.filter((a) => a.path.endsWith('.service')).map((a) => join(c.dir, a.path));
      expect(units.length, c.label).toBe(c.artifacts.some((a) => a.control === 'daemon-unit') ? 3 : 2);
      const v = await systemdVerify(units, [c.model.agent.command[0]!, AGENTBOX_BIN]);
      expect(v, c.label).toEqual({ ok: true, output: '' });
    }
  });
  it('apparmor_parser -Q -K', async () => {
    for (const c of cases) expect(await apparmorCheck(file(c, 'apparmor')), c.label).toEqual({ ok: true, output: '' });
  });
  it('iptables-restore --test and ip6tables-restore --test (in a network namespace)', async () => {
    for (const c of cases) {
      expect(await iptablesTest(ns, file(c, 'iptables'), 4), c.label).toEqual({ ok: true, output: '' });
      expect(await iptablesTest(ns, file(c, 'ip6tables'), 6), c.label).toEqual({ ok: true, output: '' });
    }
  });
  it('nft -c -f', async () => {
    for (const c of cases) expect(await nftCheck(file(c, 'nftables')), c.label).toEqual({ ok: true, output: '' });
  });
});

describe('systemd-analyze security --offline=yes exposure', () => {
  it('at most 1.0 without network grants, at most 2.0 with them (a bare unit scores 9.6)', async () => {
    const scores: string[] = [];
    for (const c of cases) {
      const score = await systemdExposure(file(c, 'systemd'));
      const bound = c.model.grants.net.length > 0 ? 2.0 : 1.0;
      scores.push(`${score.toFixed(1)}  ${c.label}`);
      expect(score, `${c.label} scored ${score}`).toBeLessThanOrEqual(bound);
    }
    console.log(`exposure scores:\n${scores.join('\n')}`);
  });
  it('the bound is meaningful: a bare unit scores far above it', async () => {
    const bare = join(work, 'bare.service');
    writeFileSync(bare, '[Service]\nExecStart=/bin/true\n');
    expect(await systemdExposure(bare)).toBeGreaterThan(9);
  });
});
