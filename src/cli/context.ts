/**
 * What every manifest-reading command shares: read AGENT|FILE and the presets, load
 * the model, print warnings, and turn errors into one AgentboxError (exit 2).
 */
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { AgentboxError } from '../errors.js';
import { formatDiagnostic, type Diagnostic } from '../manifest/diagnostics.js';
import { loadManifest } from '../manifest/load.js';
import type { Model } from '../model/types.js';
import { readManifestArg, readPresets } from '../host/files.js';
import { hostResolver } from '../host/resolver.js';
import type { Io } from './io.js';

export interface ManifestOptions {
  profile?: string;
  home?: string;
}

export interface Loaded {
  model: Model;
  warnings: Diagnostic[];
}

/** Loads AGENT|FILE into the model, or throws a located MANIFEST_INVALID error. */
export function loadModel(arg: string, opts: ManifestOptions, io: Io): Loaded {
  const src = readManifestArg(arg);
  const home = opts.home ? resolve(opts.home) : homedir();
  const profileOverride = opts.profile ? opts.profile.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const result = loadManifest(src, { presets: readPresets(), home, resolver: hostResolver, ...(profileOverride ? { profileOverride } : {}) });
  for (const w of result.warnings) io.warn(formatDiagnostic(w));
  if (!result.model) {
    throw new AgentboxError('MANIFEST_INVALID', `${src.file}: ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}`, {
      details: result.errors.map(formatDiagnostic),
    });
  }
  return { model: result.model, warnings: result.warnings };
}

export const manifestOptionsHelp = {
  profile: 'role preset(s) to run under, replacing the manifest\'s extends (comma-separated); grants beyond it are dropped with a warning',
  home: 'home directory that ~ in the manifest means (default: yours)',
};
