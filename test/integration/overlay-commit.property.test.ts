/**
 * Attack, as a class rather than one case each: an agent shapes its upper layer (links
 * to host files and folders, links replaced by folders, type changes, deep renames,
 * deletions under opaque folders, setuid bits) and the persist commit applies it to the
 * host as root.
 * Defence (src/native/overlay-commit/): the commit applies exactly what the overlay
 * showed, as the agent's uid, never following a link, and nothing outside the grant
 * changes.
 * Property: for random host trees and random operations of the agent inside a real
 * overlay, the grant after the commit equals the merged view the agent saw (types,
 * contents, link targets, permission bits without setuid/setgid), every file the commit
 * created is the agent's, and a host folder the links point at is unchanged.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, it } from 'vitest';
import { ROOT } from '../helpers/load.js';

const HELPER = join(ROOT, 'dist', 'native', 'overlay-commit');
const base = mkdtempSync(join(tmpdir(), 'agentbox-ocprop-'));
chmodSync(base, 0o755);
const outside = join(base, 'outside');
mkdirSync(outside);
writeFileSync(join(outside, 'host-file'), 'host\n');
const layers = join(base, 'layers');
mkdirSync(layers);
execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'agentbox-test', layers]);
afterAll(() => {
  execFileSync('umount', ['-l', layers]);
});

/** What a tree shows: one line per entry (type, mode without setuid/setgid, content or link target). */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.push(`L ${r} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(`D ${r} ${(st.mode & 0o777).toString(8)}`);
        walk(p, r);
      } else if (st.isFile()) out.push(`F ${r} ${(st.mode & 0o777).toString(8)} ${readFileSync(p, 'utf8')}`);
    }
  };
  walk(dir, '');
  return out;
}

const names = fc.constantFrom('a', 'b', 'c', 'd');
const relPath = fc.array(names, { minLength: 1, maxLength: 3 }).map((p) => p.join('/'));
/** One shell operation of the agent, inside the grant. */
const op = fc.oneof(
  fc.tuple(relPath, fc.string({ minLength: 0, maxLength: 6, unit: fc.constantFrom('x', 'y', 'z') })).map(([p, c]) => `mkdir -p "$(dirname ${p})" 2>/dev/null; printf '${c}' > ${p}`),
  relPath.map((p) => `mkdir -p ${p}`),
  relPath.map((p) => `rm -rf ${p}`),
  relPath.map((p) => `rm -rf ${p} && mkdir -p ${p} && echo fresh > ${p}/n`),
  fc.tuple(relPath, fc.constantFrom(outside, join(outside, 'host-file'), 'a', '../b', '/etc/passwd')).map(([p, t]) => `mkdir -p "$(dirname ${p})" 2>/dev/null; rm -rf ${p}; ln -s ${t} ${p}`),
  fc.tuple(relPath, relPath).map(([a, b]) => `mv ${a} ${b} 2>/dev/null`),
  fc.tuple(relPath, fc.constantFrom('600', '755', '4755', '2750', '700')).map(([p, m]) => `chmod ${m} ${p}`),
);
/** The host tree before the session, made as the agent's uid (its own grant). */
const hostOp = fc.oneof(
  fc.tuple(relPath, fc.constantFrom('1', '2')).map(([p, c]) => `mkdir -p "$(dirname ${p})" 2>/dev/null; echo ${c} > ${p}`),
  relPath.map((p) => `mkdir -p ${p}`),
  fc.tuple(relPath, fc.constantFrom(outside, join(outside, 'host-file'))).map(([p, t]) => `mkdir -p "$(dirname ${p})" 2>/dev/null; rm -rf ${p}; ln -s ${t} ${p}`),
  // Folders of the agent's it cannot write or search until it changes their mode.
  fc.tuple(relPath, fc.constantFrom('500', '555', '300', '700')).map(([p, m]) => `chmod ${m} ${p}`),
);

let n = 0;
const asAgent = (cwd: string, script: string) => execFileSync('setpriv', ['--reuid=64000', '--regid=64000', '--clear-groups', '/bin/sh', '-c', `cd ${cwd} && { true; ${script || 'true'}; } 2>/dev/null; true`]);

describe('the persist commit (property)', () => {
  it('applies exactly what the overlay showed, and nothing outside the grant changes', () => {
    const before = snapshot(outside).join('\n') + lstatSync(join(outside, 'host-file')).uid;
    fc.assert(
      fc.property(fc.array(hostOp, { maxLength: 6 }), fc.array(op, { minLength: 1, maxLength: 10 }), (hostOps, ops) => {
        const i = ++n;
        const grant = join(base, `g${i}`);
        const upper = join(layers, `u${i}`);
        const work = join(layers, `w${i}`);
        const merged = join(base, `m${i}`);
        for (const d of [grant, upper, work, merged]) mkdirSync(d);
        chownSync(grant, 64000, 64000);
        chownSync(upper, 64000, 64000);
        asAgent(grant, hostOps.join('; '));
        execFileSync('mount', ['-t', 'overlay', 'agentbox', '-o', `lowerdir=${grant},upperdir=${upper},workdir=${work},redirect_dir=off,metacopy=off,index=off,xino=off`, merged]);
        let seen: string[];
        try {
          asAgent(merged, ops.join('; '));
          seen = snapshot(merged);
        } finally {
          execFileSync('umount', [merged]);
        }
        execFileSync(HELPER, ['commit', upper, grant, '64000', '64000']);
        const after = snapshot(grant);
        // setuid/setgid never survive on a file (a folder keeps setgid: it only sets the group
        // new entries get); otherwise the grant is what the agent saw.
        const expected = seen.map((l) => l);
        const owners: ReturnType<typeof lstatSync>[] = [];
        const walk = (d: string) => {
          for (const e of readdirSync(d)) {
            const st = lstatSync(join(d, e));
            owners.push(st);
            if (st.isDirectory()) walk(join(d, e));
          }
        };
        walk(grant);
        const ok = JSON.stringify(after) === JSON.stringify(expected) && owners.every((st) => st!.uid === 64000 && (Number(st!.mode) & (st!.isDirectory() ? 0o4000 : 0o6000)) === 0);
        rmSync(grant, { recursive: true, force: true });
        rmSync(upper, { recursive: true, force: true });
        rmSync(work, { recursive: true, force: true });
        rmSync(merged, { recursive: true, force: true });
        if (!ok) console.log({ hostOps, ops, expected, after });
        return ok && snapshot(outside).join('\n') + lstatSync(join(outside, 'host-file')).uid === before;
      }),
      { numRuns: Math.max(50, Number(process.env.AGENTBOX_PROPERTY_RUNS ?? 5000) / 25) },
    );
  }, 300_000);
});
