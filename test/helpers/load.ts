/**
 * Loading manifests in tests: the shipped presets, a fixed home and an in-memory
 * resolver, so results do not depend on this machine's files.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadManifest, type LoadContext, type SourceFile } from '../../src/manifest/load.js';
import { identityResolver, type PathResolver } from '../../src/model/paths.js';
import type { Model } from '../../src/model/types.js';
import { readTemplates } from '../../src/host/files.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const HOME = '/home/user';
export const templates = readTemplates(join(ROOT, 'templates'));

export function shippedPresets(): Map<string, SourceFile> {
  const dir = join(ROOT, 'profiles', 'presets');
  return new Map(readdirSync(dir).filter((f) => f.endsWith('.yaml')).map((f) => [f.replace(/\.yaml$/, ''), { file: `profiles/presets/${f}`, text: readFileSync(join(dir, f), 'utf8') }]));
}

export function shippedAgents(): SourceFile[] {
  const dir = join(ROOT, 'profiles', 'agents');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ file: `profiles/agents/${f}`, text: readFileSync(join(dir, f), 'utf8') }));
}

export function ctx(over: Partial<LoadContext> = {}): LoadContext {
  return { presets: shippedPresets(), home: HOME, resolver: identityResolver, ...over };
}

/** Loads YAML text; throws with the diagnostics if it is invalid. */
export function model(text: string, over: Partial<LoadContext> = {}, file = 'test.yaml'): Model {
  const r = loadManifest({ file, text }, ctx(over));
  if (!r.model) throw new Error(r.errors.map((e) => `${e.pointer}: ${e.message}`).join('\n'));
  return r.model;
}

export function load(text: string, over: Partial<LoadContext> = {}, file = 'test.yaml') {
  return loadManifest({ file, text }, ctx(over));
}

/** A resolver from a table of symlinks (absolute link path -> target as readlink gives it). */
export function linkResolver(links: Record<string, string>): PathResolver {
  return {
    resolve(path) {
      let real = '/';
      const pending = path.split('/').filter(Boolean);
      let hops = 0;
      while (pending.length) {
        const seg = pending.shift()!;
        const cand = real === '/' ? `/${seg}` : `${real}/${seg}`;
        const target = links[cand];
        if (target === undefined) {
          real = cand;
          continue;
        }
        if (++hops > 40) return { ok: false, link: cand, target, container: real };
        const abs = target.startsWith('/') ? target : `${real === '/' ? '' : real}/${target}`;
        const norm = abs.split('/').reduce<string[]>((acc, s) => (s === '..' ? acc.slice(0, -1) : s && s !== '.' ? [...acc, s] : acc), []);
        const resolved = '/' + norm.join('/');
        if (!(real === '/' || resolved === real || resolved.startsWith(real + '/'))) return { ok: false, link: cand, target, container: real };
        pending.unshift(...norm);
        real = '/';
      }
      return { ok: true, real };
    },
  };
}
