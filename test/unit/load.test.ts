import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/manifest/diagnostics.js';
import { load, model, shippedAgents, ctx } from '../helpers/load.js';
import { loadManifest } from '../../src/manifest/load.js';

const base = (extra: string) => `apiVersion: agentbox/v1
kind: Agent
metadata: { name: t }
agent: { command: [/usr/bin/python3, agent.py] }
${extra}`;

describe('manifest loading', () => {
  it('every shipped agent profile is valid', () => {
    for (const a of shippedAgents()) {
      const r = loadManifest(a, ctx());
      expect(r.errors.map(formatDiagnostic), a.file).toEqual([]);
      expect(r.model?.extends.length).toBeGreaterThan(0);
    }
  });

  it('errors name the file, the line, the location and what is valid', () => {
    const r = load(base(`capabilities:\n  - fs:read:~/Documents\n  - fs:delete:/tmp\n`), {}, 'm.yaml');
    expect(r.model).toBeUndefined();
    expect(r.errors).toHaveLength(1);
    expect(formatDiagnostic(r.errors[0]!)).toBe('m.yaml:7:5 capabilities[1]: "fs:delete:/tmp": the fs action must be read or write (fs:read:PATH or fs:write:PATH)');
  });

  it('unknown keys are errors that point at the key and list valid ones', () => {
    const r = load(base('limts: { memory: 1GiB }\n'));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ pointer: 'limts', line: 5, column: 1 });
    expect(r.errors[0]!.message).toMatch(/unknown key "limts"; did you mean "limits"\?; valid keys here: .*limits/);
    const nested = load(base('runtime: { kind: process, snapshots: revert }\n'));
    expect(nested.errors[0]).toMatchObject({ pointer: 'runtime.snapshots' });
  });

  it('reports every error, not the first: schema errors, then what the rest of the document holds', () => {
    const r = load(base(`capabilities: [fs:read:rel/path, net:connect:*:443, exec:/bin/$(id)]\nttl: 2d\n`));
    expect(r.errors.map((e) => e.pointer)).toEqual(['ttl', 'capabilities[0]', 'capabilities[1]', 'capabilities[2]']);
    const r2 = load(base(`capabilities: [fs:read:rel/path, net:connect:*:443, exec:/bin/$(id)]\nttl: 48h\n`));
    expect(r2.errors.map((e) => e.pointer)).toEqual(['capabilities[0]', 'capabilities[1]', 'capabilities[2]', 'ttl']);
  });

  it('YAML syntax errors and duplicate keys are located', () => {
    expect(load('apiVersion: agentbox/v1\nkind: [\n').errors[0]).toMatchObject({ line: expect.any(Number), message: expect.stringMatching(/^YAML:/) });
    expect(load(base('ttl: 1m\nttl: 2m\n')).errors[0]!.message).toMatch(/each key may appear once/);
  });

  it('a preset is a ceiling: a grant beyond every extended preset is an error naming them', () => {
    const r = load(base('extends: [viewer]\ncapabilities: [fs:write:~/out]\n'));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toMatch(/exceeds the ceiling of preset viewer: viewer does not allow the agent to write files/);
    const net = load(base('extends: [viewer, editor]\ncapabilities: [net:connect:api.example.com:443]\n'));
    expect(net.errors[0]!.message).toMatch(/presets viewer, editor: none of them allows the agent to connect to the network.*organizer/);
    expect(load(base('extends: [viewer, editor]\ncapabilities: [fs:write:~/out]\n')).errors).toEqual([]);
  });

  it('a preset is a default: its denies arrive with it and win over grants', () => {
    const m = model(base('extends: [viewer]\ncapabilities: [fs:read:~/]\n'));
    expect(m.denies.fs.map((d) => d.path)).toContain('/home/user/.ssh');
    expect(m.denies.fs.find((d) => d.path === '/home/user/.ssh')!.source).toMatchObject({ origin: 'preset', preset: 'viewer' });
  });

  it('a grant a deny masks completely is a warning, not silence', () => {
    const r = load(base('extends: [viewer]\ncapabilities: [fs:read:~/.ssh/config]\n'));
    expect(r.errors).toEqual([]);
    expect(r.warnings[0]!.message).toMatch(/has no effect: fs:~\/.ssh \(preset viewer deny\[0\]\) denies it/);
  });

  it('--profile replaces extends and drops, loudly, grants beyond the new ceiling', () => {
    const cowork = shippedAgents().find((a) => a.file.endsWith('cowork.yaml'))!;
    const r = loadManifest(cowork, ctx({ profileOverride: ['viewer'] }));
    expect(r.errors).toEqual([]);
    expect(r.model!.extends.map((p) => p.name)).toEqual(['viewer']);
    expect(r.model!.grants.fs.every((g) => g.access === 'read')).toBe(true);
    expect(r.model!.grants.net).toEqual([]);
    expect(r.warnings.map((w) => w.message).join('\n')).toMatch(/"fs:write:~\/Documents\/Cowork" dropped[\s\S]*"net:connect:api.anthropic.com:443" dropped/);
  });

  it('unknown presets list the available ones', () => {
    expect(load(base('extends: [admin]\n')).errors[0]!.message).toBe('unknown preset "admin"; available presets: editor, organizer, viewer');
  });

  it('refuses overly broad and sandbox-defeating grants', () => {
    expect(load(base('capabilities: [fs:read:/]\n')).errors[0]!.message).toMatch(/whole file system/);
    expect(load(base('capabilities: [fs:write:/etc/cron.d]\n')).errors[0]!.message).toMatch(/system directory \/etc writable/);
    expect(load(base('capabilities: [fs:write:/usr]\n')).errors[0]!.message).toMatch(/system directory \/usr/);
    expect(load(base('capabilities: [fs:read:/etc/hosts]\n')).errors).toEqual([]);
  });

  it('a bare program name must be found on PATH, and arguments printable', () => {
    const r = load(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: [cowork, "a\\nb"] }\n`);
    expect(r.errors.map((e) => e.pointer)).toEqual(['agent.command[0]', 'agent.command[1]']);
    expect(r.errors[0]!.message).toMatch(/"cowork" was not found on PATH \(\/usr\/local\/sbin:.*\); install it or write its absolute path/);
    expect(load(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: [bin/cowork] }\n`).errors[0]!.message).toMatch(/is relative/);
  });

  it('names are a safe alphabet', () => {
    const r = load(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: "x\\"; rm -rf /" }\nagent: { command: [/bin/true] }\n`);
    expect(r.errors[0]).toMatchObject({ pointer: 'metadata.name', message: expect.stringMatching(/lowercase letters, digits and dashes/) });
  });

  it('defaults are stated in the model', () => {
    const m = model(base(''));
    expect(m.agent).toMatchObject({ user: 'agentbox', uid: 64000, env: {} });
    expect(m.runtime).toEqual({ kind: 'process', snapshot: 'revert', isolation: undefined });
    expect(m.ttlSeconds).toBeUndefined();
    expect(m.egress.proxyPort).toBe(3128);
  });

  it('the sha256 of the manifest bytes is recorded', () => {
    expect(model(base('')).origin.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(model(base('')).origin.sha256).not.toBe(model(base('ttl: 1m\n')).origin.sha256);
  });
});

describe('found by the property test', () => {
  it("a program path with ' is refused (systemd will not start such an ExecStart), other paths keep it", () => {
    const r = load(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: ["/srv/tools/bob's"] }\ncapabilities: ["fs:read:/srv/Bob's"]\n`);
    expect(r.errors.map((e) => e.pointer)).toEqual(['agent.command[0]']);
    expect(r.errors[0]!.message).toMatch(/systemd refuses a program path containing '/);
  });
  it('an empty argument is a valid argument', () => {
    expect(load(`apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: t }\nagent: { command: [/bin/echo, ""] }\n`).errors).toEqual([]);
  });
});

describe('found trying the spine as a new user', () => {
  it("root's home is a home: the shipped profiles load with HOME=/root", () => {
    for (const a of shippedAgents()) expect(loadManifest(a, ctx({ home: '/root' })).errors, a.file).toEqual([]);
  });
  it('a write grant on the whole home directory (or above it) is refused: it would allow startup-file persistence', () => {
    for (const g of ['fs:write:~', 'fs:write:~/', 'fs:write:/home']) {
      expect(load(base(`capabilities: ["${g}"]\n`)).errors[0]?.message, g).toMatch(/whole home directory \/home\/user writable/);
    }
    expect(load(base('capabilities: ["fs:read:~"]\n')).errors).toEqual([]);
  });
});

describe('egress governance keys', () => {
  it('consent, DLP and the upload threshold load into the model', () => {
    const m = model(base(`extends: [organizer]
egress:
  consent: { ask: ["assets.example.com:443", "*.example.org:443", "*"], timeout: 90s }
  dlp: { detectors: [private-key, payment-card], custom: [{ name: marker, marker: CONFIDENTIAL }, { name: proj, regex: "PRJ-[0-9]+", ignoreCase: true }] }
  maxUploadBytes: 10MiB
  uploadWindow: 5m
  onViolation: quarantine
`));
    expect(m.egress.consent).toEqual({
      timeoutSeconds: 90,
      maxQuestions: 20,
      hosts: [
        expect.objectContaining({ host: 'assets.example.com', hostKind: 'name', port: 443 }),
        expect.objectContaining({ host: '*.example.org', hostKind: 'wildcard', port: 443 }),
        expect.objectContaining({ host: '*', hostKind: 'any', port: 'any' }),
      ],
    });
    expect(m.egress.dlp).toEqual({ detectors: ['private-key', 'payment-card'], written: ['private-key', 'payment-card'], custom: [{ name: 'marker', marker: 'CONFIDENTIAL', ignoreCase: false }, { name: 'proj', regex: 'PRJ-[0-9]+', ignoreCase: true }], from: expect.any(String) });
    // The session-wide budget defaults to four destinations' worth.
    expect(m.egress).toMatchObject({ maxUploadBytes: 10 * 1024 * 1024, maxSessionUploadBytes: 40 * 1024 * 1024, uploadWindowSeconds: 300, onViolation: 'quarantine' });
    expect(model(base('egress: { consent: ask }\n')).egress.consent).toMatchObject({ timeoutSeconds: 60, hosts: [{ host: '*' }] });
  });

  it('each mistake is located and says what is valid', () => {
    const r = load(base(`extends: [viewer]
egress:
  consent: { ask: ["bad host:443", "h.example.com"], timeout: 2h }
  dlp: { custom: [{ name: a, regex: "(" }, { name: b, regex: "x*" }, { name: c }, { name: c, marker: M }] }
  uploadWindow: 10s
  onViolation: quarantine
`));
    const by = Object.fromEntries(r.errors.map((e) => [e.pointer, e.message]));
    expect(Object.keys(by).sort()).toEqual([
      'egress.consent',
      'egress.consent.ask[0]',
      'egress.consent.ask[1]',
      'egress.consent.timeout',
      'egress.dlp.custom[0].regex',
      'egress.dlp.custom[1].regex',
      'egress.dlp.custom[2]',
      'egress.dlp.custom[3].name',
      'egress.uploadWindow',
    ]);
    expect(by['egress.consent']).toMatch(/preset viewer does not allow/);
    expect(by['egress.consent.ask[1]']).toMatch(/HOST:PORT/);
    expect(by['egress.consent.timeout']).toMatch(/1h maximum/);
    expect(by['egress.dlp.custom[0].regex']).toMatch(/not a regular expression RE2 accepts/);
    expect(by['egress.dlp.custom[1].regex']).toMatch(/matches empty text/);
    expect(by['egress.dlp.custom[2]']).toMatch(/exactly one of regex/);
    expect(by['egress.dlp.custom[3].name']).toMatch(/used twice/);
    expect(by['egress.uploadWindow']).toMatch(/no effect without egress.maxUploadBytes/);
    expect(load(base('egress: { onViolation: block }\n')).errors[0]!.message).toMatch(/nothing to act on/);
    expect(load(base('egress: { dlp: {} }\n')).errors[0]!.message).toMatch(/names no detector/);
    expect(load(base('egress: { dlp: { detectors: [ssn] } }\n')).errors[0]!.pointer).toBe('egress.dlp.detectors[0]');
  });
});
