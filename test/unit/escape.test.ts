/**
 * Escapers, each total: escape or throw, never pass through. Property tests show the
 * escaped form decodes back to the input under the target syntax's own rules.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { psString } from '../../src/escape/powershell.js';
import { xmlComment, xmlText } from '../../src/escape/xml.js';
import { shQuote } from '../../src/escape/shell.js';
import { execa } from 'execa';

const printable = fc.string({ unit: 'grapheme', maxLength: 30 }).filter((s) => !/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(s));

describe('escapers', () => {
  it('PowerShell: a single-quoted literal decodes to the input (all four typographic quotes doubled)', () => {
    fc.assert(
      fc.property(printable, (s) => {
        const q = psString(s);
        const body = q.slice(1, -1);
        expect(body.replace(/(['\u2018\u2019\u201a\u201b])\1/g, '$1')).toBe(s);
        expect(/(^|[^'\u2018\u2019\u201a\u201b])(['\u2018\u2019\u201a\u201b])(?!\2)/u.test(body.replace(/(['\u2018\u2019\u201a\u201b])\1/g, ''))).toBe(false);
      }),
      { numRuns: 2000 },
    );
    expect(() => psString('a\nb')).toThrow();
  });
  it('XML: entities for the five specials; comments never contain "--" or end with "-"', () => {
    fc.assert(
      fc.property(printable, (s) => {
        const c = xmlComment(s);
        expect(c.includes('--')).toBe(false);
        expect(c.endsWith('-')).toBe(false);
        expect(/[<>&"']/.test(xmlText(s).replace(/&(amp|lt|gt|quot|apos);/g, ''))).toBe(false);
      }),
      { numRuns: 2000 },
    );
    expect(xmlComment('a---')).toBe('a- - - ');
  });
  it('shell: what the shell reads back is the input', async () => {
    const samples = fc.sample(printable.filter((s) => !s.includes('\0')), 200);
    const r = await execa('sh', ['-c', samples.map((s) => `printf '%s\\0' ${shQuote(s)}`).join('; ')]);
    expect(String(r.stdout).split('\0').slice(0, -1)).toEqual(samples);
  });
});
