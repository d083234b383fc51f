/**
 * Located diagnostics: every manifest problem names the file, the line, the location
 * inside the document (`capabilities[2]`) and what would be valid.
 */

export interface Diagnostic {
  severity: 'error' | 'warning';
  file: string;
  /** JSON-path-like location: `capabilities[2]`, `agent.command[0]`, or `` for the document. */
  pointer: string;
  line: number | undefined;
  column: number | undefined;
  message: string;
}

/** Path segments (`['capabilities', 2]`) to `capabilities[2]`. */
export function pointerOf(segments: readonly (string | number)[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/** `file:line:col pointer: message`, the one human format. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line === undefined ? d.file : `${d.file}:${d.line}:${d.column ?? 1}`;
  const at = d.pointer === '' ? '' : ` ${d.pointer}:`;
  const tag = d.severity === 'warning' ? ' warning:' : '';
  return `${where}${tag}${at} ${d.message}`;
}
