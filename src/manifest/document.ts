/**
 * A manifest or preset document as the loader reads it: the file, where its diagnostics
 * go, and the parse and schema check every document gets first. Pure.
 */
import type { Diagnostic } from './diagnostics.js';
import type { PathResolver } from '../model/paths.js';
import type { ProgramResolver } from './program.js';
import { checkSchema, parseYaml, type ParsedDocument } from './parse.js';
import type { RawManifest } from './schema.js';

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
  /** Finds the agent program (PATH lookup, links, `#!`); without it programs are taken as written. */
  programs?: ProgramResolver;
  /** The directories a bare program name is looked up in (default BOX_PATH). */
  path?: readonly string[];
  /** `--profile`: replaces the manifest's `extends`; grants beyond the new ceiling are dropped with a warning. */
  profileOverride?: readonly string[];
}

export interface Collector {
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

export function diag(doc: ParsedDocument, severity: 'error' | 'warning', segments: (string | number)[], pointer: string, message: string): Diagnostic {
  const pos = doc.locate(segments);
  return { severity, file: doc.file, pointer, line: pos?.line, column: pos?.column, message };
}

/** Parses a document and checks it against the schema. */
export function readDocument(src: SourceFile, opts: { partial?: boolean } = {}): { doc?: ParsedDocument; raw?: RawManifest; errors: Diagnostic[] } {
  const parsed = parseYaml(src.text, src.file);
  if (!parsed.doc) return { errors: parsed.errors };
  const checked = checkSchema(parsed.doc);
  // partial: the schema errors, and what is valid without the offending keys, to check further.
  if (!checked.manifest) return { doc: parsed.doc, errors: checked.errors, ...(opts.partial && checked.rest ? { raw: checked.rest } : {}) };
  return { doc: parsed.doc, raw: checked.manifest, errors: [] };
}

