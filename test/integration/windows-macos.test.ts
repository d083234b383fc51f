/**
 * The Windows and macOS artifacts, checked by real parsers: a PowerShell grammar
 * (zero error nodes, and no command the template did not put there), XML and plist
 * parsers (Python's), bash -n, and the TCC check script run against real sqlite TCC.db
 * fixtures built with macOS's `access` schema (../shared/fixtures).
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadManifest } from '../../src/manifest/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { generate, type Artifact } from '../../src/generate/index.js';
import { ctx, model, ROOT, shippedAgents, templates } from '../helpers/load.js';
import { readPowerShell, templateCommands } from '../helpers/powershell.js';

const TEMPLATE_OF: Record<string, string> = {
  'windows-firewall': 'windows/firewall.ps1',
  'windows-acl': 'windows/acl.ps1',
  'wdac-deploy': 'windows/wdac.ps1',
  'windows-rollback': 'windows/rollback.ps1',
  'intune-install': 'windows/intune-install.ps1',
  'intune-detect': 'windows/intune-detect.ps1',
};

function all(): { label: string; artifacts: Artifact[] }[] {
  return shippedAgents().flatMap((a) =>
    [undefined, ['viewer']].map((p) => {
      const m = loadManifest(a, ctx(p ? { profileOverride: p } : {})).model!;
      return { label: `${a.file}${p ? ' viewer' : ''}`, artifacts: generate(m, buildPlan(m, ['windows', 'macos'], ['intune', 'jamf']), templates) };
    }),
  );
}

export async function checkPowerShell(artifacts: Artifact[], label: string): Promise<void> {
  for (const a of artifacts.filter((x) => x.path.endsWith('.ps1'))) {
    const r = await readPowerShell(a.content);
    expect(r.errors, `${label} ${a.path}`).toEqual([]);
    const allowed = await templateCommands(templates[TEMPLATE_OF[a.control]!]!);
    for (const c of r.commands) expect(allowed, `${label} ${a.path}: command ${c}`).toContain(c);
  }
}

/** Parses XML and plist files with Python's parsers; returns per-file facts. */
export async function pythonParse(files: string[]): Promise<Record<string, { root: string; children?: string[]; filePath?: string; payloadType?: string; services?: Record<string, string>; identifier?: string }>> {
  const script = `
import json, sys, plistlib, xml.etree.ElementTree as E
out = {}
for f in sys.argv[1:]:
  try:
    if f.endswith('.mobileconfig'):
        p = plistlib.load(open(f, 'rb')); c = p['PayloadContent'][0]
        out[f] = {'root': 'plist', 'payloadType': c['PayloadType'], 'services': {k: v[0]['Authorization'] for k, v in c['Services'].items()}, 'identifier': next(iter(c['Services'].values()))[0]['Identifier']}
    else:
        r = E.parse(f).getroot(); ns = '{urn:schemas-microsoft-com:sipolicy}'
        allow = r.find(ns + 'FileRules/' + ns + 'Allow')
        out[f] = {'root': r.tag.replace(ns, ''), 'children': [c.tag.replace(ns, '') for c in r], 'filePath': allow.get('FilePath') if allow is not None else None}
  except Exception as e:
    out[f] = {'root': 'PARSE ERROR: ' + str(e)}
print(json.dumps(out))`;
  const r = await execa('python3', ['-c', script, ...files]);
  return JSON.parse(String(r.stdout));
}

const SIPOLICY_REQUIRED = ['VersionEx', 'PlatformID', 'PolicyID', 'BasePolicyID', 'Rules', 'EKUs', 'FileRules', 'Signers', 'SigningScenarios', 'UpdatePolicySigners', 'CiSigners', 'HvciOptions'];

describe('Windows and macOS artifacts of the shipped profiles', () => {
  it('every .ps1 parses with zero errors and runs only the template\'s commands', async () => {
    for (const c of all()) await checkPowerShell(c.artifacts, c.label);
  }, 60_000);

  it('the WDAC policy is a SiPolicy with the required elements; the profile is a TCC PPPC plist', async () => {
    const work = mkdtempSync(join(tmpdir(), 'agentbox-winmac-'));
    const files: string[] = [];
    for (const c of all()) {
      for (const a of c.artifacts.filter((x) => x.control === 'wdac-policy' || x.control === 'pppc')) {
        const f = join(work, String(files.length), a.path.split('/').pop()!);
        mkdirSync(dirname(f), { recursive: true });
        writeFileSync(f, a.content);
        files.push(f);
      }
    }
    const parsed = await pythonParse(files);
    for (const f of files) {
      const p = parsed[f]!;
      if (f.endsWith('.xml')) {
        expect(p.root).toBe('SiPolicy');
        for (const e of SIPOLICY_REQUIRED) expect(p.children, `${f} ${e}`).toContain(e);
      } else {
        expect(p.payloadType).toBe('com.apple.TCC.configuration-profile-policy');
        expect(p.services).toMatchObject({ ScreenCapture: 'Deny', Accessibility: 'Deny', SystemPolicyAllFiles: 'Deny' });
      }
    }
    const cowork = Object.entries(parsed).find(([f]) => f.endsWith('agentbox-cowork.mobileconfig'))![1];
    expect(cowork).toMatchObject({ identifier: 'com.anthropic.claudefordesktop', services: { SystemPolicyDocumentsFolder: 'Allow' } });
    const coworkXml = Object.entries(parsed).find(([f]) => f.endsWith('agentbox-cowork-wdac.xml'))![1];
    expect(coworkXml.filePath).toBe('C:\\Program Files\\Claude\\claude.exe');
  }, 60_000);

  it('shell scripts pass bash -n', async () => {
    for (const c of all()) {
      for (const a of c.artifacts.filter((x) => x.path.endsWith('.sh'))) {
        const r = await execa('bash', ['-n'], { input: a.content, reject: false });
        expect(r.exitCode, `${c.label} ${a.path}: ${r.stderr}`).toBe(0);
      }
    }
  });
});

describe('the TCC check against real TCC.db fixtures', () => {
  const schema = readFileSync(join(ROOT, '..', 'shared', 'fixtures', 'tcc-access-schema.sql'), 'utf8');
  const m = model(`apiVersion: agentbox/v1
kind: Agent
metadata: { name: tcctest }
extends: [organizer]
agent: { command: [/usr/bin/true], macos: { bundleId: com.example.agent } }
capabilities: [fs:read:~/Documents, fs:write:~/Desktop/out]
`);
  const script = generate(m, buildPlan(m, ['macos']), templates).find((a) => a.control === 'tcc-check')!.content;
  const work = mkdtempSync(join(tmpdir(), 'agentbox-tcc-'));
  const check = join(work, 'check.sh');
  writeFileSync(check, script, { mode: 0o755 });

  async function db(name: string, rows: [string, string, number][]): Promise<string> {
    const f = join(work, `${name}.db`);
    const inserts = rows.map(([service, client, auth]) => `INSERT INTO access (service, client, client_type, auth_value, auth_reason, auth_version) VALUES ('${service}', '${client}', 0, ${auth}, 4, 1);`).join('\n');
    await execa('sqlite3', [f], { input: `${schema}\n${inserts}\n` });
    return f;
  }

  it('a clean database passes (grants the manifest implies, denials, other apps)', async () => {
    const user = await db('clean-user', [
      ['kTCCServiceSystemPolicyDocumentsFolder', 'com.example.agent', 2],
      ['kTCCServiceSystemPolicyDesktopFolder', 'com.example.agent', 2],
      ['kTCCServiceScreenCapture', 'com.example.agent', 0],
      ['kTCCServiceScreenCapture', 'com.other.app', 2],
    ]);
    const sys = await db('clean-system', [['kTCCServiceSystemPolicyAllFiles', 'com.other.app', 2]]);
    const r = await execa(check, ['--db', user, '--db', sys], { reject: false });
    expect(r.exitCode, String(r.stdout) + String(r.stderr)).toBe(0);
    expect(String(r.stdout)).toMatch(/no TCC drift for com\.example\.agent/);
  });

  it('a drifted database fails, naming every drifting service', async () => {
    const user = await db('drift-user', [
      ['kTCCServiceSystemPolicyDocumentsFolder', 'com.example.agent', 2],
      ['kTCCServiceScreenCapture', 'com.example.agent', 2],
      ['kTCCServiceMicrophone', 'com.example.agent', 3],
    ]);
    const sys = await db('drift-system', [['kTCCServiceSystemPolicyAllFiles', 'com.example.agent', 2]]);
    const r = await execa(check, ['--db', user, '--db', sys], { reject: false });
    expect(r.exitCode).toBe(1);
    const out = String(r.stdout);
    expect(out).toMatch(/kTCCServiceScreenCapture \(in .*drift-user\.db\)/);
    expect(out).toMatch(/kTCCServiceMicrophone/);
    expect(out).toMatch(/kTCCServiceSystemPolicyAllFiles \(in .*drift-system\.db\)/);
    expect(out).not.toMatch(/DocumentsFolder/);
  });

  it('an unreadable database is exit 2, not a pass', async () => {
    const r = await execa(check, ['--db', join(work, 'missing.db')], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(existsSync(join(work, 'missing.db'))).toBe(false);
  });
});
