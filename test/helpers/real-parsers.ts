/**
 * The real parsers every generated artifact must pass: systemd-analyze, apparmor_parser,
 * iptables-restore/ip6tables-restore (inside a network namespace this helper creates),
 * and nft. No mocks: each function runs the host tool and returns its verdict.
 */
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Verdict {
  ok: boolean;
  output: string;
}

const CACHE_NOISE = /^Cache read\/write disabled: interface file missing\. \(Kernel needs AppArmor 2\.4 compatibility patch\.\)$/;

/** apparmor_parser -Q -K: compile only, no kernel load. Any diagnostic besides the no-LSM cache note is a failure. */
export async function apparmorCheck(file: string): Promise<Verdict> {
  const r = await execa('apparmor_parser', ['-Q', '-K', file], { reject: false, stdin: 'ignore' });
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() !== '' && !CACHE_NOISE.test(l.trim()));
  return { ok: r.exitCode === 0 && lines.length === 0, output: lines.join('\n') };
}

/**
 * systemd-analyze verify, inside a private mount namespace where each program the
 * units start exists as a stub (an overlay over its directory), so a unit for a program
 * not installed here is still verified. Any diagnostic is a failure: verify exits 0 on
 * unknown directives and only warns.
 */
export async function systemdVerify(files: string[], programs: string[]): Promise<Verdict> {
  const work = mkdtempSync(join(tmpdir(), 'agentbox-verify-'));
  const script: string[] = ['set -e'];
  const args: string[] = [];
  let n = 0;
  const overlays = new Map<string, string>();
  for (const p of programs) {
    let dir = dirname(p);
    const rel: string[] = [p.slice(dir.length + 1)];
    // The nearest existing ancestor gets an overlay carrying the stub.
    for (;;) {
      const exists = await execa('test', ['-d', dir], { reject: false });
      if (exists.exitCode === 0) break;
      rel.unshift(dir.slice(dirname(dir).length + 1));
      dir = dirname(dir);
    }
    let upper = overlays.get(dir);
    if (!upper) {
      upper = join(work, `upper${overlays.size}`);
      mkdirSync(upper, { recursive: true });
      mkdirSync(join(work, `work${overlays.size}`), { recursive: true });
      overlays.set(dir, upper);
    }
    const stub = join(upper, ...rel);
    mkdirSync(dirname(stub), { recursive: true });
    writeFileSync(stub, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  }
  [...overlays.entries()].forEach(([dir, upper], i) => {
    args.push(dir, upper, join(work, `work${i}`));
    script.push(`mount -t overlay overlay -o "lowerdir=\${${++n}},upperdir=\${${++n}},workdir=\${${++n}}" "\${${n - 2}}"`);
  });
  const first = n + 1;
  args.push(...files);
  script.push(`shift ${first - 1}`, 'exec systemd-analyze verify --man=no "$@"');
  const r = await execa('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script.join('\n'), 'verify', ...args], { reject: false, stdin: 'ignore' });
  const output = `${r.stdout}\n${r.stderr}`.trim();
  return { ok: r.exitCode === 0 && output === '', output };
}

/** The overall exposure score `systemd-analyze security --offline=yes` gives a unit. */
export async function systemdExposure(file: string): Promise<number> {
  const r = await execa('systemd-analyze', ['security', '--offline=yes', '--no-pager', file], { reject: false, stdin: 'ignore', env: { SYSTEMD_COLORS: '0' } });
  const m = /Overall exposure level for \S+: ([0-9.]+)/.exec(`${r.stdout}\n${r.stderr}`);
  if (!m) throw new Error(`no exposure score in: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

/** A network namespace owned by the test: iptables/nft run only inside it. */
export class NetNs {
  readonly name: string;
  private constructor(name: string) {
    this.name = name;
  }
  static async create(prefix = 'abtest'): Promise<NetNs> {
    const name = `${prefix}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    await execa('ip', ['netns', 'add', name]);
    await execa('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
    return new NetNs(name);
  }
  exec(cmd: string, args: string[], opts: { input?: string; reject?: boolean; env?: Record<string, string> } = {}) {
    return execa('ip', ['netns', 'exec', this.name, cmd, ...args], {
      reject: opts.reject ?? false,
      ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
      ...(opts.env ? { env: opts.env } : {}),
    });
  }
  async destroy(): Promise<void> {
    await execa('ip', ['netns', 'del', this.name], { reject: false });
  }
}

export async function iptablesTest(ns: NetNs, file: string, family: 4 | 6): Promise<Verdict> {
  const r = await ns.exec(family === 4 ? 'iptables-restore' : 'ip6tables-restore', ['--test', file]);
  const output = `${r.stdout}\n${r.stderr}`.trim();
  return { ok: r.exitCode === 0 && output === '', output };
}

export async function nftCheck(file: string): Promise<Verdict> {
  const r = await execa('nft', ['-c', '-f', file], { reject: false, stdin: 'ignore' });
  const output = `${r.stdout}\n${r.stderr}`.trim();
  return { ok: r.exitCode === 0 && output === '', output };
}
