/**
 * Attack: a manifest author (or whoever can edit one) smuggles syntax into a generated
 * artifact — a newline that starts a new systemd directive, a quote that closes an
 * AppArmor path and adds `/** rwx,`, a `}` that ends the profile, `$()` or backticks,
 * globs that widen a grant, `..` that climbs out of one, a comma that ends a rule.
 *
 * Defence under test: every manifest is either rejected with a located error, or every
 * artifact passes its real parser (systemd-analyze verify, apparmor_parser,
 * iptables-restore/ip6tables-restore in a network namespace, nft -c) and contains no
 * rule beyond the manifest's grants and the template's fixed baseline. The
 * "no extra rule" check reads each artifact with a test-side reader of that syntax,
 * independent of the generators' escapers.
 *
 * The run is in two phases so the real parsers can work in parallel: fast-check
 * generates and checks the pure properties (and would shrink a failure there), then
 * every accepted case's artifacts go through the real parsers; a failure names the
 * case's manifest.
 */
import { AGENTBOX_BIN } from '../../src/generate/linux/systemd.js';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadManifest } from '../../src/manifest/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { effectiveFs, viaProxy } from '../../src/model/grants.js';
import { generate, type Artifact } from '../../src/generate/index.js';
import { agentEnvironment } from '../../src/model/environment.js';
import type { Model } from '../../src/model/types.js';
import { ctx, templates } from '../helpers/load.js';
import { apparmorCheck, iptablesTest, NetNs, nftCheck, systemdVerify } from '../helpers/real-parsers.js';
import { readApparmorRules, readIptablesRules, readNftRules, readSystemdUnit } from '../helpers/readers.js';
import { readPowerShell } from '../helpers/powershell.js';
import { checkPowerShell, pythonParse } from '../integration/windows-macos.test.js';
import { execa } from 'execa';

const RUNS = Number(process.env.AGENTBOX_PROPERTY_RUNS ?? 5000);
/** The spine's acceptance asks for at least 1,000 accepted cases per target in CI. */
const MIN_ACCEPTED = Number(process.env.AGENTBOX_PROPERTY_MIN_ACCEPTED ?? 1000);

// ---------- arbitraries: manifests with hostile strings in every field ----------

const hostile = fc.constantFrom(
  '"', "'", '\n', '\r', '\t', '\u0000', '}', '{', ',', '$(id)', '`id`', '*', '**', '?', '[a]', '^', '\\', ';', '|', '<', '>', ':',
  '%', '%h', '$HOME', '$$', '#', ' ', '@{HOME}', ' rwx,', '\u202e', '\u2028', 'é', '日本', '&', '(', ')', '=', '+', '!', '~', '..',
);
/** Characters a path may contain that still mean something in some target syntax: they must be escaped. */
const special = fc.constantFrom("'", ' ', '(', ')', '&', ',', '=', '+', '!', '%', '%h', '#', '~', '@', 'é', '日本', ' rwx', '@HOME');
const safeSeg = fc.stringMatching(/^[A-Za-z0-9._-]{1,8}$/).filter((s) => s !== '.' && s !== '..');
const segment = fc.oneof(
  { weight: 30, arbitrary: safeSeg },
  { weight: 8, arbitrary: fc.tuple(safeSeg, special, safeSeg).map(([a, h, b]) => `${a}${h}${b}`) },
  { weight: 1, arbitrary: fc.tuple(safeSeg, hostile, safeSeg).map(([a, h, b]) => `${a}${h}${b}`) },
  { weight: 1, arbitrary: fc.constant('..') },
);
const path = fc
  .tuple(fc.oneof({ weight: 20, arbitrary: fc.constantFrom('~/', '/srv/', '/home/user/', '/opt/app/', '/data/') }, { weight: 1, arbitrary: fc.constantFrom('/', '~', 'rel/', '/etc/') }), fc.array(segment, { minLength: 1, maxLength: 3 }))
  .map(([p, segs]) => `${p}${segs.join('/')}`);
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
const tld = fc.constantFrom('com', 'io', 'example', 'internal', 'xn--p1ai');
const host = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), tld).map(([l, t]) => [...l, t].join('.')) },
  { weight: 2, arbitrary: fc.tuple(fc.array(label, { minLength: 1, maxLength: 2 }), tld).map(([l, t]) => `*.${[...l, t].join('.')}`) },
  { weight: 1, arbitrary: fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join('.')) },
  { weight: 3, arbitrary: fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.')) },
  { weight: 2, arbitrary: fc.constantFrom('[::1]', '[2001:db8::1]', '[fd00::5:1]', '[::ffff:10.0.0.1]') },
  { weight: 1, arbitrary: fc.tuple(label, hostile, label).map(([a, h, b]) => `${a}${h}${b}.com`) },
);
const port = fc.oneof({ weight: 30, arbitrary: fc.integer({ min: 1, max: 65535 }).map(String) }, { weight: 1, arbitrary: fc.constantFrom('0', '65536', 'x', '443"', '') });
const grant = fc.oneof(
  fc.tuple(fc.constantFrom('read', 'write'), path).map(([a, p]) => `fs:${a}:${p}`),
  fc.tuple(host, port).map(([h, p]) => `net:connect:${h}:${p}`),
  path.map((p) => `exec:${p}`),
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('fs:delete:', 'net:listen:', 'shell:', ''), fc.string()).map(([a, b]) => a + b) },
).map((g) => g);
const grantWeighted = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom('read', 'write'), path).map(([a, p]) => `fs:${a}:${p}`) },
  { weight: 4, arbitrary: fc.tuple(host, port).map(([h, p]) => `net:connect:${h}:${p}`) },
  { weight: 2, arbitrary: path.map((p) => `exec:${p}`) },
  { weight: 1, arbitrary: grant },
);
const deny = fc.oneof(
  path.map((p) => `fs:${p}`),
  path.map((p) => `fs:write:${p}`),
  host.map((h) => `net:${h}`),
  fc.tuple(host, port).map(([h, p]) => `net:connect:${h}:${p}`),
  path.map((p) => `exec:${p}`),
);
const name = fc.oneof({ weight: 40, arbitrary: fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/) }, { weight: 1, arbitrary: fc.tuple(label, hostile).map(([a, h]) => `a${a}${h}`) });
const program = fc.tuple(fc.constantFrom('/usr/local/bin/', '/opt/agent/bin/', '/home/user/bin/', '/srv/tools/', ''), fc.oneof({ weight: 4, arbitrary: safeSeg }, { weight: 1, arbitrary: segment })).map(([d, s]) => d + s);
const arg = fc.oneof(
  { weight: 10, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 5, arbitrary: fc.tuple(fc.string({ maxLength: 4 }), fc.constantFrom('"', "'", '$(id)', '`id`', '%h', '$HOME', '$$', '\\', ';', ' ', '}', '#'), fc.string({ maxLength: 4 })).map((x) => x.join('')) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 4 }), hostile, fc.string({ maxLength: 4 })).map((x) => x.join('')) },
);
const envValue = arg;
/** Characters a Windows program path may hold that PowerShell or XML would give meaning to: escaped. */
const winEscaped = fc.constantFrom("'", '\u2018', '\u2019', '\u201a', '\u201b', '$(calc)', '`', ';', '&', '%PATH%', '{', '}', '@', '#', ' ', 'é', '&amp;', ']]>', '--');
/** Characters the manifest refuses in a Windows path: rejected with a located error. */
const winRefused = fc.constantFrom('"', '*', '|', '\n', '<');
const winProgram = fc.option(
  fc.tuple(
    fc.oneof({ weight: 12, arbitrary: fc.constantFrom('C:\\Program Files\\', 'D:\\tools\\') }, { weight: 1, arbitrary: fc.constant('relative\\') }),
    safeSeg,
    fc.oneof({ weight: 10, arbitrary: winEscaped }, { weight: 1, arbitrary: winRefused }, { weight: 3, arbitrary: fc.constant('') }),
    safeSeg,
  ).map(([d, a, h, b]) => `${d}${a}${h}${b}.exe`),
  { nil: undefined },
);
const bundleId = fc.option(
  fc.oneof({ weight: 12, arbitrary: fc.tuple(label, label).map(([a, b]) => `com.${a}.${b}`) }, { weight: 1, arbitrary: fc.tuple(label, fc.oneof(winEscaped, winRefused)).map(([a, h]) => `com.${a}${h}.x`) }),
  { nil: undefined },
);
const manifest = fc.record(
  {
    name,
    extends: fc.constantFrom([], [], ['organizer'], ['organizer'], ['organizer'], ['editor'], ['viewer']),
    command: fc.tuple(program, fc.array(arg, { maxLength: 4 })).map(([p, a]) => [p, ...a]),
    winProgram,
    bundleId,
    env: fc.dictionary(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,6}$/), envValue, { maxKeys: 3 }),
    capabilities: fc.array(grantWeighted, { maxLength: 5 }),
    deny: fc.array(deny, { maxLength: 3 }),
    ttl: fc.option(fc.oneof({ weight: 9, arbitrary: fc.constantFrom('30s', '10m', '1h', '1h30m', '90s') }, { weight: 1, arbitrary: fc.constantFrom('2d', '0s', '25h') }), { nil: undefined }),
    limits: fc.option(fc.record({ pids: fc.integer({ min: 1, max: 4096 }), memory: fc.constantFrom('64MiB', '2GiB', '1.5GiB', '1k') }), { nil: undefined }),
  },
  { requiredKeys: ['name', 'extends', 'command', 'capabilities', 'deny', 'env'] },
);

type M = typeof manifest extends fc.Arbitrary<infer T> ? T : never;

function toYaml(m: M): string {
  return stringify({
    apiVersion: 'agentbox/v1',
    kind: 'Agent',
    metadata: { name: m.name },
    ...(m.extends.length ? { extends: m.extends } : {}),
    agent: { command: m.command, env: m.env, ...(m.winProgram ? { windows: { program: m.winProgram } } : {}), ...(m.bundleId ? { macos: { bundleId: m.bundleId } } : {}) },
    capabilities: m.capabilities,
    deny: m.deny,
    ...(m.ttl ? { ttl: m.ttl } : {}),
    ...(m.limits ? { limits: m.limits } : {}),
  });
}

// ---------- the "no rule beyond the grants" check, per syntax ----------

function expectOnlyGranted(model: Model, artifacts: Artifact[]): void {
  const byControl = (c: string) => artifacts.find((a) => a.control === c)!.content;
  const { fs } = effectiveFs(model);
  const programs = [model.agent.command[0]!, ...model.grants.exec.map((g) => g.path)];
  const proxy = model.grants.net.some(viaProxy);

  // systemd
  const unit = readSystemdUnit(byControl('systemd'), templates['linux/agent.service']!);
  expect(unit.sections).toEqual(['Unit', 'Service']);
  expect(unit.execStart).toEqual(model.agent.command);
  expect(unit.environment).toEqual(agentEnvironment(model, proxy ? `http://127.0.0.1:${model.egress.proxyPort}` : undefined).map(([k, v]) => `${k}=${v}`));
  for (const [key, paths] of Object.entries(unit.paths)) {
    const allowed =
      key === 'BindPaths' ? fs.filter((g) => g.access === 'write').map((g) => g.path)
      : key === 'BindReadOnlyPaths' ? [...fs.filter((g) => g.access === 'read').map((g) => g.path), ...programs]
      : key === 'InaccessiblePaths' ? model.denies.fs.filter((d) => d.access === 'all').map((d) => d.path)
      : key === 'ReadOnlyPaths' ? model.denies.fs.filter((d) => d.access === 'write').map((d) => d.path)
      : key === 'ExecPaths' ? programs
      : key === 'NoExecPaths' ? model.denies.exec.map((d) => d.path)
      : [];
    for (const p of paths) expect(allowed, `${key}=${p}`).toContain(p);
  }
  for (const a of unit.ipAllow) expect([...(proxy ? ['127.0.0.1', '::1'] : []), ...model.grants.net.filter((g) => !viaProxy(g)).map((g) => g.host)]).toContain(a);
  expect(unit.privateNetwork).toBe(model.grants.net.length === 0);
  // Bound to its firewall unit always, and to agentboxd when its egress goes through the proxy.
  const firewall = `agentbox-${model.name}-firewall.service`;
  expect(unit.unitDeps).toEqual(proxy ? { Requires: ['agentboxd.service', firewall], BindsTo: ['agentboxd.service'], After: ['agentboxd.service', firewall] } : { Requires: [firewall], After: [firewall] });
  // agentboxd's config is the model as data, nothing more.
  const config = artifacts.find((a) => a.control === 'daemon-config');
  expect(config !== undefined).toBe(proxy);
  if (config) expect(JSON.parse(config.content).model).toEqual(JSON.parse(JSON.stringify(model)));

  // AppArmor
  const aa = readApparmorRules(byControl('apparmor'), templates['linux/agent.apparmor']!);
  for (const r of aa.rules) {
    if (r.deny) {
      const ok = model.denies.fs.some((d) => d.path === r.path) || model.denies.exec.some((d) => d.path === r.path);
      expect(ok, `deny ${r.path}`).toBe(true);
    } else if (r.perms.includes('x')) {
      expect(programs, `exec ${r.path}`).toContain(r.path);
    } else {
      const g = fs.find((x) => x.path === r.path);
      expect(g, `allow ${r.path}`).toBeDefined();
      if (r.perms.includes('w')) expect(g!.access).toBe('write');
    }
  }
  expect(aa.network).toEqual(model.grants.net.length > 0 ? ['inet stream', 'inet6 stream'] : []);

  // iptables, ip6tables, nft: every accept is a granted literal address or the proxy.
  const accepts = new Set([
    ...model.grants.net.filter((g) => !viaProxy(g)).map((g) => `${g.host}:${g.port}`),
    ...(proxy ? [`127.0.0.1:${model.egress.proxyPort}`, `::1:${model.egress.proxyPort}`] : []),
  ]);
  for (const [content, fam] of [[byControl('iptables'), 4], [byControl('ip6tables'), 6]] as const) {
    const rules = readIptablesRules(content);
    for (const a of rules.accepts) expect(accepts, `iptables accept ${a}`).toContain(a);
    expect(rules.otherTargets.every((t) => t === 'REJECT')).toBe(true);
    expect(rules.chains).toHaveLength(1);
    expect(rules.endsWithDefaultReject, `ip${fam} default`).toBe(true);
  }
  const nft = readNftRules(byControl('nftables'));
  for (const a of nft.accepts) expect(accepts, `nft accept ${a}`).toContain(a);
  expect(nft.skuidGuard).toBe(String(model.agent.uid));
  expect(nft.endsWithDefaultReject).toBe(true);
}

// ---------- the run ----------

interface Accepted {
  yaml: string;
  model: Model;
  artifacts: Artifact[];
  other: Artifact[];
}

let ns: NetNs;
const work = mkdtempSync(join(tmpdir(), 'agentbox-prop-'));
beforeAll(async () => {
  ns = await NetNs.create('abprop');
});
afterAll(async () => ns?.destroy());

async function pool<T>(items: T[], width: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

describe('property: hostile manifests cannot inject into any Linux artifact', () => {
  const accepted: Accepted[] = [];
  let rejected = 0;

  it(`pure phase: ${RUNS} manifests are rejected with a located error or generate only granted rules`, () => {
    fc.assert(
      fc.property(manifest, (m) => {
        const yaml = toYaml(m);
        const r = loadManifest({ file: 'hostile.yaml', text: yaml }, ctx());
        if (!r.model) {
          expect(r.errors.length).toBeGreaterThan(0);
          for (const e of r.errors) {
            expect(e.file).toBe('hostile.yaml');
            expect(e.pointer !== '' || e.line !== undefined, `unlocated: ${e.message}`).toBe(true);
            expect(e.message.length).toBeGreaterThan(10);
          }
          rejected++;
          return;
        }
        const artifacts = generate(r.model, buildPlan(r.model, ['linux']), templates);
        expectOnlyGranted(r.model, artifacts);
        const other = generate(r.model, buildPlan(r.model, ['windows', 'macos'], ['intune', 'jamf']), templates);
        accepted.push({ yaml, model: r.model, artifacts, other });
      }),
      { numRuns: RUNS },
    );
    console.log(`property cases: ${accepted.length} accepted, ${rejected} rejected with a located error`);
    // The property says nothing if one side is empty.
    expect(accepted.length).toBeGreaterThanOrEqual(MIN_ACCEPTED);
    expect(rejected).toBeGreaterThanOrEqual(RUNS / 10);
  });

  it('real-parser phase: every accepted case passes systemd-analyze, apparmor_parser, iptables-restore, ip6tables-restore and nft', async () => {
    expect(accepted.length).toBeGreaterThanOrEqual(MIN_ACCEPTED);
    const failures: string[] = [];
    await pool(accepted, 4, async (c, i) => {
      const dir = join(work, String(i));
      const files: Record<string, string> = {};
      for (const a of c.artifacts) {
        const f = join(dir, a.path);
        mkdirSync(dirname(f), { recursive: true });
        writeFileSync(f, a.content);
        files[a.control] = f;
      }
      const units = [files.systemd!, files['firewall-unit']!, ...(files['daemon-unit'] ? [files['daemon-unit']] : [])];
      const verdicts = {
        systemd: await systemdVerify(units, [c.model.agent.command[0]!, AGENTBOX_BIN]),
        apparmor: await apparmorCheck(files.apparmor!),
        iptables: await iptablesTest(ns, files.iptables!, 4),
        ip6tables: await iptablesTest(ns, files.ip6tables!, 6),
        nftables: await nftCheck(files.nftables!),
      };
      for (const [control, v] of Object.entries(verdicts)) {
        if (!v.ok) failures.push(`${control} rejected case ${i}:\n${v.output}\n--- manifest ---\n${c.yaml}`);
      }
    });
    expect(failures.slice(0, 3).join('\n\n')).toBe('');
    console.log(`real parsers: ${accepted.length} cases × 7 artifacts accepted`);
  }, 900_000);

  it('Windows and macOS: every accepted case parses (PowerShell grammar, XML, plist, bash -n), runs only template commands, and carries hostile values literally', async () => {
    expect(accepted.length).toBeGreaterThanOrEqual(MIN_ACCEPTED);
    const withProgram = accepted.filter((c) => c.model.agent.windows.program !== undefined);
    const withBundle = accepted.filter((c) => c.model.agent.macos.bundleId !== undefined);
    expect(withProgram.length).toBeGreaterThan(accepted.length / 4);
    expect(withBundle.length).toBeGreaterThan(accepted.length / 4);
    const files: string[] = [];
    const expectFile: Record<string, { program?: string; bundle?: string }> = {};
    for (const [i, c] of accepted.entries()) {
      await checkPowerShell(c.other, `case ${i}\n${c.yaml}`);
      const fw = c.other.find((a) => a.control === 'windows-firewall')!;
      if (c.model.agent.windows.program) expect((await readPowerShell(fw.content)).strings, c.yaml).toContain(c.model.agent.windows.program);
      for (const a of c.other.filter((x) => x.control === 'wdac-policy' || x.control === 'pppc')) {
        if (a.path.startsWith('intune/') || a.path.startsWith('jamf/')) continue;
        const f = join(work, `o${i}`, a.path.split('/').pop()!);
        mkdirSync(dirname(f), { recursive: true });
        writeFileSync(f, a.content);
        files.push(f);
        expectFile[f] = a.control === 'pppc' ? { bundle: c.model.agent.macos.bundleId ?? `com.agentbox.${c.model.name}` } : { program: c.model.agent.windows.program };
      }
    }
    const parsed = await pythonParse(files);
    for (const f of files) {
      const e = expectFile[f]!;
      expect(parsed[f]!.root, `${f}\n${readFileSync(f, 'utf8').slice(0, 400)}`).not.toMatch(/^PARSE ERROR/);
      if (e.bundle !== undefined) expect(parsed[f]!.identifier, f).toBe(e.bundle);
      else {
        expect(parsed[f]!.root).toBe('SiPolicy');
        expect(parsed[f]!.filePath ?? undefined, f).toBe(e.program);
      }
    }
    const shells = accepted.flatMap((c) => c.other.filter((a) => a.path.endsWith('.sh') && a.path.startsWith('macos/')).map((a) => a.content));
    const r = await execa('bash', ['-c', 'for f in "$@"; do bash -n "$f" || exit 1; done', 'check', ...shells.map((t, i) => {
      const f = join(work, `sh${i}.sh`);
      writeFileSync(f, t);
      return f;
    })], { reject: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    console.log(`windows/macos: ${accepted.length} cases; ${withProgram.length} with a hostile-capable Windows program, ${withBundle.length} with a bundle id`);
  }, 900_000);
});
