/**
 * Installs generated Linux controls on this host: the agent account, the unit, the
 * AppArmor profile and the firewall rules. The only module that changes the host for
 * `apply`.
 *
 * Every step knows how to undo itself; when a step fails, the steps already taken are
 * undone in reverse order. Every step first checks whether its work is already done,
 * so applying twice changes nothing the second time. Before any step runs, the
 * controls the plan needs are probed and a missing one stops the apply (exit 4)
 * unless the caller named it in `allowMissing`.
 */

import { execa } from 'execa';
import { existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { AgentboxError } from '../errors.js';
import { iptablesChain, nftTable } from '../generate/escape/netfilter.js';
import { shellLine } from '../generate/escape/shell.js';
import type { Artifact } from '../generate/index.js';
import { probeApparmorLsm, probeSystemd, which } from '../host/probes.js';

export type ApplyControl = 'account' | 'firewall' | 'apparmor' | 'systemd';
export const APPLY_CONTROLS: readonly ApplyControl[] = ['account', 'firewall', 'apparmor', 'systemd'];

export interface ApplyInput {
  agent: string;
  user: string;
  uid: number;
  artifacts: readonly Pick<Artifact, 'path' | 'control' | 'content'>[];
  planJson: string;
}

export interface ApplyOptions {
  /** Install files and the account under this root instead of /. */
  root: string;
  /** Print what would be done; change nothing. */
  dryRun: boolean;
  /** Do not load anything into the running kernel (firewall, AppArmor) or systemd. */
  offline: boolean;
  /** Which firewall front end loads the rules. */
  firewall: 'iptables' | 'nft';
  /** Controls the caller accepts to leave unenforced when this host lacks them. */
  allowMissing: readonly ApplyControl[];
  log: (line: string) => void;
}

export interface StepReport {
  step: string;
  control: ApplyControl | 'files';
  status: 'done' | 'unchanged' | 'skipped' | 'would-run';
  commands: string[];
  note?: string;
}

interface Step {
  name: string;
  control: ApplyControl | 'files';
  /** Commands shown with --dry-run and in the report. */
  commands: string[];
  /** Returns 'unchanged' when the work was already done. */
  run(): Promise<'done' | 'unchanged'>;
  undo(): Promise<void>;
}

const show = (cmd: string, args: readonly string[]) => shellLine([cmd, ...args]);

async function run(cmd: string, args: string[], input?: string): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const r = await execa(cmd, args, { reject: false, ...(input !== undefined ? { input } : { stdin: 'ignore' }) });
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input);
  if (!r.ok) throw new AgentboxError('APPLY_FAILED', `${show(cmd, args)} failed: ${r.stderr.trim() || 'no message'}`);
  return r.stdout;
}

/** What the host is missing for this apply, with how to get it. */
export async function preflight(input: ApplyInput, opts: ApplyOptions): Promise<{ control: ApplyControl; why: string; hint: string }[]> {
  const missing: { control: ApplyControl; why: string; hint: string }[] = [];
  if (!(await which('useradd'))) missing.push({ control: 'account', why: 'useradd is not installed', hint: 'apt-get install passwd' });
  if (!opts.offline) {
    if (opts.firewall === 'nft') {
      if (!(await which('nft'))) missing.push({ control: 'firewall', why: 'nft is not installed', hint: 'apt-get install nftables' });
    } else if (!(await which('iptables-restore')) || !(await which('ip6tables-restore'))) {
      missing.push({ control: 'firewall', why: 'iptables-restore or ip6tables-restore is not installed', hint: 'apt-get install iptables' });
    }
    const lsm = await probeApparmorLsm();
    if (!(await which('apparmor_parser'))) missing.push({ control: 'apparmor', why: 'apparmor_parser is not installed', hint: 'apt-get install apparmor' });
    else if (!lsm.enabled) missing.push({ control: 'apparmor', why: `the AppArmor LSM is not enabled in this kernel (${lsm.detail})`, hint: 'boot a kernel with apparmor=1 security=apparmor, or accept with --allow-missing apparmor' });
  }
  if (!opts.offline && opts.root === '/') {
    const sd = await probeSystemd();
    if (!sd.running) missing.push({ control: 'systemd', why: `systemd is not the init system here (${sd.detail})`, hint: 'install into an image with --root DIR, or accept with --allow-missing systemd' });
  }
  return missing;
}

/**
 * Refuses to write where a symlink would carry the write out of the root: an image or
 * rootfs given with --root may have been prepared by someone else, and apply runs as
 * root. The parent must resolve inside the root and the file itself must not be a link.
 */
function assertInsideRoot(root: string, path: string): void {
  const realRoot = realpathSync(root);
  const parent = realpathSync(dirname(path));
  if (parent !== realRoot && !parent.startsWith(realRoot === sep ? sep : realRoot + sep)) {
    throw new AgentboxError('CHECK_FAILED', `${dirname(path)} resolves to ${parent}, outside ${root}; refusing to follow a symlink out of the root`);
  }
  let link = false;
  try {
    link = lstatSync(path).isSymbolicLink();
  } catch {
    link = false;
  }
  if (link) throw new AgentboxError('CHECK_FAILED', `${path} is a symlink; refusing to write through it`);
}

/** A file step: write content, remembering what was there to restore it. */
function fileStep(root: string, path: string, content: string, mode: number): Step {
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
      const tmp = `${path}.agentbox-tmp`;
      writeFileSync(tmp, content, { mode });
      renameSync(tmp, path);
      return 'done';
    },
    async undo() {
      if (existed && previous !== undefined) writeFileSync(path, previous);
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

function accountStep(input: ApplyInput, root: string): Step {
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

function iptablesSteps(input: ApplyInput, rulesFile: Record<4 | 6, string>): Step[] {
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

function nftStep(input: ApplyInput, rulesFile: string): Step {
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

function apparmorStep(input: ApplyInput, profileFile: string): Step {
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

function systemdStep(): Step {
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

/** Where each artifact is installed under the root. */
export function installPaths(agent: string, root: string) {
  return {
    systemd: join(root, 'etc/systemd/system', `agentbox-${agent}.service`),
    apparmor: join(root, 'etc/apparmor.d', `agentbox-${agent}`),
    iptables: join(root, 'etc/agentbox', `agentbox-${agent}.iptables`),
    ip6tables: join(root, 'etc/agentbox', `agentbox-${agent}.ip6tables`),
    nftables: join(root, 'etc/agentbox', `agentbox-${agent}.nft`),
    plan: join(root, 'etc/agentbox', `agentbox-${agent}.plan.json`),
  };
}

/** Runs the apply; throws AgentboxError (exit 4) for missing controls before touching anything. */
export async function applyLinux(input: ApplyInput, opts: ApplyOptions): Promise<StepReport[]> {
  const missing = await preflight(input, opts);
  const refused = missing.filter((m) => !opts.allowMissing.includes(m.control));
  if (refused.length > 0) {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot enforce ${refused.map((m) => m.control).join(', ')} on this host; nothing was changed`, {
      details: [
        ...refused.map((m) => `${m.control}: ${m.why} (${m.hint})`),
        `to install the rest anyway, accept each gap explicitly: --allow-missing ${refused.map((m) => m.control).join(',')}`,
      ],
    });
  }
  const skipped = new Set(missing.map((m) => m.control));
  const paths = installPaths(input.agent, opts.root);
  const content = (control: string) => {
    const a = input.artifacts.find((x) => x.control === control);
    if (!a) throw new AgentboxError('INTERNAL', `the plan has no ${control} artifact`);
    return a.content;
  };

  const steps: Step[] = [];
  const reports: StepReport[] = [];
  const skip = (control: ApplyControl, name: string, note: string) => reports.push({ step: name, control, status: 'skipped', commands: [], note });

  if (skipped.has('account')) skip('account', `account ${input.user}`, missing.find((m) => m.control === 'account')!.why);
  else steps.push(accountStep(input, opts.root));
  steps.push(fileStep(opts.root, paths.systemd, content('systemd'), 0o644));
  steps.push(fileStep(opts.root, paths.apparmor, content('apparmor'), 0o644));
  steps.push(fileStep(opts.root, paths.iptables, content('iptables'), 0o600));
  steps.push(fileStep(opts.root, paths.ip6tables, content('ip6tables'), 0o600));
  steps.push(fileStep(opts.root, paths.nftables, content('nftables'), 0o600));
  if (opts.offline) skip('firewall', 'firewall load', '--offline: rules installed, not loaded');
  else if (skipped.has('firewall')) skip('firewall', 'firewall load', missing.find((m) => m.control === 'firewall')!.why);
  else if (opts.firewall === 'nft') steps.push(nftStep(input, paths.nftables));
  else steps.push(...iptablesSteps(input, { 4: paths.iptables, 6: paths.ip6tables }));
  if (opts.offline) skip('apparmor', 'AppArmor load', '--offline: profile installed, not loaded');
  else if (skipped.has('apparmor')) skip('apparmor', 'AppArmor load', missing.find((m) => m.control === 'apparmor')!.why);
  else steps.push(apparmorStep(input, paths.apparmor));
  if (opts.root !== '/' || opts.offline) skip('systemd', 'systemd reload', `unit installed under ${opts.root}; it is loaded when that system boots`);
  else if (skipped.has('systemd')) skip('systemd', 'systemd reload', missing.find((m) => m.control === 'systemd')!.why);
  else steps.push(systemdStep());
  // Last: the record of what is installed, so a half apply never leaves one behind.
  steps.push(fileStep(opts.root, paths.plan, input.planJson, 0o644));

  if (opts.dryRun) {
    for (const s of steps) {
      opts.log(`# ${s.name}`);
      for (const c of s.commands) opts.log(c);
      reports.push({ step: s.name, control: s.control, status: 'would-run', commands: s.commands });
    }
    return reports;
  }

  const done: Step[] = [];
  for (const s of steps) {
    try {
      const status = await s.run();
      done.push(s);
      reports.push({ step: s.name, control: s.control, status, commands: s.commands });
      opts.log(`${status === 'unchanged' ? 'unchanged' : 'done     '}  ${s.name}`);
    } catch (e) {
      opts.log(`failed     ${s.name}: ${(e as Error).message}`);
      for (const d of done.reverse()) {
        try {
          await d.undo();
          opts.log(`rolled back ${d.name}`);
        } catch (u) {
          opts.log(`ROLLBACK FAILED ${d.name}: ${(u as Error).message}`);
        }
      }
      if (e instanceof AgentboxError) {
        throw new AgentboxError(e.code, `${s.name}: ${e.message}; the ${done.length} step${done.length === 1 ? '' : 's'} taken before it were rolled back`, { cause: e, details: e.details });
      }
      throw new AgentboxError('APPLY_FAILED', `${s.name} failed: ${(e as Error).message}; the ${done.length} step${done.length === 1 ? '' : 's'} taken before it were rolled back`, { cause: e });
    }
  }
  return reports;
}
