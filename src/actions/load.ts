/**
 * Reading manifests from the host: AGENT|FILE and the shipped presets, loaded into the
 * model (warnings to `notify`, errors as one located MANIFEST_INVALID error, exit 2),
 * and `validate`'s every-document check.
 */
import { homedir } from 'node:os';
import { resolve } from 'node:path';
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
