/**
 * The micro-VM runtime: the agent in its own kernel under QEMU `-M microvm`, built from
 * box/microvm.ts and the image of image.ts; the session (proxy, governance,
 * ttl, quarantine as QMP `stop`, revert, audit) is session/lifecycle.ts. The engine sits behind
 * this one module, so Firecracker or cloud-hypervisor can take QEMU's place where
 * they exist.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, copyFileSync, createReadStream, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { posix } from 'node:path';
import { AgentboxError } from '../../errors.js';
import type { Model } from '../../model/types.js';
import { whichSync } from '../../host/which.js';
import { reservedOverlaps } from '../../box/common.js';
import { debugEnabled, imageCache, microvmAccel } from '../../env.js';
import { prepareSession } from '../../session/prepare.js';
import { unmountBox } from '../../session/layers.js';
import { readMicrovmImage } from './image.js';
import { BOOT_DEADLINE_SECONDS, buildMicrovmPlan, SAFE_SESSION_PATH, type MicrovmPlan } from '../../box/microvm.js';
import { seccompBytes } from '../../box/seccomp.js';
import type { Box } from '../../session/box.js';
import { placeEgress, type BuildOptions, type Built } from '../build.js';
import { CA_BUNDLE_NAME } from '../../box/common.js';
import { writeFileNoFollow } from '../../host/open-exact.js';
import { newSessionId } from '../../session/records.js';
import { identify } from '../../host/proc.js';
import { bindOpened, bindPath, mountLayers, pathKind } from '../host-mounts.js';


/** One QMP command on the session's monitor socket. */
export function qmp(socket: string, command: string, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let buf = '';
    let stage = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`QMP ${command}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', (d) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        if (!l.trim()) continue;
        const m = JSON.parse(l) as { QMP?: unknown; return?: unknown; error?: { desc: string } };
        if (m.error) {
          clearTimeout(timer);
          s.destroy();
          reject(new Error(`QMP ${command}: ${m.error.desc}`));
          return;
        }
        if (stage === 0 && m.QMP) {
          stage = 1;
          s.write('{"execute":"qmp_capabilities"}\n');
        } else if (stage === 1 && m.return !== undefined) {
          stage = 2;
          s.write(JSON.stringify({ execute: command }) + '\n');
        } else if (stage === 2 && m.return !== undefined) {
          clearTimeout(timer);
          s.end();
          resolve();
        }
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export async function buildMicrovmBox(model: Model, opts: BuildOptions): Promise<Built<MicrovmPlan>> {
  const gaps: string[] = [];
  const image = readMicrovmImage(imageCache());
  if (!image || !existsSync(image.kernel) || !existsSync(image.initramfs)) gaps.push(`no micro-VM kernel and initramfs in ${imageCache()}: agentbox image build --microvm`);
  const qemu = whichSync('qemu-system-x86_64');
  if (!qemu) gaps.push('QEMU is not installed (apt-get install qemu-system-x86)');
  const setpriv = whichSync('setpriv') ?? '';
  if (!setpriv) gaps.push('setpriv is not installed: QEMU is bound to the launcher\'s life through it (apt-get install util-linux)');
  const socat = whichSync('socat');
  if (!socat) gaps.push('socat is not installed: the guest reaches its proxy through it (apt-get install socat)');
  if (process.getuid?.() !== 0) gaps.push('the micro-VM runtime needs root (9p passthrough keeps the agent uid on writable grants; the session overlays)');
  if (!SAFE_SESSION_PATH.test(opts.state)) gaps.push(`the state directory ${JSON.stringify(opts.state)} must contain only letters, digits and . _ - / (its paths go into QEMU options; set AGENTBOX_STATE_DIR)`);
  gaps.push(...reservedOverlaps(model, ['/usr', '/proc', '/sys', '/dev', '/ctl', '/run'], [], 'which the guest builds itself'));
  const forcedAccel = microvmAccel();
  if (forcedAccel !== undefined && forcedAccel !== 'kvm' && forcedAccel !== 'tcg') throw new AgentboxError('USAGE', `AGENTBOX_MICROVM_ACCEL=${JSON.stringify(forcedAccel)}: use kvm or tcg, or unset it for the boot probe's choice`);
  if (gaps.length > 0 && !opts.dryRun) throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot build the micro-VM for ${model.name} on this host; nothing was started`, { details: gaps });
  const id = newSessionId(model.name);
  const uid = model.agent.uid;
  // 9p does not carry host sockets into the guest: nothing inside a grant to cover.
  const prep = prepareSession(model, { state: opts.state, id, root: true, uid, gid: uid, dryRun: opts.dryRun, log: opts.log, socketsReachable: false });
  const sessionDir = prep.paths.dir;
  const egress = placeEgress(prep.paths, opts.egress, opts.dryRun);
  const plan = buildMicrovmPlan(model, opts.command, {
    ...(egress ? { egress } : {}),
    now: Date.now(),
    session: prep.paths,
    kernel: image?.kernel ?? '(not built)',
    initramfs: image?.initramfs ?? '(not built)',
    accel: (forcedAccel as 'kvm' | 'tcg' | undefined) ?? image?.accel ?? 'tcg',
    uid,
    gid: uid,
    kind: pathKind,
    cwd: process.cwd(),
    term: process.env.TERM,
    socat: socat ?? 'socat',
    grants: prep.grants,
  });
  if (opts.dryRun) {
    prep.release();
    return { plan, box: null };
  }

  let child: ChildProcess | undefined;
  let endedBy: NodeJS.Signals | undefined;
  let interruptSaid = false;
  const box: Box = {
    runtime: 'microvm',
    isolation: null,
    id,
    paths: prep.paths,
    layers: prep.layers,
    proxySocket: plan.proxySocket,
    uid,
    gid: uid,
    cgroupDirs: [],
    controls: plan.controls,
    facts: { accel: plan.argv[plan.argv.indexOf('-accel') + 1], kernel: image?.version ?? null },
    start: async () => {
      try {
        // The grants as opened, bound read-only for 9p to share; the writable ones' layers.
        mountLayers(model, opts.command, plan.layers, (i) => prep.opened[prep.grants.findIndex((g) => g.layer === i)]!);
        for (const b of plan.binds) {
          if (b.source === 'fd') bindOpened(prep.opened[b.grant]!, b.at, true);
          else bindPath(plan.layers.find((l) => l.index === prep.grants[b.grant]!.layer)!.copy, b.at);
        }
      } finally {
        prep.release();
      }
      mkdirSync(plan.ctlDir, { recursive: true, mode: 0o700 });
      writeFileSync(posix.join(plan.ctlDir, 'config'), plan.config, { mode: 0o600 });
      writeFileSync(posix.join(plan.ctlDir, 'seccomp.bpf'), seccompBytes(), { mode: 0o600 });
      if (egress?.caBundle) writeFileNoFollow(posix.join(plan.ctlDir, CA_BUNDLE_NAME), readFileSync(egress.caBundle), 0o644, false);
      const deadline = BOOT_DEADLINE_SECONDS[plan.argv[plan.argv.indexOf('-accel') + 1] === 'kvm' ? 'kvm' : 'tcg'];
      /** One boot: QEMU with fresh output relays; resolves with the exit code, or 'stalled' if the guest never reached the agent. */
      const bootOnce = (onSpawn: (c: ChildProcess) => void) =>
        new Promise<number | 'stalled'>((resolve) => {
          // The guest's stdout and stderr: FIFOs QEMU writes and the launcher relays.
          const relays: Promise<void>[] = [];
          for (const [name, sink] of [['out.fifo', process.stdout], ['err.fifo', process.stderr]] as const) {
            const fifo = posix.join(sessionDir, name);
            rmSync(fifo, { force: true });
            execFileSync('mkfifo', ['-m', '0600', fifo]);
            const r = createReadStream(fifo);
            r.pipe(sink, { end: false });
            relays.push(
              new Promise((res) => {
                r.on('close', () => res());
                r.on('error', () => res());
              }),
            );
          }
          const bootStart = Date.now();
          // Progress for people: booting takes seconds under TCG.
          const progress = Boolean(process.stderr.isTTY) || opts.verbose;
          const accelName = plan.argv[plan.argv.indexOf('-accel') + 1];
          if (progress) opts.log(`agentbox: booting the micro-VM (${accelName === 'kvm' ? 'KVM' : 'TCG emulation, a few seconds'})…`);
          let saidStarted = false;
          let stalled = false;
          let exitSeen = 0;
          // QEMU dies with the launcher (parent-death signal) and has its own process
          // group, so a terminal's Ctrl-C reaches the launcher, which ends the VM in order.
          const c = spawn(setpriv, ['--pdeathsig', 'SIGKILL', '--', qemu!, ...plan.argv.slice(1)], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
          onSpawn(c);
          let qemuErr = '';
          c.stderr?.on('data', (d: Buffer) => (qemuErr = (qemuErr + d.toString()).slice(-2000)));
          // Watchdog: a guest that never reaches the agent is stopped (fail closed); a
          // QEMU that outlives its guest's poweroff by 3 s is ended (the exit code is in).
          const watchdog = setInterval(() => {
            if (c.exitCode !== null || c.signalCode !== null) return;
            if (existsSync(posix.join(plan.ctlDir, 'exit'))) {
              exitSeen ||= Date.now();
              if (Date.now() - exitSeen > 3000) c.kill('SIGKILL');
            } else if (existsSync(posix.join(plan.ctlDir, 'started'))) {
              if (progress && !saidStarted) opts.log(`agentbox: micro-VM up in ${((Date.now() - bootStart) / 1000).toFixed(1)} s; the agent is running`);
              saidStarted = true;
            } else if ((Date.now() - bootStart) / 1000 > deadline) {
              stalled = true;
              c.kill('SIGKILL');
            }
          }, 250);
          c.on('error', (e) => {
            clearInterval(watchdog);
            opts.log(`agentbox: cannot start QEMU: ${e.message}`);
            resolve(125);
          });
          c.on('exit', async (code, signal) => {
            clearInterval(watchdog);
            if (qemuErr.trim() && !stalled) opts.log(`agentbox: QEMU: ${qemuErr.trim()}`);
            // A FIFO QEMU never opened would keep its reader (and this process) waiting: open and close its write end.
            for (const name of ['out.fifo', 'err.fifo']) {
              try {
                closeSync(openSync(posix.join(sessionDir, name), fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
              } catch {
                // no reader waiting
              }
            }
            // Output in flight: let the relays drain, at most 500 ms.
            let t: NodeJS.Timeout | undefined;
            await Promise.race([Promise.all(relays), new Promise((x) => (t = setTimeout(x, 500)))]);
            clearTimeout(t);
            const file = posix.join(plan.ctlDir, 'exit');
            if (existsSync(file)) {
              const failure = posix.join(plan.ctlDir, 'failure');
              if (existsSync(failure)) opts.log(`agentbox: the guest could not start the agent: ${readFileSync(failure, 'utf8').trim()}`);
              resolve(Number(readFileSync(file, 'utf8').trim()));
            } else if (endedBy) resolve(128 + ({ SIGTERM: 15, SIGKILL: 9 } as Record<string, number>)[endedBy]!);
            else if (stalled) resolve('stalled');
            else {
              // Kept beside the session record: the session directory goes with the session.
              const kept = `${sessionDir}.console.log`;
              try {
                copyFileSync(posix.join(sessionDir, 'console.log'), kept);
              } catch {
                // no console output
              }
              opts.log(`agentbox: the micro-VM stopped without the agent's exit code (QEMU ${signal ?? `exit ${code}`}); guest console: ${kept}`);
              resolve(125);
            }
          });
        });
      let pid = 0;
      let first!: () => void;
      const spawned = new Promise<void>((r) => (first = r));
      const exited = (async () => {
        // A guest that stalls before the agent starts (seen rarely under TCG) is booted
        // once more: nothing of the agent has run yet. A second stall fails closed.
        for (let attempt = 1; ; attempt++) {
          const r = await bootOnce((c) => {
            child = c;
            pid = c.pid ?? 0;
            first();
          });
          if (r !== 'stalled') return r;
          if (attempt >= 2 || endedBy) {
            opts.log(`agentbox: the micro-VM did not reach the agent within ${deadline}s, twice; nothing ran`);
            return 125;
          }
          opts.log(`agentbox: the micro-VM did not reach the agent within ${deadline}s; booting it again`);
        }
      })();
      await spawned;
      return { pid, identity: identify(pid) ?? null, exited };
    },
    signal: (sig) => {
      if (!child?.pid || sig === 'SIGCONT' || sig === 'SIGSTOP') return;
      // A Ctrl-C (SIGINT) has nowhere to go in the guest, and to QEMU it would be the end
      // of the session: it is not passed on (the session ends only by exit, ttl or kill).
      if (sig === 'SIGINT') {
        if (!interruptSaid) opts.log(`agentbox: a Ctrl-C is not passed into the micro-VM (its agent has no terminal); agentbox kill ${id} ends the session`);
        interruptSaid = true;
        return;
      }
      // The guest's agent ends with its VM: TERM, then KILL, go to QEMU itself.
      endedBy ??= sig;
      try {
        process.kill(child.pid, sig);
      } catch {
        // gone
      }
    },
    freeze: async () => {
      await qmp(plan.qmpSocket, 'stop');
      return 'QMP stop: the micro-VM\'s vCPUs are halted (the whole guest is frozen)';
    },
    thaw: async () => {
      if (!child?.pid || child.exitCode !== null) return;
      try {
        await qmp(plan.qmpSocket, 'cont');
      } catch {
        // not running
      }
    },
    limitHits: () => ({ pids: 0, memory: 0 }),
    cleanup: () => {
      // AGENTBOX_DEBUG keeps the guest's console (kernel, init) beside the session record.
      if (debugEnabled()) {
        try {
          copyFileSync(posix.join(sessionDir, 'console.log'), `${sessionDir}.console.log`);
        } catch {
          // no console output
        }
      }
      unmountBox(prep.paths);
      rmSync(plan.ctlDir, { recursive: true, force: true });
    },
  };
  return { plan, box };
}
