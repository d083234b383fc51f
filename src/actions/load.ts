/**
 * Reading manifests from the host: AGENT|FILE and the shipped presets, loaded into the
 * model (warnings to `notify`, errors as one located MANIFEST_INVALID error, exit 2),
 * and `validate`'s every-document check.
 */
import { homedir } from 'node:os';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentboxError } from '../errors.js';
import { formatDiagnostic, type Diagnostic } from '../manifest/diagnostics.js';
import { loadManifest, loadPresetFile, peekKind } from '../manifest/load.js';
import type { Model } from '../model/types.js';
import { listAgents, readManifestArg, readPresets } from '../host/files.js';
import { hostResolver } from '../host/resolver.js';
import { hostPrograms } from '../host/programs.js';
import { BOX_PATH } from '../manifest/program.js';
import { lookupPath } from '../env.js';
import type { Notify } from './notify.js';

export interface ManifestOptions {
  profile?: string;
  home?: string;
}

export interface Loaded {
  model: Model;
  warnings: Diagnostic[];
}

/** Loads AGENT|FILE into the model, or throws a located MANIFEST_INVALID error. */
export function loadModel(arg: string, opts: ManifestOptions, notify: Notify): Loaded {
  const src = readManifestArg(arg);
  const home = opts.home ? resolve(opts.home) : homedir();
  const profileOverride = opts.profile ? opts.profile.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const result = loadManifest(src, { presets: readPresets(), home, resolver: hostResolver, programs: hostPrograms, path: lookupPath(BOX_PATH), ...(profileOverride ? { profileOverride } : {}) });
  for (const w of result.warnings) notify.warn(formatDiagnostic(w));
  if (!result.model) {
    throw new AgentboxError('MANIFEST_INVALID', `${src.file}: ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}`, {
      details: result.errors.map(formatDiagnostic),
    });
  }
  return { model: result.model, warnings: result.warnings };
}

/** Options of the commands that write a system service (generate, apply). */
export interface ServiceManifestOptions extends ManifestOptions {
  /** The account whose home `~` means in the unit (its home read from ROOT/etc/passwd). */
  forUser?: string;
  /** The system the unit is for (apply --root); `--for-user` is looked up there. */
  root?: string;
}

/** USER's home directory from ROOT/etc/passwd, or a USAGE error naming the accounts there. */
export function passwdHome(user: string, root = '/'): string {
  const file = join(root, 'etc/passwd');
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AgentboxError('USAGE', `--for-user ${user}: ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const rows = text.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 7);
  const row = rows.find((f) => f[0] === user);
  if (!row || !row[5]?.startsWith('/')) throw new AgentboxError('USAGE', `--for-user ${user}: no such account in ${file}`, { details: [`accounts with a home under /home: ${rows.filter((f) => f[5]?.startsWith('/home/')).map((f) => f[0]).join(', ') || 'none'}`] });
  return row[5];
}

/**
 * Loads a manifest for a system service. A unit runs as the agent's own account, so `~`
 * cannot mean "the home of whoever runs generate" (root's, baked as /root/...), and
 * systemd's %h would be the agent account's home, not the user's: the home is named with
 * --for-user USER (looked up in ROOT/etc/passwd) or --home DIR. Without either, a model
 * with a path under the generating account's own home is refused with that fix.
 */
export function loadServiceModel(arg: string, opts: ServiceManifestOptions, notify: Notify): Loaded {
  if (opts.forUser && opts.home) throw new AgentboxError('USAGE', '--for-user and --home both name the home that ~ means: give one');
  const home = opts.forUser ? passwdHome(opts.forUser, opts.root) : opts.home;
  const loaded = loadModel(arg, { ...opts, ...(home ? { home } : {}) }, notify);
  if (home === undefined) {
    const mine = homedir();
    const m = loaded.model;
    const baked = [...m.grants.fs, ...m.denies.fs].map((g) => g.path).find((p) => p === mine || p.startsWith(`${mine}/`));
    if (baked) {
      throw new AgentboxError('USAGE', `${baked} is under your own home (${mine}): a system unit would carry it as an absolute path for every machine it is shipped to`, {
        details: ['name whose files the agent works on: --for-user USER (home read from /etc/passwd, or ROOT/etc/passwd with apply --root), or --home DIR'],
      });
    }
  }
  return loaded;
}

export interface Validated {
  file: string;
  /** Agent or Preset (as declared; undefined when unreadable). */
  kind: string | undefined;
  valid: boolean;
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

/** Validates each manifest or preset file; one that cannot be read is reported, not thrown. */
export function validateDocuments(args: readonly string[], opts: ManifestOptions): Validated[] {
  const home = opts.home ? resolve(opts.home) : homedir();
  const presets = readPresets();
  const results: Validated[] = [];
  for (const arg of args) {
    let src;
    try {
      src = readManifestArg(arg);
    } catch (e) {
      if (!(e instanceof AgentboxError)) throw e;
      results.push({ file: arg, kind: undefined, valid: false, errors: [{ severity: 'error', file: arg, pointer: '', line: undefined, column: undefined, message: e.message }], warnings: [] });
      continue;
    }
    const ctx = { presets, home, resolver: hostResolver, programs: hostPrograms, path: lookupPath(BOX_PATH), ...(opts.profile ? { profileOverride: opts.profile.split(',') } : {}) };
    const kind = peekKind(src.text);
    const r = kind === 'Preset' ? loadPresetFile(src, ctx) : loadManifest(src, ctx);
    results.push({ file: src.file, kind, valid: r.errors.length === 0, errors: r.errors, warnings: r.warnings });
  }
  return results;
}

/** The shipped agent profile names (for completion and suggestions). */
export const agentProfiles = (): string[] => listAgents();
