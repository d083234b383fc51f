/**
 * `monitor:`, an agent's behaviour rules or a preset's default: each rule's paths
 * expanded against the home, its byte size parsed, and what makes a rule unable to
 * trip refused where it is written. Pure.
 */
import type { MonitorRule, Preset, RuleSource } from '../model/types.js';
import { lexicalPath } from '../model/paths.js';
import { parseSize } from '../model/grammar.js';
import type { RawMonitorRule } from './schema.js';
import type { ErrFn } from './egress-rules.js';

export function monitorRules(raw: false | RawMonitorRule[] | undefined, home: string, file: string, origin: Pick<RuleSource, 'origin' | 'preset'>, err: ErrFn): MonitorRule[] | undefined {
  if (raw === undefined) return undefined;
  if (raw === false) return [];
  const names = new Set<string>();
  const out: MonitorRule[] = [];
  raw.forEach((r, i) => {
    const at = (k?: string) => (k ? ['monitor', i, 'reads', k] : ['monitor', i]);
    const ptr = (k?: string) => (k ? `monitor[${i}].reads.${k}` : `monitor[${i}]`);
    if (names.has(r.name)) err(['monitor', i, 'name'], `monitor[${i}].name`, `"${r.name}" is used by another rule; each rule needs its own name (the audit names the rule that tripped)`);
    names.add(r.name);
    const under: string[] = [];
    (r.reads.under ?? []).forEach((u, j) => {
      const lex = lexicalPath(u, home);
      if (!lex.ok) err(['monitor', i, 'reads', 'under', j], `monitor[${i}].reads.under[${j}]`, lex.message);
      else under.push(lex.literal);
    });
    let bytes: number | undefined;
    if (r.reads.bytes !== undefined) {
      const b = typeof r.reads.bytes === 'number' ? { ok: true as const, value: r.reads.bytes } : parseSize(r.reads.bytes);
      if (b.ok) bytes = b.value;
      else err(at('bytes'), ptr('bytes'), `${b.message}; write a number of bytes or a size such as 20MiB`);
    }
    if (r.reads.files === undefined && bytes === undefined) err(at(), ptr(), 'a rule needs reads.files or reads.bytes (the threshold that trips it)');
    if (!r.reads.under?.length && !r.reads.named?.length && !r.reads.labels?.length) {
      err(at(), ptr(), 'say whose reads count: reads.under (folders), reads.named (folder names such as HR) or reads.labels (organisation labels)');
    }
    out.push({
      name: r.name,
      description: r.description ?? '',
      under,
      named: [...(r.reads.named ?? [])],
      labels: [...(r.reads.labels ?? [])],
      files: r.reads.files,
      bytes,
      withinSeconds: r.reads.withinSeconds,
      thenUploadSeconds: r.thenUpload?.withinSeconds,
      onTrip: r.onTrip,
      source: { ...origin, file, pointer: `monitor[${i}]`, text: `monitor ${r.name}` },
    });
  });
  return out;
}

/** The rules of the presets, in order, when the agent's manifest has no `monitor:` of its own. */
export function presetMonitor(presets: readonly Preset[]): MonitorRule[] {
  const seen = new Set<string>();
  return presets.flatMap((p) => p.monitor ?? []).filter((r) => !seen.has(r.name) && (seen.add(r.name), true));
}
