/**
 * Attack: the persist commit, where what the agent wrote is applied to the host. The
 * attack review found that it ran as root and followed symlinks: a symlink planted at
 * the commit's guessable temp name, or a committed symlink later replaced by a
 * directory, had root write the agent's bytes into any host file or directory, and
 * chown on a committed symlink changed its target; that type changes aborted it half
 * way (later changes lost, deleted files back, a temp file left); that a large setuid
 * file sat root-owned in the grant while it was copied; that 2,000 nested directories
 * crashed the launcher and left the upper layer on disk; and that writes were bounded
 * by nothing but the host's disk.
 * Defence: the overlay-commit helper walks the upper layer by fd without following any
 * link and writes as the agent's uid with no capabilities, confined by Landlock to the
 * grant; staged entries under unpredictable names (O_EXCL|O_NOFOLLOW, 0600) take their
 * place by rename (RENAME_EXCHANGE for type changes), all or nothing; regular files never
 * carry setuid/setgid bits or foreign ownership; the layers live on a sparse image of
 * limits.disk bytes, dropped whole on revert.
 */
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { BIN } from '../test/helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'agentbox-persist-'));
chmodSync(base, 0o755);
const outside = join(base, 'outside');
mkdirSync(outside);
writeFileSync(join(outside, 'victim'), 'host data\n');
chmodSync(outside, 0o755);

let n = 0;
/** A fresh write grant owned by the agent uid, and a manifest persisting it. */
function grant(extra = ''): { dir: string; manifest: string } {
  const dir = join(base, `work-${++n}`);
  mkdirSync(dir);
  chownSync(dir, 64000, 64000);
  const manifest = join(base, `m-${n}.yaml`);
  writeFileSync(manifest, `apiVersion: agentbox/v1\nkind: Agent\nmetadata: { name: persist${n} }\nagent: { command: [/bin/true] }\ncapabilities: [exec:/usr/bin, exec:/bin, "fs:write:${dir}"]\nruntime: { snapshot: persist }\n${extra}`);
  return { dir, manifest };
}

const run = (manifest: string, script: string) =>
  execa(process.execPath, [BIN, 'launch', manifest, '--home', base, '--', '/bin/sh', '-c', script], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: join(base, 'state'), NO_COLOR: '1' } });

const agentOwned = (dir: string) => {
  const bad: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      const st = lstatSync(p);
      if (st.uid !== 64000 || (st.mode & 0o6000) !== 0) bad.push(`${p} uid=${st.uid} mode=${(st.mode & 0o7777).toString(8)}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return bad;
};

describe('persist commit attacks', () => {
  it('symlinks planted at temp-like names, and symlinks to host files, never lead the commit outside the grant', async () => {
    const { dir, manifest } = grant();
    writeFileSync(join(dir, 'doc'), 'old\n');
    chownSync(join(dir, 'doc'), 64000, 64000);
    // The old commit wrote `.agentbox-commit-PID-NAME` next to each file: plant that and
    // random .agentbox-* names as links to the victim, then change `doc`.
    const script = [
      `for p in $(seq 1 400); do ln -s ${outside}/victim ${dir}/.agentbox-commit-$p-doc; done`,
      `ln -s ${outside}/victim ${dir}/.agentbox-0123456789abcdef01234567`,
      `ln -s ${outside} ${dir}/outlink`,
      `echo agent > ${dir}/doc`,
    ].join('; ');
    const r = await run(manifest, script);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('host data\n');
    expect(statSync(join(outside, 'victim')).uid).toBe(0);
    expect(statSync(outside).uid).toBe(0);
    expect(readFileSync(join(dir, 'doc'), 'utf8')).toBe('agent\n');
    // The links themselves are committed as links, owned by the agent (never chown'ed through).
    expect(readlinkSync(join(dir, 'outlink'))).toBe(outside);
    expect(lstatSync(join(dir, 'outlink')).uid).toBe(64000);
  });

  it('a link committed in one session and replaced by a directory in the next writes into the grant, not the link target', async () => {
    const { dir, manifest } = grant();
    expect((await run(manifest, `ln -s ${outside} ${dir}/d`)).exitCode).toBe(0);
    expect(readlinkSync(join(dir, 'd'))).toBe(outside);
    const r = await run(manifest, `rm ${dir}/d && mkdir ${dir}/d && echo planted > ${dir}/d/new && echo x > ${dir}/d/victim`);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(lstatSync(join(dir, 'd')).isDirectory()).toBe(true);
    expect(readFileSync(join(dir, 'd', 'new'), 'utf8')).toBe('planted\n');
    expect(existsSync(join(outside, 'new'))).toBe(false);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('host data\n');
  });

  it('a link swapped in on the host while the session runs is replaced, never followed (the commit is bounded by the kernel)', async () => {
    const { dir, manifest } = grant();
    mkdirSync(join(dir, 'sub'));
    chownSync(join(dir, 'sub'), 64000, 64000);
    // The agent writes into sub/; meanwhile (as another process of its uid could) the host's sub/ becomes a link out.
    const session = run(manifest, `echo mine > ${dir}/sub/file; sleep 1`);
    await new Promise((r) => setTimeout(r, 600));
    await execa('setpriv', ['--reuid=64000', '--regid=64000', '--clear-groups', '/bin/sh', '-c', `mv ${dir}/sub ${dir}/sub.real && ln -s ${outside} ${dir}/sub`]);
    const r = await session;
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(existsSync(join(outside, 'file'))).toBe(false);
    expect(lstatSync(join(dir, 'sub')).isDirectory()).toBe(true);
    expect(readFileSync(join(dir, 'sub', 'file'), 'utf8')).toBe('mine\n');
  });

  it('type changes apply exactly what the overlay shows: dir→file, file→dir, rm -rf d; mkdir d, deletions stay deleted', async () => {
    const { dir, manifest } = grant();
    await execa('setpriv', ['--reuid=64000', '--regid=64000', '--clear-groups', '/bin/sh', '-c', `cd ${dir} && mkdir -p a/x b c && echo 1 > a/x/f && echo 2 > b/keep && echo 3 > b/gone && echo 4 > c/old && echo 5 > f && echo 6 > z`]);
    const r = await run(manifest, `cd ${dir} && rm -rf a && echo nowfile > a && rm f && mkdir -p f/inner && echo deep > f/inner/g && rm -rf c && mkdir c && echo fresh > c/new && rm b/gone && echo 7 > z`);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('nowfile\n');
    expect(readFileSync(join(dir, 'f', 'inner', 'g'), 'utf8')).toBe('deep\n');
    expect(readdirSync(join(dir, 'c'))).toEqual(['new']);
    expect(readdirSync(join(dir, 'b'))).toEqual(['keep']);
    expect(readFileSync(join(dir, 'z'), 'utf8')).toBe('7\n');
    // Nothing staged is left behind.
    expect(readdirSync(dir).filter((x) => x.startsWith('.agentbox'))).toEqual([]);
    expect(agentOwned(dir)).toEqual([]);
  });

  it('a commit that cannot finish changes nothing: the grant is as it was, the work is kept aside, the failure audited', async () => {
    const { dir, manifest } = grant();
    // The grant lives on a 2 MiB file system: staging a 1.5 MiB replacement beside the 1 MiB original cannot fit.
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0755', 'agentbox-test', dir]);
    try {
      chownSync(dir, 64000, 64000);
      await execa('setpriv', ['--reuid=64000', '--regid=64000', '--clear-groups', '/bin/sh', '-c', `head -c 1048576 /dev/zero > ${dir}/big && echo a > ${dir}/small && echo keep > ${dir}/other`]);
      const r = await run(manifest, `echo changed > ${dir}/small; rm ${dir}/other; head -c 1572864 /dev/urandom > ${dir}/big`);
      expect(r.exitCode).toBe(0);
      expect(String(r.stderr)).toMatch(/NOT committed/);
      expect(String(r.stderr)).toMatch(/the agent's changes are kept in/);
      expect(readFileSync(join(dir, 'small'), 'utf8')).toBe('a\n');
      expect(readFileSync(join(dir, 'other'), 'utf8')).toBe('keep\n');
      expect(statSync(join(dir, 'big')).size).toBe(1048576);
      expect(readdirSync(dir).sort()).toEqual(['big', 'other', 'small']);
      const audit = readFileSync(join(base, 'state', 'audit.jsonl'), 'utf8');
      expect(audit).toMatch(/"action":"persist\.failed"/);
    } finally {
      await execa('umount', [dir], { reject: false });
    }
  });

  it('no committed file is ever setuid or root-owned, even while a large one is copied', async () => {
    const { dir, manifest } = grant();
    const seen: string[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const e of existsSync(dir) ? readdirSync(dir) : []) {
          try {
            const st = lstatSync(join(dir, e));
            if (st.uid === 0 || (st.mode & 0o6000) !== 0) seen.push(`${e} uid=${st.uid} mode=${(st.mode & 0o7777).toString(8)}`);
          } catch {
            // renamed meanwhile
          }
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    const r = await run(manifest, `head -c 209715200 /dev/zero > ${dir}/big && cp /bin/true ${dir}/big2 && chmod 6755 ${dir}/big ${dir}/big2`);
    watching = false;
    await watcher;
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(seen).toEqual([]);
    expect(statSync(join(dir, 'big')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(dir, 'big')).size).toBe(209715200);
    expect(agentOwned(dir)).toEqual([]);
  }, 60_000);

  it('3,000 nested directories commit, revert and clean up without a path ever being too long', async () => {
    const { dir, manifest } = grant();
    const deep = `python3 -c "
import os
os.chdir('${dir}')
for i in range(3000):
    os.mkdir('dd'); os.chdir('dd')
open('bottom', 'w').write('b')
"`;
    const r = await run(manifest, deep);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stderr)).toMatch(/3001 changes kept/);
    let p = dir;
    for (let i = 0; i < 3000; i++) p = join(p, 'dd');
    // Read it back relative to an fd chain, as the path is longer than PATH_MAX.
    const check = await execa('python3', ['-c', `import os\nos.chdir('${dir}')\nfor i in range(3000): os.chdir('dd')\nprint(open('bottom').read())`]);
    expect(check.stdout).toBe('b');
    // The session's layers are gone from the host: one image, deleted whole.
    const id = /session (\S+) ended/.exec(String(r.stderr))![1]!;
    expect(existsSync(join(base, 'state', 'sessions', id))).toBe(false);
    // Revert of the same depth.
    const { dir: dir2, manifest: m2 } = grant('');
    writeFileSync(m2, readFileSync(m2, 'utf8').replace('snapshot: persist', 'snapshot: revert'));
    const r2 = await run(m2, deep.replaceAll(dir, dir2));
    expect(r2.exitCode, String(r2.stderr)).toBe(0);
    expect(String(r2.stderr)).toMatch(/3001 changes reverted/);
    expect(readdirSync(dir2)).toEqual([]);
  }, 120_000);

  it('limits.disk bounds what the agent can write: ENOSPC in the box, the host disk untouched', async () => {
    const { dir, manifest } = grant('limits: { disk: 64MiB }\n');
    const r = await run(manifest, `head -c 104857600 /dev/zero > ${dir}/huge; echo "rc=$?"; ls -la ${dir}/huge | awk '{print $5}'`);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const [rc, size] = String(r.stdout).trim().split('\n');
    expect(rc).not.toBe('rc=0');
    expect(Number(size)).toBeLessThanOrEqual(64 * 1024 * 1024);
    const audit = readFileSync(join(base, 'state', 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const launch = audit.filter((e) => e.action === 'launch').at(-1);
    expect(launch.details.layers).toEqual({ fs: 'ext4-image', limitBytes: 64 * 1024 * 1024, snapshot: 'persist' });
  }, 60_000);

  it('two persist sessions in a row: the second writes everywhere the first created, and ownership is as in the box', async () => {
    const { dir, manifest } = grant();
    writeFileSync(join(dir, 'shared'), 'x\n');
    chownSync(join(dir, 'shared'), 1000, 1000);
    chmodSync(join(dir, 'shared'), 0o666);
    const first = await run(manifest, `mkdir -p ${dir}/.cache/a/b ${dir}/sessions && echo 1 > ${dir}/.cache/a/b/f && ln -s b ${dir}/.cache/a/l && echo more >> ${dir}/shared`);
    expect(first.exitCode, String(first.stderr)).toBe(0);
    expect(agentOwned(join(dir, '.cache'))).toEqual([]);
    // A file of another user that the agent could write keeps its owner and mode.
    expect(statSync(join(dir, 'shared'))).toMatchObject({ uid: 1000, gid: 1000 });
    expect(statSync(join(dir, 'shared')).mode & 0o777).toBe(0o666);
    expect(readFileSync(join(dir, 'shared'), 'utf8')).toBe('x\nmore\n');
    const second = await run(manifest, `echo 2 > ${dir}/.cache/a/b/f && echo 3 > ${dir}/.cache/a/b/g && mkdir ${dir}/.cache/a/c && echo 4 > ${dir}/sessions/s1 && echo "ok"`);
    expect(second.exitCode, String(second.stderr)).toBe(0);
    expect(String(second.stdout).trim()).toBe('ok');
    expect(readFileSync(join(dir, '.cache/a/b/g'), 'utf8')).toBe('3\n');
    expect(readFileSync(join(dir, 'sessions/s1'), 'utf8')).toBe('4\n');
  });
});

describe.each([
  { name: 'container (runc)', args: ['--runtime', 'container'] },
  { name: 'container (gVisor)', args: ['--runtime', 'container', '--isolation', 'gvisor'] },
  { name: 'microvm', args: ['--runtime', 'microvm'] },
])('persist on the $name runtime', (rt) => {
  // Attack review: micro-VM writes landed root-owned (9p with QEMU as root), so the
  // next session could not write into what the agent had made.
  it('commits what the agent made, owned by the agent as in the box', async () => {
    const { dir, manifest } = grant();
    const r = await execa(process.execPath, [BIN, 'launch', manifest, '--home', base, ...rt.args, '--', '/bin/sh', '-c', `mkdir -p ${dir}/a/b && echo x > ${dir}/a/b/f && ln -s f ${dir}/a/b/l`], { reject: false, stdin: 'ignore', env: { AGENTBOX_STATE_DIR: join(base, 'state'), NO_COLOR: '1' } });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(readFileSync(join(dir, 'a/b/f'), 'utf8')).toBe('x\n');
    expect(readlinkSync(join(dir, 'a/b/l'))).toBe('f');
    expect(agentOwned(dir)).toEqual([]);
  }, 120_000);
});
