/**
 * Reading agentbox's own files: manifests, presets, agent profiles and templates.
 * The pure core receives their text; this module is the only place that finds them.
 */
import { didYouMean } from '../model/suggest.js';
import { termSafe } from '../escape/terminal.js';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentboxError } from '../errors.js';
import { EnvVar } from '../env.js';
import type { SourceFile } from '../manifest/load.js';
import type { Templates } from '../generate/template.js';

/** The package root (where profiles/ and templates/ ship). */
export function packageRoot(): string {
  return resolve(fileURLToPath(new URL('../..', import.meta.url)));
}

export function profilesDir(env: NodeJS.ProcessEnv = process.env): string {
  return env[EnvVar.profilesDir] ?? join(packageRoot(), 'profiles');
}

export function readPresets(env: NodeJS.ProcessEnv = process.env): Map<string, SourceFile> {
  const dir = join(profilesDir(env), 'presets');
  const out = new Map<string, SourceFile>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).sort()) {
    if (!/\.ya?ml$/.test(f)) continue;
    const file = join(dir, f);
    out.set(f.replace(/\.ya?ml$/, ''), { file, text: readFileSync(file, 'utf8') });
  }
  return out;
}

export function listAgents(env: NodeJS.ProcessEnv = process.env): string[] {
  const dir = join(profilesDir(env), 'agents');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => f.replace(/\.ya?ml$/, ''))
    .sort();
}

/** True when the argument names a file rather than a shipped agent profile. */
export function looksLikeFile(arg: string): boolean {
  return arg.includes('/') || /\.ya?ml$/.test(arg);
}

/** Reads AGENT (a profile name) or FILE (a manifest path). */
export function readManifestArg(arg: string, env: NodeJS.ProcessEnv = process.env): SourceFile {
  if (looksLikeFile(arg)) {
    if (!existsSync(arg) || !statSync(arg).isFile()) {
      throw new AgentboxError('MANIFEST_NOT_FOUND', `${arg}: no such manifest file`, { details: ['give a manifest path (.yaml/.yml) or the name of a shipped agent profile'] });
    }
    return { file: arg, text: readFileSync(arg, 'utf8') };
  }
  const dir = join(profilesDir(env), 'agents');
  for (const ext of ['.yaml', '.yml']) {
    const file = join(dir, arg + ext);
    if (existsSync(file)) return { file: relativeToCwd(file), text: readFileSync(file, 'utf8') };
  }
  const presets = join(profilesDir(env), 'presets', arg + '.yaml');
  if (existsSync(presets)) return { file: relativeToCwd(presets), text: readFileSync(presets, 'utf8') };
  throw new AgentboxError('MANIFEST_NOT_FOUND', `"${termSafe(arg)}" is neither a manifest file nor a shipped agent profile${didYouMean(arg, listAgents(env))}`, {
    details: [`agent profiles: ${listAgents(env).join(', ') || '(none)'}`, 'a manifest path must end in .yaml or .yml or contain a /'],
  });
}

function relativeToCwd(file: string): string {
  const cwd = process.cwd();
  return file.startsWith(cwd + '/') ? file.slice(cwd.length + 1) : file;
}

/** Every file under templates/, keyed by its path relative to templates/. */
export function readTemplates(root: string = join(packageRoot(), 'templates')): Templates {
  const out: Record<string, string> = {};
  const walk = (dir: string, prefix: string) => {
    for (const f of readdirSync(dir).sort()) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p, `${prefix}${f}/`);
      else out[`${prefix}${f}`] = readFileSync(p, 'utf8');
    }
  };
  walk(root, '');
  return out;
}


/**
 * Writes generated files under `dir` (created if missing): each file is written to a
 * temporary name and renamed, so a reader never sees half an artifact.
 */
export function writeTree(dir: string, files: readonly { path: string; content: string; mode?: number }[]): void {
  for (const f of files) {
    if (f.path.startsWith('/') || f.path.split('/').includes('..')) throw new Error(`refusing to write outside ${dir}: ${f.path}`);
    const target = join(dir, f.path);
    mkdirSync(dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${process.pid}`;
    writeFileSync(tmp, f.content, { mode: f.mode ?? 0o644 });
    renameSync(tmp, target);
  }
}
