/**
 * Attack: an agent-controlled value (a host, a purpose, a path) in the audit log opens a
 * tag, closes an attribute or reorders text in the HTML report. Defence: htmlText turns
 * `& < > " '` into entities and every control, bidi override and line separator into a
 * visible escape; what a browser decodes is the terminal-safe text, nothing more.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { htmlText } from '../../src/escape/html.js';
import { termSafe } from '../../src/escape/terminal.js';
import { renderReport } from '../../src/audit/report.js';
import type { AuditRecord } from '../../src/audit/record.js';

const decode = (s: string) => s.replace(/&(amp|lt|gt|quot|#39);/g, (_m, n: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[n]!);
const hostile = fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom('<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "'/><svg onload=x>", '\u202eexe.txt', '</td></tr></table>', '&lt;b&gt;'));

describe('property: HTML escaping', () => {
  it('no value can open a tag or leave an attribute; decoding gives back the terminal-safe text', () => {
    fc.assert(
      fc.property(hostile, (v) => {
        const h = htmlText(v);
        expect(h).not.toMatch(/[<>"']/);
        expect(h).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u2028\u2029]/u);
        expect(decode(h)).toBe(termSafe(v));
      }),
      { numRuns: 3000 },
    );
  });

  it('a report built from hostile entries has exactly the markup agentbox writes', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ session: fc.constantFrom('s-a', 's-b'), resource: hostile, reason: hostile }), { minLength: 1, maxLength: 6 }), (rows) => {
        const records: AuditRecord[] = rows.map((r, i) => ({ seq: i + 1, time: new Date(1_800_000_000_000 + i * 1000).toISOString(), session: r.session, agent: 'a', action: i % 2 ? 'egress.connect' : 'consent.request', resource: r.resource, decision: 'deny', reason: r.reason, prev: '0'.repeat(64), sig: 'x' }));
        const html = renderReport({ logs: [], records, since: null, generatedAt: 'now', version: 'test' });
        expect(html).not.toMatch(/<(script|img|iframe|link|object|embed|svg on|a )/i);
        // An event handler can only be an attribute inside a tag: no tag carries one.
        for (const tag of html.match(/<[a-zA-Z][^>]*>/g) ?? []) expect(tag).not.toMatch(/\son[a-z]+=/i);
        // Tags in the output are only agentbox's own.
        const tags = new Set([...html.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => m[1]!.toLowerCase()));
        for (const t of tags) expect(['html', 'head', 'meta', 'title', 'style', 'body', 'h1', 'h2', 'h3', 'p', 'section', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'div', 'figure', 'figcaption', 'svg', 'text', 'rect', 'article', 'small', 'span']).toContain(t);
      }),
      { numRuns: 300 },
    );
  });
});
