/**
 * The steps `apply` takes, each able to check whether its work is done and to undo
 * itself: files written inside the root, the agent account, the firewall (iptables or
 * nft), the AppArmor profile and the systemd unit.
 */
import { execa } from 'execa';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { AgentboxError } from '../errors.js';
import { writeFileNoFollow } from '../host/open-exact.js';
import { iptablesChain, nftTable } from '../escape/netfilter.js';
import { shellLine } from '../escape/shell.js';
import type { ApplyControl, ApplyInput } from './types.js';

export interface Step {
  name: string;
  control: ApplyControl | 'files';
  /** Commands shown with --dry-run and in the report. */
  commands: string[];
  /** Returns 'unchanged' when the work was already done. */
  run(): Promise<'done' | 'unchanged'>;
  undo(): Promise<void>;
}

export const show = (cmd: string, args: readonly string[]) => shellLine([cmd, ...args]);

export async function run(cmd: string, args: string[], input?: string): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const r = await execa(cmd, args, { reject: false, ...(input !== undefined ? { input } : { stdin: 'ignore' }) });
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input);
  if (!r.ok) throw new AgentboxError('APPLY_FAILED', `${show(cmd, args)} failed: ${r.stderr.trim() || 'no message'}`);
  return r.stdout;
}

/**
 * Refuses to write where a symlink would carry the write out of the root: an image or
 * rootfs given with --root may have been prepared by someone else, and apply runs as
 * root. The parent must resolve inside the root and the file itself must not be a link.
 */
export function assertInsideRoot(root: string, path: string): void {
  assertDirInsideRoot(root, dirname(path));
  let link = false;
  try {
    link = lstatSync(path).isSymbolicLink();
  } catch {
    link = false;
  }
  if (link) throw new AgentboxError('CHECK_FAILED', `${path} is a symlink; refusing to write through it`);
}

/** The folder, resolved, is the root or below it. */
function assertDirInsideRoot(root: string, dir: string): void {
  const realRoot = realpathSync(root);
  const real = realpathSync(dir);
  if (real !== realRoot && !real.startsWith(realRoot === sep ? sep : realRoot + sep)) {
    throw new AgentboxError('CHECK_FAILED', `${dir} resolves to ${real}, outside ${root}; refusing to follow a symlink out of the root`);
  }
}

/** A file step: write content, remembering what was there to restore it. */
export function fileStep(root: string, path: string, content: string, mode: number): Step {
  let previous: string | undefined;
  let existed = false;
  let createdDirs: string[] = [];
  return {
    name: `install ${path}`,
    control: 'files',
    commands: [`install -D -m ${mode.toString(8)} /dev/stdin ${show(path, []).trim()}`],
    async run() {
      createdDirs = [];
      for (let d = dirname(path); !existsSync(d); d = dirname(d)) createdDirs.unshift(d);
      mkdirSync(dirname(path), { recursive: true });
      assertInsideRoot(root, path);
      existed = existsSync(path);
      previous = existed ? readFileSync(path, 'utf8') : undefined;
      if (existed && previous === content) return 'unchanged';
      writeFileNoFollow(path, content, mode, true);
      return 'done';
    },
    async undo() {
      assertInsideRoot(root, path);
      if (existed && previous !== undefined) writeFileNoFollow(path, previous, mode, true);
      else rmSync(path, { force: true });
      for (const d of [...createdDirs].reverse()) {
        try {
          rmdirSync(d);
        } catch {
          // Not empty: something else lives there now; leave it.
        }
      }
    },
  };
}

/**
 * Enables a unit at boot as `systemctl enable` does for WantedBy=multi-user.target: a
 * symlink ROOT/etc/systemd/system/multi-user.target.wants/UNIT → /etc/systemd/system/UNIT.
 * Written offline too (systemctl cannot enable into an image without its systemd).
 */
export function enableStep(root: string, unit: string): Step {
  const wants = join(root, 'etc/systemd/system/multi-user.target.wants');
  const link = join(wants, unit);
  const target = `/etc/systemd/system/${unit}`;
  let made = false;
  let madeDir = false;
  return {
    name: `enable ${unit} at boot`,
    control: 'files',
    commands: [`ln -s ${target} ${show(link, []).trim()}`],
    async run() {
      madeDir = !existsSync(wants);
      // Its parent (where the unit was just installed) is checked before anything is made in it.
      assertDirInsideRoot(root, dirname(wants));
      if (madeDir) mkdirSync(wants);
      assertDirInsideRoot(root, wants);
      let current: string | undefined;
      try {
        current = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : '(not a symlink)';
      } catch {
        current = undefined;
      }
      if (current === target) return 'unchanged';
      if (current !== undefined) throw new AgentboxError('CHECK_FAILED', `${link} exists and is not the link agentbox makes (${current}); remove it or run systemctl enable ${unit} yourself`);
      symlinkSync(target, link);
      made = true;
      return 'done';
    },
    async undo() {
      if (made) rmSync(link, { force: true });
      if (madeDir) {
        try {
          rmdirSync(wants);
        } catch {
          // not empty
        }
      }
    },
  };
}

export function accountStep(input: ApplyInput, root: string): Step {
  const rootArgs = root === '/' ? [] : ['--root', root];
  const args = [...rootArgs, '--system', '--uid', String(input.uid), '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', input.user];
  let created = false;
  return {
    name: `account ${input.user} (uid ${input.uid})`,
    control: 'account',
    commands: [show('useradd', args)],
    async run() {
      const passwd = join(root, 'etc/passwd');
      const lines = existsSync(passwd) ? readFileSync(passwd, 'utf8').split('\n') : [];
      const byName = lines.find((l) => l.split(':')[0] === input.user);
      const byUid = lines.find((l) => l.split(':')[2] === String(input.uid));
      if (byName) {
        const uid = byName.split(':')[2];
        if (uid !== String(input.uid)) {
          throw new AgentboxError('CONTROL_UNAVAILABLE', `account ${input.user} exists with uid ${uid}, but the firewall rules were generated for uid ${input.uid}`, {
            details: [`set agent.uid: ${uid} in the manifest and generate again, or pick another agent.user`],
          });
        }
        return 'unchanged';
      }
      if (byUid) {
        throw new AgentboxError('CONTROL_UNAVAILABLE', `uid ${input.uid} already belongs to account ${byUid.split(':')[0]}`, {
          details: ['set agent.uid in the manifest to a free uid and generate again'],
        });
      }
      await must('useradd', args);
      created = true;
      return 'done';
    },
    async undo() {
      if (created) await run('userdel', [...rootArgs, input.user]);
    },
  };
}

export function iptablesSteps(input: ApplyInput, rulesFile: Record<4 | 6, string>): Step[] {
  const chain = iptablesChain(input.agent);
  return ([4, 6] as const).map((family) => {
    const tool = family === 4 ? 'iptables' : 'ip6tables';
    const jump = ['-m', 'owner', '--uid-owner', String(input.uid), '-j', chain];
    let savedRules: string[] | undefined;
    let insertedJump = false;
    return {
      name: `${tool} chain ${chain}`,
      control: 'firewall' as const,
      commands: [show(`${tool}-restore`, ['--noflush', rulesFile[family]]), `${show(tool, ['-C', 'OUTPUT', ...jump])} || ${show(tool, ['-I', 'OUTPUT', '1', ...jump])}`],
      async run() {
        const before = await run(tool, ['-S', chain]);
        savedRules = before.ok ? before.stdout.split('\n').filter((l) => l.startsWith('-A ')) : undefined;
        await must(`${tool}-restore`, ['--noflush', rulesFile[family]]);
        const after = (await must(tool, ['-S', chain])).split('\n').filter((l) => l.startsWith('-A '));
        const hasJump = (await run(tool, ['-C', 'OUTPUT', ...jump])).ok;
        if (!hasJump) {
          await must(tool, ['-I', 'OUTPUT', '1', ...jump]);
          insertedJump = true;
        }
        return !insertedJump && savedRules !== undefined && savedRules.join('\n') === after.join('\n') ? 'unchanged' : 'done';
      },
      async undo() {
        if (insertedJump) await run(tool, ['-D', 'OUTPUT', ...jump]);
        if (savedRules === undefined) {
          await run(tool, ['-F', chain]);
          await run(tool, ['-X', chain]);
        } else {
          await run(`${tool}-restore`, ['--noflush'], `*filter\n:${chain} - [0:0]\n${savedRules.join('\n')}\nCOMMIT\n`);
        }
      },
    };
  });
}

export function nftStep(input: ApplyInput, rulesFile: string): Step {
  const table = nftTable(input.agent);
  let saved: string | undefined;
  let existed = false;
  return {
    name: `nft table inet ${table}`,
    control: 'firewall',
    commands: [show('nft', ['-f', rulesFile])],
    async run() {
      const before = await run('nft', ['list', 'table', 'inet', table]);
      existed = before.ok;
      saved = before.ok ? before.stdout : undefined;
      await must('nft', ['-f', rulesFile]);
      const after = await must('nft', ['list', 'table', 'inet', table]);
      return existed && saved === after ? 'unchanged' : 'done';
    },
    async undo() {
      if (!existed) await run('nft', ['delete', 'table', 'inet', table]);
      else if (saved !== undefined) await run('nft', ['-f', '-'], `table inet ${table}\ndelete table inet ${table}\n${saved}\n`);
    },
  };
}

export function apparmorStep(input: ApplyInput, profileFile: string): Step {
  const name = `agentbox-${input.agent}`;
  let loadedBefore = false;
  return {
    name: `AppArmor profile ${name}`,
    control: 'apparmor',
    commands: [show('apparmor_parser', ['-r', profileFile])],
    async run() {
      loadedBefore = existsSync('/sys/kernel/security/apparmor/profiles') && readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8').split('\n').some((l) => l.startsWith(`${name} `));
      await must('apparmor_parser', ['-r', profileFile]);
      return 'done';
    },
    async undo() {
      if (!loadedBefore) await run('apparmor_parser', ['-R', profileFile]);
    },
  };
}

/** (Re)starts agentboxd on a live host, so it governs the agent just applied. */
export function daemonStartStep(): Step {
  return {
    name: 'restart agentboxd.service',
    control: 'systemd',
    commands: ['systemctl enable agentboxd.service', 'systemctl restart agentboxd.service'],
    async run() {
      await must('systemctl', ['enable', 'agentboxd.service']);
      await must('systemctl', ['restart', 'agentboxd.service']);
      return 'done';
    },
    async undo() {
      await run('systemctl', ['restart', 'agentboxd.service']);
    },
  };
}

export function systemdStep(): Step {
  return {
    name: 'systemd daemon-reload',
    control: 'systemd',
    commands: ['systemctl daemon-reload'],
    async run() {
      await must('systemctl', ['daemon-reload']);
      return 'done';
    },
    async undo() {
      await run('systemctl', ['daemon-reload']);
    },
  };
}

