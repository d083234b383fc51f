/**
 * Role presets: a preset file loaded into its ceiling and default rules, and the
 * ceiling check every grant of a manifest passes. Pure.
 */
import { didYouMean } from '../model/suggest.js';
import type { ExecGrant, FsGrant, NetGrant, Preset } from '../model/types.js';
import type { ParsedDocument } from './parse.js';
import { diag, readDocument, type Collector, type LoadContext } from './document.js';
import { scopes, type Scoped } from './scopes.js';
import { dlpRules } from './egress-rules.js';
import { monitorRules } from './monitor-rules.js';

/** Loads one preset file into a Preset and its default rules. */
export function loadPreset(name: string, ctx: LoadContext, out: Collector, refDoc: ParsedDocument, refSegments: (string | number)[], refPointer: string): { preset: Preset; scoped: Scoped } | undefined {
  const src = ctx.presets.get(name);
  if (!src) {
    const known = [...ctx.presets.keys()].sort();
    out.errors.push(diag(refDoc, 'error', refSegments, refPointer, `unknown preset "${name}"${didYouMean(name, known)}; available presets: ${known.join(', ') || '(none)'}`));
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
  // A preset's egress is a default DLP only: hosts, consent and limits belong to agents.
  const { dlp: rawDlp, ...otherEgress } = raw.egress ?? {};
  for (const k of Object.keys(otherEgress)) local.errors.push(diag(r.doc, 'error', ['egress', k], `egress.${k}`, `presets carry only egress.dlp (a default); egress.${k} belongs in the agent's manifest`));
  const dlp = typeof rawDlp !== 'object' ? undefined : dlpRules(rawDlp, ['egress', 'dlp'], (segments, pointer, message) => local.errors.push(diag(r.doc!, 'error', segments, pointer, message)), `preset ${name}`);
  const monitor = monitorRules(raw.monitor, ctx.home, src.file, { origin: 'preset', preset: name }, (segments, pointer, message) => local.errors.push(diag(r.doc!, 'error', segments, pointer, message)));
  out.errors.push(...local.errors);
  out.warnings.push(...local.warnings);
  if (local.errors.length > 0 || !raw.ceiling) return undefined;
  return {
    preset: { name, description: raw.metadata.description ?? '', summary: (raw.summary ?? '').trim(), ceiling: raw.ceiling, file: src.file, ...(dlp ? { dlp } : {}), ...(monitor?.length ? { monitor } : {}) },
    scoped,
  };
}

/** Which preset ceilings admit this grant; an empty `extends` admits everything. */
export function withinCeiling(presets: Preset[], g: { type: 'fs-read' | 'fs-write' | 'net' | 'exec' }): boolean {
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

export function ceilingMessage(presets: Preset[], what: string): string {
  const names = presets.map((p) => p.name);
  const admitting = what === 'write files' ? 'editor or organizer' : what === 'connect to the network' ? 'organizer' : 'a preset that allows it';
  return `exceeds the ceiling of preset${names.length > 1 ? 's' : ''} ${names.join(', ')}: ${names.length > 1 ? 'none of them allows' : `${names[0]} does not allow`} the agent to ${what}. Remove the grant, or extend ${admitting}`;
}

export const grantKind = (g: FsGrant | NetGrant | ExecGrant, type: 'fs' | 'net' | 'exec') =>
  type === 'fs' ? ((g as FsGrant).access === 'write' ? 'fs-write' : 'fs-read') : type;

export const whatOf = { 'fs-read': 'read files', 'fs-write': 'write files', net: 'connect to the network', exec: 'run programs' } as const;

