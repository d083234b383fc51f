/**
 * Attack: a symlink planted where root is about to write (`agentbox init --out`, an
 * `apply` step's file, or its old predictable `NAME.agentbox-tmp`) redirects the write
 * into any file on the host. Defence: writeFileNoFollow writes a fresh O_EXCL|O_NOFOLLOW
 * temporary with a random name, then renames it over the name (replacing a link, never
 * its target), or links it (never over an existing file).
 */
import { chmodSync, lstatSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileNoFollow } from '../../src/host/open-exact.js';

describe('writeFileNoFollow', () => {
  it('replaces a symlink at the name itself; the link target is untouched', () => {
    const d = mkdtempSync(join(tmpdir(), 'agentbox-nofollow-'));
    const victim = join(d, 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(d, 'out.yaml'));
    writeFileNoFollow(join(d, 'out.yaml'), 'new', 0o640, true);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(lstatSync(join(d, 'out.yaml')).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(d, 'out.yaml'), 'utf8')).toBe('new');
    expect(lstatSync(join(d, 'out.yaml')).mode & 0o777).toBe(0o640);
    expect(readdirSync(d).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
  it('without replace, never over an existing name (a dangling symlink included)', () => {
    const d = mkdtempSync(join(tmpdir(), 'agentbox-nofollow-'));
    chmodSync(d, 0o755);
    symlinkSync(join(d, 'not-yet'), join(d, 'out.yaml'));
    expect(() => writeFileNoFollow(join(d, 'out.yaml'), 'x', 0o644, false)).toThrow(/EEXIST/);
    expect(() => readFileSync(join(d, 'not-yet'))).toThrow();
    expect(readdirSync(d).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
