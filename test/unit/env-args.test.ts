/**
 * `launch --env` / `--env-file` (manifest/env-args.ts).
 * Attack: a command-line variable that smuggles a control character into the agent's
 * environment (and from there into a terminal or a generated unit), or overrides the
 * proxy variables so the agent's traffic leaves the proxy's view.
 * Defence: names from a fixed alphabet, values printable, agentbox's own variables refused.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseEnvArgs } from '../../src/manifest/env-args.js';

describe('--env and --env-file', () => {
  it('reads NAME=VALUE entries, files first, --env winning; comments, blanks and export are skipped', () => {
    const r = parseEnvArgs(['A=2', 'EMPTY='], [{ file: 'f.env', text: '# c\n\nA=1\nexport B=x=y\r\n' }]);
    expect(r).toEqual({ ok: true, env: { A: '2', B: 'x=y', EMPTY: '' } });
  });
  it('every problem is reported with where it is', () => {
    const r = parseEnvArgs(['NOVALUE', 'HTTPS_PROXY=http://evil', 'PATH=/tmp'], [{ file: 'f.env', text: 'ok=1\n9bad=2\n' }]);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toEqual([
      expect.stringMatching(/^f\.env:2: "9bad" is not a variable name/),
      expect.stringMatching(/^--env "NOVALUE": .*has no =VALUE/),
      expect.stringMatching(/^--env "HTTPS_PROXY": HTTPS_PROXY is set by agentbox itself/),
      expect.stringMatching(/^--env "PATH": PATH is set by agentbox itself/),
    ]);
  });
  it('property: no accepted value holds a control or formatting character, whatever is given', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,8}$/), fc.string({ unit: 'binary', maxLength: 20 })), { maxLength: 6 }), (pairs) => {
        const r = parseEnvArgs(pairs.map(([k, v]) => `${k}=${v}`), []);
        const bad = pairs.some(([k, v]) => /[\p{Cc}\p{Cf}\u2028\u2029]/u.test(v) || ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'HOME', 'PATH'].includes(k));
        expect(r.ok).toBe(!bad);
        if (r.ok) for (const v of Object.values(r.env)) expect(v).not.toMatch(/[\p{Cc}\p{Cf}\u2028\u2029]/u);
      }),
    );
  });
});
