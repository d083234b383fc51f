/**
 * Manifest in three steps, returning data (never a throw for a user mistake):
 * parse (YAML + schema) → normalise (scopes, paths) → rules (presets, ceilings,
 * breadth). Pure: files and the file system arrive through `LoadContext`.
 */

import type { Diagnostic } from './diagnostics.js';
import { sha256Hex } from '../hash.js';
import { lexicalPath, normalisePath, isWithin, type PathResolver } from './normalise.js';
import { checkSchema, parseYaml, type ParsedDocument } from './parse.js';
import type { RawManifest } from './schema.js';
import { parseDeny, parseGrant, parseMemory, parseSize, parseTtl } from './scope.js';
import {
  DEFAULT_CONSENT_TIMEOUT_SECONDS,
  DEFAULT_CONSENT_MAX_QUESTIONS,
  DEFAULT_PROXY_PORT,
  DEFAULT_UPLOAD_WINDOW_SECONDS,
  type ConsentHost,
  type EgressRulesModel,
  DEFAULT_UID,
  DEFAULT_USER,
  type ExecDeny,
  type ExecGrant,
  type FsDeny,
  type FsGrant,
  type Model,
  type NetDeny,
  type NetGrant,
  type Preset,
  type RuleSource,
} from '../model/types.js';

/** A manifest or preset file as read by the edge. */
export interface SourceFile {
  file: string;
  text: string;
}

export interface LoadContext {
  /** Preset files by name (profiles/presets/NAME.yaml). */
  presets: ReadonlyMap<string, SourceFile>;
  /** Home directory `~` expands against. */
  home: string;
  resolver: PathResolver;
  /** `--profile`: replaces the manifest's `extends`; grants beyond the new ceiling are dropped with a warning. */
  profileOverride?: readonly string[];
}

export interface LoadResult {
  model: Model | undefined;
  warnings: Diagnostic[];
  errors: Diagnostic[];
}

/** System directories no grant may make writable: it would defeat the sandbox. */
const SYSTEM_DIRS = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/sbin', '/sys', '/usr', '/var/lib', '/var/log', '/run'];


interface Collector {
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

function diag(doc: ParsedDocument, severity: 'error' | 'warning', segments: (string | number)[], pointer: string, message: string): Diagnostic {
  const pos = doc.locate(segments);
  return { severity, file: doc.file, pointer, line: pos?.line, column: pos?.column, message };
}

/** Parses a document and checks it against the schema. */
function readDocument(src: SourceFile): { doc?: ParsedDocument; raw?: RawManifest; errors: Diagnostic[] } {
  const parsed = parseYaml(src.text, src.file);
  if (!parsed.doc) return { errors: parsed.errors };
  const checked = checkSchema(parsed.doc);
  if (!checked.manifest) return { doc: parsed.doc, errors: checked.errors };
  return { doc: parsed.doc, raw: checked.manifest, errors: [] };
}

interface Scoped {
  fs: FsGrant[];
  net: NetGrant[];
  exec: ExecGrant[];
  denyFs: FsDeny[];
  denyNet: NetDeny[];
  denyExec: ExecDeny[];
}

/** Turns `capabilities` and `deny` into normalised rules, reporting each bad entry where it stands. */
function scopes(doc: ParsedDocument, raw: RawManifest, origin: 'manifest' | 'preset', ctx: LoadContext, out: Collector): Scoped {
  const s: Scoped = { fs: [], net: [], exec: [], denyFs: [], denyNet: [], denyExec: [] };
  const preset = origin === 'preset' ? raw.metadata.name : undefined;
  const source = (pointer: string, text: string): RuleSource => ({ origin, file: doc.file, pointer, text, ...(preset ? { preset } : {}) });

  (raw.capabilities ?? []).forEach((text, i) => {
    const pointer = `capabilities[${i}]`;
    const fail = (message: string) => out.errors.push(diag(doc, 'error', ['capabilities', i], pointer, message));
    const g = parseGrant(text);
    if (!g.ok) return fail(g.message);
    const v = g.value;
    if (v.type === 'net') {
      s.net.push({ host: v.host, hostKind: v.hostKind, port: v.port, source: source(pointer, text) });
      return;
    }
    const n = normalisePath(v.path, ctx.home, ctx.resolver);
    if (!n.ok) return fail(n.message);
    if (n.real === '/') return fail(`"${text}" grants the whole file system; overly broad grants are not allowed for security reasons. Name the folders the agent needs`);
    if (v.type === 'fs') {
      if (v.access === 'write') {
        const sys = SYSTEM_DIRS.find((d) => isWithin(n.real, d) || isWithin(d, n.real));
        if (sys) return fail(`"${text}" would make the system directory ${sys} writable, which defeats the sandbox; grant a folder of the user's instead`);
        if (isWithin(ctx.home, n.real)) {
          return fail(`"${text}" would make the whole home directory ${ctx.home} writable, so the agent could plant ~/.bashrc, ~/.profile or other startup files that run outside the box; grant a folder inside it, such as ~/work`);
        }
      }
      s.fs.push({ path: n.real, access: v.access, source: source(pointer, text) });
    } else {
      s.exec.push({ path: n.real, source: source(pointer, text) });
    }
  });

  (raw.deny ?? []).forEach((text, i) => {
    const pointer = `deny[${i}]`;
    const fail = (message: string) => out.errors.push(diag(doc, 'error', ['deny', i], pointer, message));
    const d = parseDeny(text);
    if (!d.ok) return fail(d.message);
    const v = d.value;
    if (v.type === 'net') {
      s.denyNet.push({ host: v.host, hostKind: v.hostKind, port: v.port, source: source(pointer, text) });
      return;
    }
    // A deny is never refused for a symlink: it covers both the written and the resolved path.
    const n = normalisePath(v.path, ctx.home, ctx.resolver);
    let paths: string[];
    if (n.ok) paths = n.literal === n.real ? [n.real] : [n.literal, n.real];
    else {
      const lexical = normalisePath(v.path, ctx.home, { resolve: (p) => ({ ok: true, real: p }) });
      if (!lexical.ok) return fail(lexical.message);
      paths = [lexical.literal];
    }
    for (const path of paths) {
      if (v.type === 'fs') s.denyFs.push({ path, access: v.access, source: source(pointer, text) });
      else s.denyExec.push({ path, source: source(pointer, text) });
    }
  });
  return s;
}

/** Loads one preset file into a Preset and its default rules. */
function loadPreset(name: string, ctx: LoadContext, out: Collector, refDoc: ParsedDocument, refSegments: (string | number)[], refPointer: string): { preset: Preset; scoped: Scoped } | undefined {
  const src = ctx.presets.get(name);
  if (!src) {
    const known = [...ctx.presets.keys()].sort();
    out.errors.push(diag(refDoc, 'error', refSegments, refPointer, `unknown preset "${name}"; available presets: ${known.join(', ') || '(none)'}`));
    return undefined;
  }
  const r = readDocument(src);
  if (!r.raw || !r.doc) {
    out.errors.push(...r.errors);
    return undefined;
  }
  const raw = r.raw;
  if (raw.kind !== 'Preset') {
    out.errors.push(diag(r.doc, 'error', ['kind'], 'kind', `"${name}" is an agent profile, not a preset; extends takes presets (kind: Preset)`));
    return undefined;
  }
  const local: Collector = { errors: [], warnings: [] };
  if (!raw.ceiling) local.errors.push(diag(r.doc, 'error', [], '', 'a preset needs a ceiling: { fs: none|read|write, net: true|false, exec: true|false }'));
  if (!raw.summary) local.errors.push(diag(r.doc, 'error', [], '', 'a preset needs a plain-language summary'));
  if (raw.extends?.length) local.errors.push(diag(r.doc, 'error', ['extends'], 'extends', 'presets do not extend other presets; list every default in the preset itself'));
  if (raw.agent) local.errors.push(diag(r.doc, 'error', ['agent'], 'agent', 'presets do not name an agent'));
  const scoped = scopes(r.doc, raw, 'preset', ctx, local);
  out.errors.push(...local.errors);
  out.warnings.push(...local.warnings);
  if (local.errors.length > 0 || !raw.ceiling) return undefined;
  return {
    preset: { name, description: raw.metadata.description ?? '', summary: (raw.summary ?? '').trim(), ceiling: raw.ceiling, file: src.file },
    scoped,
  };
}

/** Which preset ceilings admit this grant; an empty `extends` admits everything. */
function withinCeiling(presets: Preset[], g: { type: 'fs-read' | 'fs-write' | 'net' | 'exec' }): boolean {
  if (presets.length === 0) return true;
  return presets.some((p) => {
    switch (g.type) {
      case 'fs-read':
        return p.ceiling.fs !== 'none';
      case 'fs-write':
        return p.ceiling.fs === 'write';
      case 'net':
        return p.ceiling.net;
      case 'exec':
        return p.ceiling.exec;
    }
  });
}

function ceilingMessage(presets: Preset[], what: string): string {
  const names = presets.map((p) => p.name);
  const admitting = what === 'write files' ? 'editor or organizer' : what === 'connect to the network' ? 'organizer' : 'a preset that allows it';
  return `exceeds the ceiling of preset${names.length > 1 ? 's' : ''} ${names.join(', ')}: ${names.length > 1 ? 'none of them allows' : `${names[0]} does not allow`} the agent to ${what}. Remove the grant, or extend ${admitting}`;
}

const grantKind = (g: FsGrant | NetGrant | ExecGrant, type: 'fs' | 'net' | 'exec') =>
  type === 'fs' ? ((g as FsGrant).access === 'write' ? 'fs-write' : 'fs-read') : type;

const whatOf = { 'fs-read': 'read files', 'fs-write': 'write files', net: 'connect to the network', exec: 'run programs' } as const;

type ErrFn = (segments: (string | number)[], pointer: string, message: string) => void;

/** `egress`: consent hosts, DLP detectors, the upload threshold; each value checked where it is written. */
function egressRules(raw: RawManifest, file: string, presets: Preset[], err: ErrFn): EgressRulesModel {
  const e = raw.egress ?? {};
  let consent: EgressRulesModel['consent'];
  if (e.consent !== undefined) {
    const hosts: ConsentHost[] = [];
    const entries = e.consent === 'ask' ? ['*'] : e.consent.ask;
    entries.forEach((entry, i) => {
      const pointer = e.consent === 'ask' ? 'egress.consent' : `egress.consent.ask[${i}]`;
      const segments = e.consent === 'ask' ? ['egress', 'consent'] : ['egress', 'consent', 'ask', i];
      const source: RuleSource = { origin: 'manifest', file, pointer, text: e.consent === 'ask' ? 'consent: ask' : entry };
      if (entry === '*') {
        hosts.push({ host: '*', hostKind: 'any', port: 'any', source });
        return;
      }
      const g = parseGrant(`net:connect:${entry}`);
      if (!g.ok || g.value.type !== 'net') err(segments, pointer, `${g.ok ? '' : g.message.replace('net:connect:', '')}; write HOST:PORT such as assets.example.com:443 or *.example.com:443, or * for any host`);
      else hosts.push({ host: g.value.host, hostKind: g.value.hostKind, port: g.value.port, source });
    });
    let timeoutSeconds = DEFAULT_CONSENT_TIMEOUT_SECONDS;
    if (e.consent !== 'ask' && e.consent.timeout !== undefined) {
      const t = parseTtl(e.consent.timeout);
      if (!t.ok) err(['egress', 'consent', 'timeout'], 'egress.consent.timeout', t.message.replace('ttl', 'timeout'));
      else if (t.value > 3600) err(['egress', 'consent', 'timeout'], 'egress.consent.timeout', `${e.consent.timeout} is over the 1h maximum; a held connection should not wait longer`);
      else timeoutSeconds = t.value;
    }
    if (presets.length > 0 && !presets.some((p) => p.ceiling.net)) {
      const names = presets.map((p) => p.name).join(', ');
      err(['egress', 'consent'], 'egress.consent', `asking for consent widens network access, which preset${presets.length > 1 ? 's' : ''} ${names} do${presets.length > 1 ? '' : 'es'} not allow; remove egress.consent or extend organizer`);
    }
    consent = { hosts, timeoutSeconds, maxQuestions: e.consent !== 'ask' && e.consent.maxQuestions !== undefined ? e.consent.maxQuestions : DEFAULT_CONSENT_MAX_QUESTIONS };
  }

  let dlp: EgressRulesModel['dlp'];
  if (e.dlp !== undefined) {
    const custom = (e.dlp.custom ?? []).map((c, i) => {
      const pointer = `egress.dlp.custom[${i}]`;
      if ((c.regex === undefined) === (c.marker === undefined)) err(['egress', 'dlp', 'custom', i], pointer, 'give exactly one of regex (a regular expression) or marker (literal text such as CONFIDENTIAL)');
      if (c.regex !== undefined) {
        try {
          const re = new RegExp(c.regex, c.ignoreCase ? 'ui' : 'u');
          if (re.test('')) err(['egress', 'dlp', 'custom', i, 'regex'], `${pointer}.regex`, `/${c.regex}/ matches empty text, so it would block every request; make it match the data itself`);
        } catch (x) {
          err(['egress', 'dlp', 'custom', i, 'regex'], `${pointer}.regex`, `not a valid regular expression (${(x as Error).message}); JavaScript syntax with the u flag`);
        }
      }
      if (c.marker !== undefined && /[\p{Cc}]/u.test(c.marker)) err(['egress', 'dlp', 'custom', i, 'marker'], `${pointer}.marker`, 'a marker is printable text such as CONFIDENTIAL');
      if ((e.dlp!.custom ?? []).findIndex((d) => d.name === c.name) !== i) err(['egress', 'dlp', 'custom', i, 'name'], `${pointer}.name`, `detector name "${c.name}" is used twice; audit events name detectors, so names must be unique`);
      return { name: c.name, ...(c.regex !== undefined ? { regex: c.regex } : { marker: c.marker ?? '' }), ignoreCase: c.ignoreCase ?? false };
    });
    const detectors = e.dlp.detectors ?? [];
    if (detectors.length === 0 && custom.length === 0) err(['egress', 'dlp'], 'egress.dlp', 'names no detector; list detectors (private-key, aws-access-key, us-ssn, payment-card) or custom ones');
    dlp = { detectors, custom };
  }

  let maxUploadBytes: number | undefined;
  if (e.maxUploadBytes !== undefined) {
    const s = typeof e.maxUploadBytes === 'number' ? { ok: true as const, value: e.maxUploadBytes } : parseSize(e.maxUploadBytes);
    if (s.ok) maxUploadBytes = s.value;
    else err(['egress', 'maxUploadBytes'], 'egress.maxUploadBytes', s.message);
  }
  let maxSessionUploadBytes: number | undefined = maxUploadBytes !== undefined ? maxUploadBytes * 4 : undefined;
  if (e.maxSessionUploadBytes !== undefined) {
    const s = typeof e.maxSessionUploadBytes === 'number' ? { ok: true as const, value: e.maxSessionUploadBytes } : parseSize(e.maxSessionUploadBytes);
    if (!s.ok) err(['egress', 'maxSessionUploadBytes'], 'egress.maxSessionUploadBytes', s.message);
    else if (maxUploadBytes === undefined) err(['egress', 'maxSessionUploadBytes'], 'egress.maxSessionUploadBytes', 'needs egress.maxUploadBytes (the limit per destination)');
    else maxSessionUploadBytes = s.value;
  }
  let uploadWindowSeconds = DEFAULT_UPLOAD_WINDOW_SECONDS;
  if (e.uploadWindow !== undefined) {
    const t = parseTtl(e.uploadWindow);
    if (t.ok) uploadWindowSeconds = t.value;
    else err(['egress', 'uploadWindow'], 'egress.uploadWindow', t.message.replace('ttl', 'uploadWindow'));
  }
  if (e.uploadWindow !== undefined && maxUploadBytes === undefined) err(['egress', 'uploadWindow'], 'egress.uploadWindow', 'has no effect without egress.maxUploadBytes');
  if (e.onViolation !== undefined && dlp === undefined && maxUploadBytes === undefined) {
    err(['egress', 'onViolation'], 'egress.onViolation', 'has nothing to act on: add egress.dlp detectors or egress.maxUploadBytes');
  }
  return { proxyPort: e.proxyPort ?? DEFAULT_PROXY_PORT, consent, dlp, maxUploadBytes, maxSessionUploadBytes, uploadWindowSeconds, onViolation: e.onViolation ?? 'block' };
}

/** Loads a manifest (kind Agent or Preset) into the validated model. */
export function loadManifest(src: SourceFile, ctx: LoadContext): LoadResult {
  const out: Collector = { errors: [], warnings: [] };
  const r = readDocument(src);
  if (!r.raw || !r.doc) return { model: undefined, warnings: [], errors: r.errors };
  const doc = r.doc;
  const raw = r.raw;
  const err = (segments: (string | number)[], pointer: string, message: string) => out.errors.push(diag(doc, 'error', segments, pointer, message));
  const homeCheck = lexicalPath(ctx.home, '/');
  if (!homeCheck.ok || homeCheck.literal !== ctx.home) {
    return { model: undefined, warnings: [], errors: [{ severity: 'error', file: src.file, pointer: '', line: undefined, column: undefined, message: `the home directory ${JSON.stringify(ctx.home)} (from --home or the environment) must be a clean absolute path: ${homeCheck.ok ? 'no trailing slash, . or //' : homeCheck.message}` }] };
  }
  const warn = (segments: (string | number)[], pointer: string, message: string) => out.warnings.push(diag(doc, 'warning', segments, pointer, message));

  if (raw.kind === 'Agent') {
    if (raw.ceiling) err(['ceiling'], 'ceiling', 'only presets (kind: Preset) have a ceiling; an agent bounds itself with extends');
    if (!raw.agent?.command) err(['agent'], 'agent.command', 'missing: the program to run and its arguments, such as [/usr/bin/python3, agent.py]');
  }

  // Presets: the manifest's own, or the --profile override.
  const presetNames = ctx.profileOverride ? [...ctx.profileOverride] : raw.kind === 'Agent' ? (raw.extends ?? []) : [];
  const presets: Preset[] = [];
  const presetScopes: Scoped[] = [];
  presetNames.forEach((name, i) => {
    const p = ctx.profileOverride
      ? loadPreset(name, ctx, out, doc, [], `--profile ${name}`)
      : loadPreset(name, ctx, out, doc, ['extends', i], `extends[${i}]`);
    if (p && !presets.some((q) => q.name === p.preset.name)) {
      presets.push(p.preset);
      presetScopes.push(p.scoped);
    }
  });

  const own = scopes(doc, raw, 'manifest', ctx, out);

  // Ceilings: a grant beyond every extended preset is an error naming them;
  // with --profile the grant is dropped instead, and the drop is said out loud.
  const keep = <T extends FsGrant | NetGrant | ExecGrant>(list: T[], type: 'fs' | 'net' | 'exec'): T[] =>
    list.filter((g) => {
      const kind = grantKind(g, type);
      if (withinCeiling(presets, { type: kind })) return true;
      const index = Number(/\[(\d+)\]/.exec(g.source.pointer)?.[1]);
      if (ctx.profileOverride) {
        warn(['capabilities', index], g.source.pointer, `"${g.source.text}" dropped: ${ceilingMessage(presets, whatOf[kind])}`);
      } else {
        err(['capabilities', index], g.source.pointer, `"${g.source.text}" ${ceilingMessage(presets, whatOf[kind])}`);
      }
      return false;
    });

  const grants = {
    fs: [...presetScopes.flatMap((p) => p.fs), ...keep(own.fs, 'fs')],
    net: [...presetScopes.flatMap((p) => p.net), ...keep(own.net, 'net')],
    exec: [...presetScopes.flatMap((p) => p.exec), ...keep(own.exec, 'exec')],
  };
  const denies = {
    fs: [...presetScopes.flatMap((p) => p.denyFs), ...own.denyFs],
    net: [...presetScopes.flatMap((p) => p.denyNet), ...own.denyNet],
    exec: [...presetScopes.flatMap((p) => p.denyExec), ...own.denyExec],
  };

  // A grant wholly inside an all-access deny does nothing: say so rather than let a reviewer think it works.
  for (const g of grants.fs) {
    const d = denies.fs.find((x) => x.access === 'all' && isWithin(g.path, x.path));
    if (d && g.source.origin === 'manifest') {
      const index = Number(/\[(\d+)\]/.exec(g.source.pointer)?.[1]);
      warn(['capabilities', index], g.source.pointer, `"${g.source.text}" has no effect: ${d.source.text} (${describeSource(d.source)}) denies it, and deny always wins`);
    }
  }

  // The agent program.
  const command = raw.agent?.command ?? [];
  if (command.length > 0) {
    const n = normalisePath(command[0]!, ctx.home, ctx.resolver);
    if (!command[0]!.startsWith('/') && !command[0]!.startsWith('~')) {
      err(['agent', 'command', 0], 'agent.command[0]', `"${command[0]}" must be an absolute path such as /usr/bin/${command[0]} (systemd and AppArmor name programs by path)`);
    } else if (!n.ok) err(['agent', 'command', 0], 'agent.command[0]', n.message);
    else if (n.real.includes("'")) {
      // systemd refuses quotes in an executable's path (string_is_safe), unlike in path directives.
      err(['agent', 'command', 0], 'agent.command[0]', `"${command[0]}": systemd refuses a program path containing ' ; move or link the program to a path without it`);
    } else command[0] = n.real;
  }
  command.forEach((arg, i) => {
    if (/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(arg)) err(['agent', 'command', i], `agent.command[${i}]`, 'contains a control or invisible formatting character; arguments must be printable text');
  });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw.agent?.env ?? {})) {
    if (/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(v)) err(['agent', 'env', k], `agent.env.${k}`, 'contains a control or invisible formatting character; values must be printable text');
    else env[k] = v;
  }
  const program = raw.agent?.windows?.program;
  if (program !== undefined && (/[\p{Cc}\p{Cf}"*?<>|]/u.test(program) || !/^[A-Za-z]:\\/.test(program))) {
    err(['agent', 'windows', 'program'], 'agent.windows.program', `"${program}" must be an absolute Windows path such as C:\\Program Files\\Cowork\\cowork.exe, without " * ? < > | or control characters`);
  }

  let ttlSeconds: number | undefined;
  if (raw.ttl !== undefined) {
    const t = parseTtl(raw.ttl);
    if (t.ok) ttlSeconds = t.value;
    else err(['ttl'], 'ttl', t.message);
  }
  let memoryBytes: number | undefined;
  if (raw.limits?.memory !== undefined) {
    const m = parseMemory(raw.limits.memory);
    if (m.ok) memoryBytes = m.value;
    else err(['limits', 'memory'], 'limits.memory', m.message);
  }
  let diskBytes: number | undefined;
  if (raw.limits?.disk !== undefined) {
    const m = parseMemory(raw.limits.disk);
    if (m.ok && m.value < 16 * 1024 ** 2) err(['limits', 'disk'], 'limits.disk', 'at least 16MiB: the writable layers need room for their own file system');
    else if (m.ok) diskBytes = m.value;
    else err(['limits', 'disk'], 'limits.disk', m.message);
  }
  const runtimeKind = raw.runtime?.kind ?? 'process';
  if (raw.runtime?.isolation && runtimeKind !== 'container') {
    err(['runtime', 'isolation'], 'runtime.isolation', `isolation applies to the container runtime only; this manifest uses ${runtimeKind}`);
  }

  const egress = egressRules(raw, src.file, presets, err);

  if (out.errors.length > 0) return { model: undefined, warnings: out.warnings, errors: out.errors };

  const model: Model = {
    name: raw.metadata.name,
    description: raw.metadata.description ?? '',
    classification: raw.metadata.classification,
    extends: presets,
    agent: {
      command,
      image: raw.agent?.image,
      user: raw.agent?.user ?? DEFAULT_USER,
      uid: raw.agent?.uid ?? DEFAULT_UID,
      env,
      macos: { bundleId: raw.agent?.macos?.bundleId },
      windows: { program },
    },
    grants: { fs: dedupeBy(grants.fs, (g) => `${g.path}|${g.access}`), net: dedupeBy(grants.net, (g) => `${g.host}|${g.port}`), exec: dedupeBy(grants.exec, (g) => g.path) },
    denies: { fs: dedupeBy(denies.fs, (d) => `${d.path}|${d.access}`), net: dedupeBy(denies.net, (d) => `${d.host}|${d.port}`), exec: dedupeBy(denies.exec, (d) => d.path) },
    ttlSeconds,
    runtime: { kind: runtimeKind, snapshot: raw.runtime?.snapshot ?? 'revert', isolation: raw.runtime?.isolation },
    limits: { memoryBytes, diskBytes, pids: raw.limits?.pids, cpus: raw.limits?.cpus },
    egress,
    home: ctx.home,
    origin: { file: src.file, sha256: sha256Hex(src.text) },
  };
  return { model, warnings: out.warnings, errors: [] };
}

/** Loads a preset file on its own (for validate and describe of presets). */
export function loadPresetFile(src: SourceFile, ctx: LoadContext): { preset?: Preset; errors: Diagnostic[]; warnings: Diagnostic[] } {
  const out: Collector = { errors: [], warnings: [] };
  const r = readDocument(src);
  if (!r.raw || !r.doc) return { errors: r.errors, warnings: [] };
  const single = new Map([[r.raw.metadata.name, src]]);
  const p = loadPreset(r.raw.metadata.name, { ...ctx, presets: single }, out, r.doc, [], '');
  return { ...(p ? { preset: p.preset } : {}), errors: out.errors, warnings: out.warnings };
}

/** The kind a document declares, without validating the rest. */
export function peekKind(text: string): string | undefined {
  const m = /^kind:\s*([A-Za-z]+)\s*$/m.exec(text);
  return m?.[1];
}

/** "manifest capabilities[2]" or "preset viewer deny[0]". */
export function describeSource(s: RuleSource): string {
  return s.origin === 'preset' ? `preset ${s.preset} ${s.pointer}` : `manifest ${s.pointer}`;
}

function dedupeBy<T>(list: T[], key: (t: T) => string): T[] {
  const seen = new Set<string>();
  return list.filter((x) => {
    const k = key(x);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
