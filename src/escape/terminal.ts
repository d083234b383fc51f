/**
 * Terminal text: the one way an agent-controlled string (a file name, a host, a URL
 * path, a consent purpose) is written to a person's terminal. C0 controls (newline and
 * ESC among them), DEL, C1 controls, bidirectional overrides and isolates, and line and
 * paragraph separators are shown as escapes, and a backslash as `\\`, so no value can
 * move the cursor, recolour, retitle, forge an "agentbox:" line or reorder what a
 * person reads; and every escape reads back to exactly one original.
 */

/** Characters a terminal or a bidi renderer would act on rather than show. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\\]/gu;

export function termSafe(text: string): string {
  return text.replace(UNSAFE, (c) => {
    if (c === '\\') return '\\\\';
    const n = c.codePointAt(0)!;
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}

/** Reverses termSafe (for tests: the escape loses nothing). */
export function termUnescape(text: string): string {
  return text.replace(/\\(\\|x([0-9a-f]{2})|u\{([0-9a-f]+)\})/g, (_m, all: string, x?: string, u?: string) => (all === '\\' ? '\\' : String.fromCodePoint(parseInt((x ?? u)!, 16))));
}
