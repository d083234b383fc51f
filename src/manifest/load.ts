/**
 * Manifest in three steps, returning data (never a throw for a user mistake):
 * parse (YAML + schema) → normalise (scopes, paths) → rules (presets, ceilings,
 * breadth). Pure: files and the file system arrive through `LoadContext`.
 */

import type { Diagnostic } from './diagnostics.js';
import { sha256Hex } from '../hash.js';
import { lexicalPath, isWithin } from '../model/paths.js';
import { parseMemory, parseTtl } from '../model/grammar.js';
import { describeSource } from '../model/grants.js';
import { DEFAULT_UID, DEFAULT_USER, type AgentProgram, type ExecGrant, type FsGrant, type Model, type NetGrant, type Preset } from '../model/types.js';
import { diag, readDocument, type Collector, type LoadContext, type SourceFile } from './document.js';
import { scopes, type Scoped } from './scopes.js';
import { ceilingMessage, grantKind, loadPreset, whatOf, withinCeiling } from './presets.js';
import { egressRules } from './egress-rules.js';
import { monitorRules, presetMonitor } from './monitor-rules.js';
import { BOX_PATH, literalPrograms, resolveProgram } from './program.js';

export type { LoadContext, SourceFile } from './document.js';

export interface LoadResult {
  model: Model | undefined;
  warnings: Diagnostic[];
  errors: Diagnostic[];
}



/** Loads a manifest (kind Agent or Preset) into the validated model. */
export function loadManifest(src: SourceFile, ctx: LoadContext): LoadResult {
  const r = readDocument(src, { partial: true });
  if (!r.raw || !r.doc) return { model: undefined, warnings: [], errors: r.errors };
  // Schema errors first; the rest of the document is still checked (every error in one pass).
  const out: Collector = { errors: [...r.errors], warnings: [] };
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

  // The agent program: looked up, links resolved, its package and interpreter granted.
  const command = [...(raw.agent?.command ?? [])];
  let program: AgentProgram | undefined;
  if (command.length > 0) {
    const r = resolveProgram(command[0]!, ctx.home, ctx.path ?? BOX_PATH, ctx.programs ?? literalPrograms);
    if (!r.ok) err(['agent', 'command', 0], 'agent.command[0]', r.message);
    else {
      program = r.program;
      command[0] = program.path;
      grants.exec.push(...programGrants(program, src.file).exec);
      grants.fs.push(...programGrants(program, src.file).fs);
    }
  }
  command.forEach((arg, i) => {
    if (/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(arg)) err(['agent', 'command', i], `agent.command[${i}]`, 'contains a control or invisible formatting character; arguments must be printable text');
  });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw.agent?.env ?? {})) {
    if (/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(v)) err(['agent', 'env', k], `agent.env.${k}`, 'contains a control or invisible formatting character; values must be printable text');
    else env[k] = v;
  }
  const winProgram = raw.agent?.windows?.program;
  if (winProgram !== undefined && (/[\p{Cc}\p{Cf}"*?<>|]/u.test(winProgram) || !/^[A-Za-z]:\\/.test(winProgram))) {
    err(['agent', 'windows', 'program'], 'agent.windows.program', `"${winProgram}" must be an absolute Windows path such as C:\\Program Files\\Cowork\\cowork.exe, without " * ? < > | or control characters`);
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
  const monitor = monitorRules(raw.monitor, ctx.home, src.file, { origin: 'manifest' }, err) ?? presetMonitor(presets);

  if (out.errors.length > 0) return { model: undefined, warnings: out.warnings, errors: out.errors };

  const model: Model = {
    name: raw.metadata.name,
    description: raw.metadata.description ?? '',
    classification: raw.metadata.classification,
    extends: presets,
    agent: {
      command,
      program,
      image: raw.agent?.image,
      user: raw.agent?.user ?? DEFAULT_USER,
      uid: raw.agent?.uid ?? DEFAULT_UID,
      env,
      macos: { bundleId: raw.agent?.macos?.bundleId },
      windows: { program: winProgram },
    },
    grants: { fs: dedupeBy(grants.fs, (g) => `${g.path}|${g.access}`), net: dedupeBy(grants.net, (g) => `${g.host}|${g.port}`), exec: dedupeBy(grants.exec, (g) => g.path) },
    denies: { fs: dedupeBy(denies.fs, (d) => `${d.path}|${d.access}`), net: dedupeBy(denies.net, (d) => `${d.host}|${d.port}`), exec: dedupeBy(denies.exec, (d) => d.path) },
    ttlSeconds,
    runtime: { kind: runtimeKind, snapshot: raw.runtime?.snapshot ?? 'revert', isolation: raw.runtime?.isolation },
    limits: { memoryBytes, diskBytes, pids: raw.limits?.pids, cpus: raw.limits?.cpus },
    egress,
    monitor,
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


function dedupeBy<T>(list: T[], key: (t: T) => string): T[] {
  const seen = new Set<string>();
  return list.filter((x) => {
    const k = key(x);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** System folders every runtime shows read-only: a program there needs no read grant. */
const SYSTEM = ['/usr', '/bin', '/sbin', '/lib', '/lib64'];

/**
 * What running the agent program needs beyond the program itself: exec and read of its
 * package folder, exec of its interpreter (and of `env` when the `#!` line uses it).
 */
export function programGrants(p: AgentProgram, file: string): { exec: ExecGrant[]; fs: FsGrant[] } {
  const source = (text: string) => ({ origin: 'manifest' as const, file, pointer: 'agent.command[0]', text });
  const exec: ExecGrant[] = [];
  const fs: FsGrant[] = [];
  if (p.packageDir) {
    exec.push({ path: p.packageDir, source: source(`exec:${p.packageDir} (the package of ${p.asWritten})`), implied: 'package' });
    if (!SYSTEM.some((d) => isWithin(p.packageDir!, d))) fs.push({ path: p.packageDir, access: 'read', source: source(`fs:read:${p.packageDir} (the package of ${p.asWritten})`) });
  }
  if (p.shebangVia) exec.push({ path: p.shebangVia, source: source(`exec:${p.shebangVia} (finds the #! interpreter of ${p.asWritten})`), implied: 'via' });
  if (p.interpreter) exec.push({ path: p.interpreter, source: source(`exec:${p.interpreter} (the #! interpreter of ${p.asWritten})`), implied: 'interpreter' });
  return { exec, fs };
}
