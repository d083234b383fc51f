/**
 * The process runtime: runs an agent inside bubblewrap (see box/bwrap.ts for the
 * layers) under session cgroups; the session itself (proxy, ttl, quarantine, revert,
 * audit) is session/lifecycle.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';
import { AgentboxError } from '../../errors.js';
import type { Model } from '../../model/types.js';
import { effectiveFs } from '../../model/grants.js';
import { whichSync } from '../../host/which.js';
import { openPty } from '../../host/pty.js';
import { identify } from '../../host/proc.js';
import { buildLaunchPlan, RESERVED, type LaunchFacts, type LaunchPlan } from '../../box/bwrap.js';
import { reservedOverlaps } from '../../box/common.js';
import { createCgroups, unenforceable, type SessionCgroups } from './cgroups.js';
import { usesProxy } from '../../model/grants.js';
import { seccompBytes } from '../../box/seccomp.js';
import { newSessionId } from '../../session/records.js';
import { prepareSession } from '../../session/prepare.js';
import { makeMountPoints, DEFAULT_DISK_BYTES, unmountBox } from '../../session/layers.js';
import { bindOpened, mountLayers, pathKind } from '../host-mounts.js';
import { attachSocket, type Box } from '../../session/box.js';
import { placeEgress, type BuildOptions, type Built } from '../build.js';
import { descendantsOf, findByComm, observationAvailable, pidNamespace, startAuditReader, startFileWatch, type Watcher } from '../../host/watchers.js';

/** As root, with observation: landlock-exec's hold and the logged seccomp program (no grant fds then). */
const HOLD_FD = 4;
const SECCOMP_LOG_FD = 5;

function topLinks(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    try {
      if (lstatSync(t).isSymbolicLink()) out[t] = readlinkSync(t);
    } catch {
      // absent
    }
  }
  return out;
}

/** The state directory's path ends up in overlay mount options, where ',' and ':' separate options. */
export const SAFE_STATE = /^\/[A-Za-z0-9._/-]*$/;

/** Checks what the box needs before anything starts; exit 4 names every gap. */
function preflight(model: Model, root: boolean, opts: BuildOptions): { bwrap: string; setpriv: string; unshare: string; socat: string | undefined; setsid: string | undefined } {
  const gaps: string[] = [];
  const bwrap = whichSync('bwrap');
  if (!bwrap) gaps.push('bubblewrap is not installed (apt-get install bubblewrap)');
  const setpriv = whichSync('setpriv') ?? '';
  const unshare = whichSync('unshare') ?? '';
  if (root && (!setpriv || !unshare)) gaps.push('setpriv/unshare are not installed (apt-get install util-linux)');
  const socat = usesProxy(model) ? whichSync('socat') : undefined;
  const setsid = opts.pty ? whichSync('setsid') : undefined;
  if (opts.pty && !setsid) gaps.push('setsid is not installed, so the agent cannot have a terminal of its own (apt-get install util-linux)');
  if (usesProxy(model) && !socat) gaps.push('socat is not installed, so the box cannot reach its egress proxy (apt-get install socat)');
  if (process.arch !== 'x64') gaps.push(`the seccomp filter is built for x86_64; this host is ${process.arch}`);
  if (!opts.landlockHelper) gaps.push('the Landlock layer is unavailable (the landlock-exec helper is not built, or the kernel has no Landlock)');
  const writes = effectiveFs(model).fs.filter((g) => g.access === 'write');
  if (writes.length > 0 && !SAFE_STATE.test(opts.state)) {
    gaps.push(`the state directory ${JSON.stringify(opts.state)} must contain only letters, digits and . _ - / to hold overlays (set AGENTBOX_STATE_DIR)`);
  }
  if (writes.length > 0 && !root) gaps.push('writable grants are overlays, which this bubblewrap (0.8, no --overlay) can only build when agentbox runs as root');
  gaps.push(...unenforceable(model.limits).map((u) => `limit ${u}`));
  // Inside /proc, /dev or agentbox's own mounts a grant would be shadowed or expose the
  // host; on or above /tmp it would replace the private /tmp; below /tmp it is bound over it.
  gaps.push(...reservedOverlaps(model, RESERVED, ['/tmp', '/var/tmp'], 'which the box builds itself'));
  if (gaps.length > 0) {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot build the box for ${model.name} on this host; nothing was started`, { details: gaps });
  }
  return { bwrap: bwrap!, setpriv, unshare, socat, setsid };
}

export async function buildProcessBox(model: Model, opts: BuildOptions): Promise<Built<LaunchPlan>> {
  const root = process.getuid?.() === 0;
  const tools = preflight(model, root, opts);
  const id = newSessionId(model.name);
  const uid = root ? model.agent.uid : process.getuid!();
  const gid = root ? model.agent.uid : process.getgid!();
  const prep = prepareSession(model, { state: opts.state, id, root, uid, gid, dryRun: opts.dryRun, log: opts.log, socketsReachable: true });
  let cgroups: SessionCgroups | undefined;
  let plan: LaunchPlan;
  const avail = observationAvailable();
  const observe = opts.observe !== false && avail.available && root && Boolean(opts.landlockHelper);
  const observed = observe ? { files: true, denials: true } : { files: false, denials: false, why: opts.observe === false ? 'turned off (--no-observe)' : avail.missing.join('; ') || 'the Landlock helper is unavailable' };
  try {
    cgroups = opts.dryRun ? undefined : createCgroups(id, model.limits);
    const facts: LaunchFacts = {
      root,
      uid,
      gid,
      topLinks: topLinks(),
      kind: pathKind,
      session: prep.paths,
      landlockHelper: opts.landlockHelper,
      cgroupProcs: cgroups?.procs ?? [],
      cwd: process.cwd(),
      term: process.env.TERM,
      ...(opts.pty && tools.setsid ? { setsid: tools.setsid } : {}),
      socat: tools.socat,
      setpriv: tools.setpriv,
      unshare: tools.unshare,
      bwrap: tools.bwrap,
      grants: prep.grants,
      socketMasks: prep.socketMasks,
      tmpBytes: model.limits.diskBytes ?? prep.layers?.limitBytes ?? DEFAULT_DISK_BYTES,
      memfdNoexec: root && existsSync('/proc/sys/vm/memfd_noexec'),
      ...(observe ? { observe: { holdFd: HOLD_FD, seccompLogFd: SECCOMP_LOG_FD } } : {}),
    };
    const egress = placeEgress(prep.paths, opts.egress, opts.dryRun);
    if (egress) facts.egress = egress;
    plan = buildLaunchPlan(model, opts.command, facts);
    if (opts.dryRun) {
      prep.release();
      return { plan, box: null };
    }
    makeMountPoints(plan.mountPoints.dirs, plan.mountPoints.files);
  } catch (e) {
    cgroups?.remove();
    prep.undo();
    throw e;
  }

  let child: ReturnType<typeof spawn> | undefined;
  const watchers: Watcher[] = [];
  let boxNs: string | undefined;
  const stopWatchers = async () => {
    for (const w of watchers.splice(0)) await w.stop().catch(() => undefined);
  };
  const killGroup = (signal: NodeJS.Signals) => {
    if (child?.pid) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    }
    for (const pid of cgroups?.members() ?? []) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone
      }
    }
  };
  const box: Box = {
    runtime: 'process',
    isolation: null,
    id,
    paths: prep.paths,
    layers: prep.layers,
    proxySocket: plan.proxySocket,
    uid,
    gid,
    cgroupDirs: cgroups?.procs.map((p) => posix.dirname(p)) ?? [],
    controls: plan.controls,
    execSpec: { env: plan.env, cwd: plan.argv[plan.argv.indexOf('--chdir') + 1] ?? model.home, landlock: plan.landlock },
    observed,
    // A process of the box is in its pid namespace; one already gone cannot be asked (the
    // audit rule and the marks are the box's own, so it counts as the box's).
    owns: (pid: number) => {
      if (!boxNs) return false;
      const ns = pidNamespace(pid);
      return ns === undefined || ns === boxNs;
    },
    start: async () => {
      try {
        // The grants as opened, bound read-only; the writable ones' layers.
        mountLayers(model, opts.command, plan.layers, (i) => prep.opened[prep.grants.findIndex((g) => g.layer === i)]!);
        for (const b of plan.binds) bindOpened(prep.opened[b.grant]!, b.at, b.kind !== 'socket');
      } catch (e) {
        prep.release();
        throw e;
      }
      // Observation: the audit reader first, so no denial of the box comes before it.
      if (observe) {
        try {
          const r = await startAuditReader({ uid, session: id }, (line) => box.kernel?.auditLine(line));
          watchers.push(r.watcher);
        } catch (e) {
          prep.release();
          throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot read the kernel's audit records for ${model.name}: ${(e as Error).message}; nothing was started`, { details: ['denials are read from the audit subsystem (needs root and CAP_AUDIT_READ); agentbox doctor shows the state, launch --no-observe runs without'] });
        }
      }
      // fd 3: the seccomp program; without root, fds 4.. are the grants as opened
      // (bubblewrap binds them, then closes them before the agent runs).
      // With a terminal of its own, the box's stdio is the pty's slave and setsid(1) (first
      // in argv) makes it a session whose controlling terminal that is.
      const term = plan.usesPty ? openPty(process.stdout.columns ?? 80, process.stdout.rows ?? 24) : undefined;
      // Without a pty of its own (stdin and stdout not both terminals), a terminal stdout or
      // stderr reaches the box only as a pipe relayed here: a terminal fd is open for reading
      // too, and the operator's keystrokes are not the agent's to read.
      const relayOut = !term && Boolean(process.stdout.isTTY);
      const relayErr = !term && Boolean(process.stderr.isTTY);
      const stdio = term ? [term.slave, term.slave, term.slave] : ['inherit', relayOut ? 'pipe' : 'inherit', relayErr ? 'pipe' : 'inherit'];
      let c: ReturnType<typeof spawn>;
      try {
        c = spawn(plan.argv[0]!, plan.argv.slice(1), { stdio: [...stdio, 'pipe', ...(observe ? ['pipe', 'pipe'] : root ? [] : prep.opened.map((g) => g.fd))] as Parameters<typeof spawn>[2]['stdio'], detached: !term });
      } finally {
        term?.closeSlave();
      }
      child = c;
      prep.release();
      const piped = [c.stdout?.pipe(process.stdout, { end: false }) && c.stdout, c.stderr?.pipe(process.stderr, { end: false }) && c.stderr].filter((x): x is NonNullable<typeof x> => Boolean(x));
      const pipesDone = Promise.all(piped.map((p) => new Promise<void>((r) => { p.on('end', r); p.on('error', () => r()); p.on('close', r); })));
      const attach = { path: attachSocket(prep.paths), onAttach: (by: string) => box.terminalEvents?.attached(by), onDetach: (by: string) => box.terminalEvents?.detached(by) };
      const stopRelay = term ? term.relay(process.stdin as import('node:tty').ReadStream, process.stdout, attach) : undefined;
      const seccomp = c.stdio[3] as NodeJS.WritableStream;
      // A box that fails before reading its filter closes the pipe: its exit says why.
      seccomp.on('error', () => undefined);
      seccomp.end(seccompBytes());
      if (observe) {
        const logged = (c.stdio as unknown as NodeJS.WritableStream[])[SECCOMP_LOG_FD]!;
        logged.on('error', () => undefined);
        logged.end(seccompBytes());
        const hold = (c.stdio as unknown as NodeJS.WritableStream[])[HOLD_FD]!;
        hold.on('error', () => undefined);
        try {
          // landlock-exec waits on its hold inside the finished box: its pid namespace is the
          // box's, its root the box's view, where the grant mounts are marked.
          const helperPid = await waitFor(() => findByComm(cgroups?.members().length ? cgroups.members() : descendantsOf(c.pid!), 'landlock-exec')[0], 10_000, c);
          boxNs = pidNamespace(helperPid);
          // No grant mounts, nothing to mark: the box shows nothing of the host's files to watch.
          if (plan.watchPaths.length > 0) watchers.push(await startFileWatch(helperPid, plan.watchPaths, [], (line) => box.kernel?.fileLine(line)));
          hold.end('g');
        } catch (e) {
          hold.end('n');
          killGroup('SIGKILL');
          await stopWatchers();
          prep.release();
          throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot watch the box of ${model.name}: ${(e as Error).message}; the agent was not started`, { details: ['file activity is watched with fanotify on the box\'s grant mounts (needs root); launch --no-observe runs without'] });
        }
      }
      const exitedRaw = new Promise<number>((resolve) => {
        c.on('error', (e: NodeJS.ErrnoException) => {
          opts.log(`agentbox: cannot start the box: ${e.message}`);
          resolve(e.code === 'ENOENT' ? 127 : 125);
        });
        c.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGHUP: 1, SIGPIPE: 13 } as Record<string, number>)[signal] ?? 1 : 1)));
      });
      const exited = exitedRaw.then(async (code) => {
        await stopRelay?.();
        // What the agent wrote before it exited is shown (a box child still holding the pipe is ended by cleanup).
        if (piped.length > 0) {
          await Promise.race([pipesDone, new Promise((r) => setTimeout(r, 500))]);
          for (const p of piped) p.destroy();
        }
        return code;
      });
      return { pid: c.pid ?? 0, identity: c.pid ? identify(c.pid) ?? null : null, exited };
    },
    signal: killGroup,
    freeze: () => {
      if (cgroups?.freeze()) return 'cgroup freezer: every process of the session is frozen';
      killGroup('SIGSTOP');
      return 'SIGSTOP sent to the session (no cgroup freezer)';
    },
    thaw: () => {
      cgroups?.thaw();
      killGroup('SIGCONT');
    },
    limitHits: () => cgroups?.hits() ?? { pids: 0, memory: 0 },
    cleanup: async () => {
      await cgroups?.removeWhenEmpty(() => killGroup('SIGKILL'));
      // Every record and event of the ended processes, before the watchers stop.
      await Promise.all(watchers.map((w) => w.fence()));
      await stopWatchers();
      unmountBox(prep.paths);
    },
  };
  return { plan, box };
}

/** Polls `find` until it answers, the box exits, or `ms` pass. */
async function waitFor(find: () => number | undefined, ms: number, child: ReturnType<typeof spawn>): Promise<number> {
  const until = Date.now() + ms;
  for (;;) {
    const v = find();
    if (v !== undefined) return v;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('the box exited before its agent started');
    if (Date.now() > until) throw new Error(`the box did not reach its agent within ${ms / 1000}s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
