/**
 * Manifest text to a schema-checked document with locations. Pure.
 *
 * YAML 1.2 core schema only (no custom tags, no merge keys), duplicate keys are
 * errors, and alias expansion is bounded by the yaml library's default.
 */

import { didYouMean } from '../model/suggest.js';
import type { ErrorObject } from 'ajv';
import { createRequire } from 'node:module';
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { Diagnostic } from './diagnostics.js';
import { pointerOf } from './diagnostics.js';
import { manifestSchema, type RawManifest } from './schema.js';

/** A parsed document that can locate any path inside it. */
export interface ParsedDocument {
  file: string;
  value: unknown;
  locate(segments: readonly (string | number)[], key?: boolean): { line: number; column: number } | undefined;
}

export function parseYaml(text: string, file: string): { doc?: ParsedDocument; errors: Diagnostic[] } {
  const lineCounter = new LineCounter();
  const doc: Document.Parsed = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true, merge: false, schema: 'core' });
  const errors: Diagnostic[] = doc.errors.map((e) => {
    const pos = e.linePos?.[0];
    return {
      severity: 'error' as const,
      file,
      pointer: '',
      line: pos?.line,
      column: pos?.col,
      message: `YAML: ${e.message.split('\n')[0]}${e.code === 'DUPLICATE_KEY' ? ' (each key may appear once)' : ''}`,
    };
  });
  if (errors.length > 0) return { errors };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    return { errors: [{ severity: 'error', file, pointer: '', line: undefined, column: undefined, message: `YAML: ${(e as Error).message}` }] };
  }
  const locate = (segments: readonly (string | number)[], key = false) => {
    let node: unknown = doc.contents;
    let keyNode: unknown;
    for (const seg of segments) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) break;
        keyNode = pair.key;
        node = pair.value;
      } else if (node && typeof node === 'object' && 'items' in node && Array.isArray((node as { items: unknown[] }).items)) {
        const item = (node as { items: unknown[] }).items[Number(seg)];
        if (item === undefined) break;
        keyNode = undefined;
        node = item;
      } else break;
    }
    const target = (key && keyNode ? keyNode : node) as { range?: [number, number, number] } | null;
    const offset = target?.range?.[0];
    if (offset === undefined) return undefined;
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  return { doc: { file, value, locate }, errors: [] };
}

type Validate = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };
let compiled: Validate | undefined;

/** Installs the build's precompiled validator (see host/build-validator.ts). */
export function usePrecompiledValidator(v: Validate): void {
  compiled = v;
}

function validator(): Validate {
  if (!compiled) {
    // Loaded on demand: a built agentbox uses the precompiled validator and never pays for ajv.
    const { Ajv } = createRequire(import.meta.url)('ajv') as typeof import('ajv');
    compiled = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(manifestSchema) as Validate;
  }
  return compiled;
}

/** Checks the document against the published schema; every error located and explained. */
export function checkSchema(doc: ParsedDocument): { manifest?: RawManifest; errors: Diagnostic[]; rest?: RawManifest } {
  const validate = validator();
  if (validate(doc.value)) return { manifest: doc.value as RawManifest, errors: [] };
  const found = (validate.errors ?? []).filter((e) => !isNoise(e));
  const errors = dedupe(found.map((e) => schemaDiagnostic(doc, e)));
  // What is left once every offending key is removed, when that much is valid: the loader
  // checks it too, so one pass reports every error (a bad ttl and an unknown preset).
  const rest = withoutOffending(doc.value, found);
  return { errors, ...(rest !== undefined && validator()(rest) ? { rest: rest as RawManifest } : {}) };
}

/** A copy of `value` without the object keys the errors point at (an array with a bad item goes whole). */
function withoutOffending(value: unknown, errors: ErrorObject[]): unknown {
  if (errors.some((e) => e.keyword === 'required')) return undefined;
  const copy = structuredClone(value) as Record<string | number, unknown>;
  for (const e of errors) {
    const segs = segmentsOf(e.instancePath);
    if (e.keyword === 'additionalProperties') segs.push((e.params as { additionalProperty: string }).additionalProperty);
    const firstIndex = segs.findIndex((x) => typeof x === 'number');
    const path = firstIndex >= 0 ? segs.slice(0, firstIndex) : segs;
    if (path.length === 0) return undefined;
    let node: Record<string | number, unknown> | undefined = copy;
    for (const k of path.slice(0, -1)) node = node?.[k] as Record<string | number, unknown> | undefined;
    if (node && typeof node === 'object') delete node[path[path.length - 1]!];
  }
  return copy;
}

function isNoise(e: ErrorObject): boolean {
  // `if`/`anyOf` wrappers repeat what their branches already said.
  return e.keyword === 'if' || e.keyword === 'anyOf';
}

function segmentsOf(instancePath: string): (string | number)[] {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^[0-9]+$/.test(s) ? Number(s) : s));
}

function schemaDiagnostic(doc: ParsedDocument, e: ErrorObject): Diagnostic {
  const segments = segmentsOf(e.instancePath);
  let message: string;
  let locateKey = false;
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(propertiesAt(segments) ?? {});
      segments.push(extra);
      locateKey = true;
      message = `unknown key "${extra}"${didYouMean(String(extra), allowed)}${allowed.length > 0 ? `; valid keys here: ${allowed.join(', ')}` : ''}`;
      break;
    }
    case 'required':
      message = `missing required key "${(e.params as { missingProperty: string }).missingProperty}"`;
      break;
    case 'enum':
      message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
      break;
    case 'const':
      message = `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`;
      break;
    case 'pattern':
      message = `${JSON.stringify(valueAt(doc.value, segments))} is not valid here: ${patternHint(segments)}`;
      break;
    case 'propertyNames':
      message = `has a key that is not allowed: ${e.message ?? ''}`;
      break;
    case 'minLength':
      message = (e.params as { limit: number }).limit === 1 ? 'must not be empty' : `must be at least ${(e.params as { limit: number }).limit} characters`;
      break;
    case 'maxLength':
      message = `must be at most ${(e.params as { limit: number }).limit} characters`;
      break;
    case 'minItems':
      message = `needs at least ${(e.params as { limit: number }).limit} item${(e.params as { limit: number }).limit === 1 ? '' : 's'}`;
      break;
    case 'maxItems':
      message = `may have at most ${(e.params as { limit: number }).limit} items`;
      break;
    case 'type':
      message = `must be ${(e.params as { type: string }).type}`;
      break;
    default:
      message = e.message ?? 'is not valid';
  }
  const pos = doc.locate(segments, locateKey);
  return { severity: 'error', file: doc.file, pointer: pointerOf(segments), line: pos?.line, column: pos?.column, message };
}

function patternHint(segments: (string | number)[]): string {
  const key = segments.filter((s) => typeof s === 'string').join('.');
  if (key.endsWith('metadata.name') || key === 'extends') return 'use lowercase letters, digits and dashes, starting with a letter (at most 48 characters)';
  if (key === 'ttl') return 'write a duration such as 30s, 10m, 1h or 1h30m';
  if (key.endsWith('memory')) return 'write a size such as 512MiB or 2GiB';
  if (key.endsWith('user')) return 'write a POSIX account name: lowercase letters, digits, _ and -, starting with a letter or _';
  if (key.endsWith('bundleId')) return 'write a reverse-DNS bundle identifier such as com.anthropic.claude';
  return 'see the schema';
}

function propertiesAt(segments: (string | number)[]): Record<string, unknown> | undefined {
  let node: unknown = manifestSchema;
  for (const s of segments) {
    const n = node as { properties?: Record<string, unknown>; items?: unknown; additionalProperties?: unknown };
    if (typeof s === 'number') node = n.items;
    else node = n.properties?.[s] ?? n.additionalProperties;
    if (node === undefined) return undefined;
  }
  return (node as { properties?: Record<string, unknown> }).properties;
}

function valueAt(value: unknown, segments: (string | number)[]): unknown {
  let v = value;
  for (const s of segments) v = (v as Record<string | number, unknown> | undefined)?.[s];
  return v;
}

function dedupe(list: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const k = `${d.pointer}|${d.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
