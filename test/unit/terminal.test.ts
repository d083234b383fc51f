/**
 * Attack: agent-controlled text reaching the operator's terminal. The attack review put
 * ESC sequences and newlines in file names; the end-of-session summary printed them as
 * they were, so the agent could recolour, move the cursor and forge "agentbox:" lines.
 * Defence: one escaper for terminal text: C0, C1, DEL, bidirectional controls and line
 * separators become visible escapes (and a backslash `\\`), so nothing is acted on and
 * every escape reads back to exactly one original.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { termSafe, termUnescape } from '../../src/escape/terminal.js';
import { summaryLines } from '../../src/cli/commands/launch.js';

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const hostile = fc.string({ unit: fc.oneof(fc.constantFrom('\x1b', '\n', '\r', '\x07', '\x9b', '\u202e', '\u2066', '\u2028', '\\', '[', 'a', 'é', '🙂', '\x00', '\x7f'), fc.string({ minLength: 1, maxLength: 1 })), maxLength: 40 });

describe('terminal text', () => {
  it('no control or bidi character survives, and the escape is reversible (property)', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        const t = termSafe(s);
        return !UNSAFE.test(t) && termUnescape(t) === s;
      }),
      { numRuns: 2000 },
    );
  });

  it('the end-of-session summary cannot be given a forged line or an escape sequence by a file name (property)', () => {
    fc.assert(
      fc.property(fc.array(hostile, { minLength: 1, maxLength: 8 }), fc.boolean(), (names, diff) => {
        const changes = names.map((n, i) => ({ path: `/home/u/${n}${i}`, kind: 'added' as const }));
        const lines = summaryLines({ session: 's-1', exitCode: 0, endReason: 'exited', changes, egress: { allowed: 0, denied: { [`h${names[0]}:443`]: 1 } }, committed: null }, '/home/u', 'revert', diff);
        // One line per item the summary shows: a name can add none.
        const expected = 2 + 1 + (diff || changes.length <= 5 ? changes.length : 0);
        return lines.length === expected && lines.every((l) => !UNSAFE.test(l)) && lines.filter((l) => l.startsWith('agentbox:')).length === 1;
      }),
      { numRuns: 500 },
    );
  });

  it('examples read as a person expects', () => {
    expect(termSafe('a\x1b[2Jb\nagentbox: fake')).toBe('a\\x1b[2Jb\\x0aagentbox: fake');
    expect(termSafe('evil\u202efdp.exe')).toBe('evil\\u{202e}fdp.exe');
    expect(termSafe('C:\\x1b')).toBe('C:\\\\x1b');
  });
});
