/**
 * One agent session, whatever runs it: the egress proxy with its governance layers,
 * the session record and token, ttl, quarantine and release, token revocation, limit
 * events, and at the end the writable layers listed and reverted or committed, each
 * step audited. The runtime (process: bubblewrap; container: Docker Engine; micro-VM:
 * QEMU) is a `Box`: it starts the agent, signals, freezes and thaws it, and removes
 * what it made.
 *
 * The end always runs, whatever failed before it: the box is ended, its objects
 * removed, its layers listed and dropped or committed, the exit audited and the record
 * closed. A failure of any step is audited and reported, never left as a half-ended
 * session or an unhandled error.
 */
import { writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { Model, RuntimeKind } from '../model/types.js';
import { AuditSink, deviceKey } from '../audit/sink.js';
import { mintToken, modelScopes, readRevoked } from '../tokens/token.js';
import type { SessionPaths } from '../box/common.js';
import type { Labels } from '../policy/entities.js';
import type { Authorizer } from '../policy/verdict.js';
import { identify, type ProcessIdentity } from '../host/proc.js';
import { startSessionProxy, type SessionProxy } from '../egress/session-proxy.js';
import type { Violation } from '../egress/proxy.js';
import { writeSession, type Session } from './records.js';
import { commitLayers, dropLayers, layerChanges, removeSessionDir, type Change, type SessionLayers } from './layers.js';
import { isolate, revokeAndCollect } from './quarantine.js';
import type { EvidenceInput } from './evidence.js';
import { listSummary } from './summary.js';

export type { Change } from './layers.js';

/** What a runtime provides to the session. */
export interface Box {
  runtime: RuntimeKind;
  isolation: 'runc' | 'gvisor' | null;
  id: string;
  paths: SessionPaths;
  /** The writable layers (null when nothing is granted for writing). */
  layers: SessionLayers | null;
  /** Where the session's egress proxy listens, if the agent has network. */
  proxySocket: string | undefined;
  /** The agent's uid and gid (owner of the proxy socket; the commit runs as them). */
  uid: number;
  gid: number;
  cgroupDirs: string[];
  /** The controls this box applies (for the launch audit entry). */
  controls: string[];
  /** Facts for the launch audit entry (image and its digest, accelerator). */
  facts?: Record<string, unknown>;
  /** The container runtime: a reaper process finishes the session if the launcher dies. */
  needsReaper?: boolean;
  /** Starts the agent; `exited` resolves with its exit code (127/125 for not found / failed to start). */
  start(): Promise<BoxStarted>;
  signal(sig: NodeJS.Signals): void | Promise<void>;
  /** Freezes every process of the agent; returns how, in words. */
  freeze(): string | Promise<string>;
  thaw(): void | Promise<void>;
  limitHits(): { pids: number; memory: number };
  /** Ends what is left of the box and removes what the runtime made (cgroups, container, host mounts); the layers stay. */
  cleanup(): void | Promise<void>;
  /** Runtime-specific evidence (the engine's process list, what cannot be read). */
  evidence?(): EvidenceInput;
}

export interface BoxStarted {
  pid: number;
  identity: ProcessIdentity | null;
  container?: string;
  exited: Promise<number>;
}

export interface LaunchOptions {
  command: string[];
  state: string;
  dryRun: boolean;
  verbose: boolean;
  diff: boolean;
  landlockHelper: string | undefined;
  log: (line: string) => void;
  /** For tests: resolve names without DNS. */
  resolve?: (host: string) => Promise<string[]>;
  /** A verified token the session runs under (its scopes were already intersected). */
  tokenExp?: number | null;
  /** Organisation policy the egress proxy consults per connection (the launch check already passed). */
  policy?: { engine: Authorizer; labels: Labels; dir: string };
  /** Ask for consent on the launching terminal too (it is a TTY). */
  tty?: boolean;
  /** Starts the reaper for a box that needs one (the CLI knows how to run agentbox). */
  spawnReaper?: (state: string, session: string) => ProcessIdentity | null;
}

export interface LaunchResult {
  session: string;
  exitCode: number;
  endReason: string;
  changes: Change[];
  egress: { allowed: number; denied: Record<string, number> };
  /** Persist: whether the commit applied (null for revert or no layers). */
  committed: boolean | null;
}

export async function runSession(model: Model, opts: LaunchOptions, box: Box): Promise<LaunchResult> {
  const { id } = box;
  const audit = new AuditSink(opts.state);
  const event = (action: string, resource: string, decision: 'allow' | 'deny' | 'info', reason: string, details?: Record<string, unknown>) => {
    try {
      audit.append({ session: id, agent: model.name, action, resource, decision, reason, ...(details ? { details } : {}) });
    } catch (e) {
      opts.log(`agentbox: could not write the audit log: ${(e as Error).message}`);
    }
  };
  // A failure nobody awaited must not take the supervisor (and the box's cleanup) down.
  // Recorded once per kind, at most 20 in all, and never through the channel that failed:
  // a launcher whose terminal went away (EPIPE) keeps supervising in silence.
  let internalErrors = 0;
  let reporting = false;
  const internal = (e: unknown) => {
    if (reporting) return;
    reporting = true;
    try {
      const code = (e as NodeJS.ErrnoException)?.code;
      if (code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END') return;
      const msg = ((e as Error)?.message ?? String(e)).split('\n')[0] ?? 'error';
      if (++internalErrors > 20) return;
      event('session.internal-error', id, 'info', msg);
      if (internalErrors <= 3) opts.log(`agentbox: internal error in session ${id} (recorded; the session goes on): ${msg}`);
    } catch {
      // nothing more can be done about it here
    } finally {
      reporting = false;
    }
  };
  // The operator's terminal closing is not the session's end: messages are dropped.
  const quietStderr = () => undefined;
  process.stderr.on('error', quietStderr);
  process.on('unhandledRejection', internal);
  process.on('uncaughtException', internal);

  const started = new Date();
  const session: Session = {
    id,
    agent: model.name,
    runtime: box.runtime,
    isolation: box.isolation,
    state: 'running',
    pid: 0,
    box: null,
    launcherPid: process.pid,
    launcher: identify(process.pid) ?? { pid: process.pid, start: '' },
    reaper: null,
    container: null,
    startedAt: started.toISOString(),
    expiresAt: model.ttlSeconds !== undefined ? new Date(started.getTime() + model.ttlSeconds * 1000).toISOString() : null,
    exitCode: null,
    endedAt: null,
    endReason: null,
    dir: box.paths.dir,
    run: box.paths.run,
    jti: null,
    cgroups: box.cgroupDirs,
    layers: box.layers,
    snapshot: model.runtime.snapshot,
    uid: box.uid,
    gid: box.gid,
    egressCut: false,
    quarantinedAt: null,
  };

  let endReason = 'exited';
  let exitCode = 125;
  let sp: SessionProxy | undefined;
  let quarantine: (why: string) => Promise<void> = async () => undefined;
  const cleanups: (() => void)[] = [];
  let startedBox = false;
  try {
    if (box.proxySocket) {
      sp = await startSessionProxy(model, {
        state: opts.state,
        session: id,
        socket: box.proxySocket,
        uid: box.uid,
        gid: box.gid,
        verbose: opts.verbose,
        tty: Boolean(opts.tty),
        log: opts.log,
        event,
        policy: opts.policy,
        resolve: opts.resolve,
        onViolation: (v: Violation) => {
          if (model.egress.onViolation === 'quarantine') quarantine(`${v.kind} violation towards ${v.host}:${v.port}`).catch(internal);
        },
      });
    }

    // The session's capability token: its scopes, its lifetime, revocable by jti.
    const ttlExp = model.ttlSeconds !== undefined ? Math.floor(started.getTime() / 1000) + model.ttlSeconds : null;
    const exp = opts.tokenExp != null && (ttlExp === null || opts.tokenExp < ttlExp) ? opts.tokenExp : ttlExp;
    const minted = await mintToken(deviceKey(opts.state).privateKey, { sub: model.name, sid: id, scopes: modelScopes(model), exp });
    session.jti = minted.claims.jti;
    writeFileSync(posix.join(opts.state, 'sessions', `${id}.token`), minted.token + '\n', { mode: 0o600 });

    let boxRunning = false;
    const end = (reason: string) => {
      if (endReason !== 'exited') return;
      endReason = reason;
      // Before the box runs there is nothing to signal: start() sees endReason and stops it.
      if (!boxRunning) return;
      (async () => {
        // A frozen process cannot act on a signal: thaw first (egress stays cut).
        await box.thaw();
        await box.signal('SIGCONT');
        await box.signal('SIGTERM');
        setTimeout(() => void Promise.resolve(box.signal('SIGKILL')).catch(internal), 2000).unref();
      })().catch(internal);
    };
    // The launcher's stdout reader went away (`agentbox launch … | head`): the session
    // ends through the normal path, as the agent itself would on SIGPIPE.
    const onStdoutError = (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') end('stdout closed');
    };
    process.stdout.on('error', onStdoutError);
    cleanups.push(() => process.stdout.off('error', onStdoutError));
    const agent = await box.start();
    boxRunning = true;
    if (endReason !== 'exited') {
      const why = endReason;
      endReason = 'exited';
      end(why);
    }
    startedBox = true;
    session.pid = agent.pid;
    session.box = agent.identity;
    session.container = agent.container ?? null;
    session.cgroups = [...box.cgroupDirs];
    writeSession(opts.state, session);
    if (box.needsReaper && opts.spawnReaper) {
      session.reaper = opts.spawnReaper(opts.state, id);
      writeSession(opts.state, session);
    }
    event('token.minted', minted.claims.jti, 'info', 'session token', { scopes: minted.claims.scopes, exp: minted.claims.exp });
    event('launch', opts.command.join(' '), 'allow', 'session started', {
      runtime: box.runtime,
      ...(box.isolation ? { isolation: box.isolation } : {}),
      ...(box.facts ?? {}),
      uid: box.uid,
      controls: box.controls,
      grants: [...model.grants.fs, ...model.grants.net, ...model.grants.exec].map((g) => g.source.text),
      ttlSeconds: model.ttlSeconds ?? null,
      limits: model.limits,
      ...(box.layers ? { layers: { fs: box.layers.fs, limitBytes: box.layers.limitBytes, snapshot: model.runtime.snapshot } } : {}),
      ...(opts.policy ? { policy: { dir: opts.policy.dir, policies: [...opts.policy.engine.policies.keys()], checked: 'every grant allowed' } } : {}),
      ...(model.egress.consent ? { consent: model.egress.consent.hosts.map((h) => h.source.text) } : {}),
      ...(model.egress.dlp ? { dlp: [...model.egress.dlp.detectors, ...model.egress.dlp.custom.map((c) => c.name)] } : {}),
      ...(model.egress.maxUploadBytes !== undefined ? { maxUploadBytes: model.egress.maxUploadBytes, maxSessionUploadBytes: model.egress.maxSessionUploadBytes, uploadWindowSeconds: model.egress.uploadWindowSeconds, onViolation: model.egress.onViolation } : {}),
    });

    if (model.ttlSeconds !== undefined) {
      const t = setTimeout(() => {
        opts.log(`agentbox: ${id} reached its ttl of ${model.ttlSeconds}s; ending the session`);
        event('ttl.expired', id, 'deny', `ttl ${model.ttlSeconds}s reached`);
        end('ttl');
      }, model.ttlSeconds * 1000);
      cleanups.push(() => clearTimeout(t));
    }
    const onSignal = (sig: NodeJS.Signals) => end(sig === 'SIGTERM' ? 'killed' : `signal ${sig}`);
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(s, onSignal);
      cleanups.push(() => process.off(s, onSignal));
    }

    // Quarantine (SIGUSR1 from `agentbox quarantine`, or a violation under onViolation:
    // quarantine): cut egress and freeze; a violation then revokes and takes evidence.
    let quarantining = false;
    const onQuarantine = async (why: string): Promise<boolean> => {
      if (quarantining || session.state === 'quarantined' || endReason !== 'exited') return false;
      quarantining = true;
      try {
        await isolate(session, box, sp, why, event, opts.state);
      } finally {
        quarantining = false;
      }
      opts.log(`agentbox: session ${id} quarantined (${why}): egress cut, processes frozen; agentbox kill ${id} ends it, agentbox release ${id} thaws it`);
      return true;
    };
    quarantine = async (why: string) => {
      if (!(await onQuarantine(why))) return;
      await revokeAndCollect(opts.state, session, why, event, { ...(box.evidence?.() ?? {}), egress: sp?.proxy.openTunnels() });
    };
    const onSigQuarantine = () => void onQuarantine('agentbox quarantine').catch(internal);
    // Release (SIGUSR2 from `agentbox release`): thaw; egress stays cut.
    const onSigRelease = () =>
      void (async () => {
        if (session.state !== 'quarantined') return;
        await box.thaw();
        session.state = 'running';
        writeSession(opts.state, session);
        event('quarantine.released', id, 'info', 'processes thawed; egress stays cut');
      })().catch(internal);
    process.on('SIGUSR1', onSigQuarantine);
    process.on('SIGUSR2', onSigRelease);
    cleanups.push(() => process.off('SIGUSR1', onSigQuarantine), () => process.off('SIGUSR2', onSigRelease));
    // A revoked or expired token ends its session.
    const tokenWatch = setInterval(() => {
      // A quarantined (or released) session's token is revoked on purpose: it stays frozen or cut off
      // for the responder rather than being ended.
      if (session.egressCut) return;
      if (readRevoked(opts.state).has(minted.claims.jti)) {
        event('token.revoked-ended', minted.claims.jti, 'deny', 'the session token was revoked; ending the session');
        opts.log(`agentbox: the token of ${id} was revoked; ending the session`);
        clearInterval(tokenWatch);
        end('token revoked');
      } else if (opts.tokenExp != null && Date.now() / 1000 >= opts.tokenExp) {
        event('token.expired', minted.claims.jti, 'deny', 'the token the session runs under expired');
        clearInterval(tokenWatch);
        end('token expired');
      }
    }, 200);
    cleanups.push(() => clearInterval(tokenWatch));

    exitCode = await agent.exited;
    if (endReason === 'stdout closed' && exitCode !== 0) exitCode = 141;
  } catch (e) {
    if (!startedBox) {
      for (const c of cleanups) c();
      await finish(model, opts, box, session, { endReason, exitCode, startedBox, sp, event });
      process.off('unhandledRejection', internal);
      process.off('uncaughtException', internal);
      process.stderr.off('error', quietStderr);
      throw e;
    }
    // After the box started, a failure is recorded and the session ends the normal way.
    internal(e);
  }
  for (const c of cleanups) c();
  const result = await finish(model, opts, box, session, { endReason, exitCode, startedBox, sp, event });
  process.off('unhandledRejection', internal);
  process.off('uncaughtException', internal);
  process.stderr.off('error', quietStderr);
  return result;
}

interface FinishState {
  endReason: string;
  exitCode: number;
  startedBox: boolean;
  sp: SessionProxy | undefined;
  event: (action: string, resource: string, decision: 'allow' | 'deny' | 'info', reason: string, details?: Record<string, unknown>) => void;
}

/** The end of a session, every step of it, each failure caught and audited. */
async function finish(model: Model, opts: LaunchOptions, box: Box, session: Session, f: FinishState): Promise<LaunchResult> {
  const { event } = f;
  const step = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (e) {
      event('session.cleanup-error', session.id, 'info', `${what}: ${(e as Error).message.split('\n')[0]}`);
      opts.log(`agentbox: ${what} failed: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  await step('thawing the box', () => box.thaw());
  await step('ending the box', () => box.signal('SIGKILL'));
  await step('closing the egress proxy', () => f.sp?.close());
  const hits = (() => {
    try {
      return box.limitHits();
    } catch {
      return { pids: 0, memory: 0 };
    }
  })();
  if (hits.pids > 0) event('limit.pids', session.id, 'deny', `${hits.pids} process creations refused at pids=${model.limits.pids}`);
  if (hits.memory > 0) event('limit.memory', session.id, 'deny', `memory limit reached ${hits.memory} times`);
  await step('removing the box', () => box.cleanup());
  if (f.startedBox) event('exit', session.id, 'info', f.endReason, { exitCode: f.exitCode });

  let changes: Change[] = [];
  let committed: boolean | null = null;
  if (box.layers) {
    const layers = box.layers;
    await step('listing the changes', () => {
      changes = layerChanges(layers.layers);
    });
    if (f.startedBox && model.runtime.snapshot === 'persist') {
      await step('committing the changes', () => {
        const r = commitLayers(layers.layers, box.uid, box.gid);
        committed = r.ok;
        for (const p of r.skipped) opts.log(`agentbox: not committed (not a regular file, directory or symlink): ${p}`);
        if (r.ok) event('persist', session.id, 'info', `${changes.length - r.skipped.length} changes committed`, { changes: listSummary(changes.map((c) => `${c.kind} ${c.path}`)), notCommitted: listSummary(r.skipped) });
        else {
          event('persist.failed', session.id, 'deny', r.partial ? 'the commit failed and could not be fully undone' : 'the commit failed; nothing was changed', { failures: listSummary(r.failures), changes: listSummary(changes.map((c) => `${c.kind} ${c.path}`)) });
          for (const x of r.failures) opts.log(`agentbox: ${x}`);
        }
      });
    } else event('revert', session.id, 'info', `${changes.length} changes discarded`, { changes: listSummary(changes.map((c) => `${c.kind} ${c.path}`)) });
    // A failed commit keeps the layers for an administrator: they are the agent's work.
    if (committed === false) {
      opts.log(`agentbox: the agent's changes are kept in ${layers.image ?? layers.mount} (not applied)`);
      await step('unmounting the kept layers', () => dropLayersKeepImage(layers));
    } else await step('dropping the layers', () => dropLayers(layers));
  }
  const kept = committed === false;
  await step('removing the session directories', () => {
    removeSessionDir(session.run);
    if (!kept) removeSessionDir(session.dir);
  });
  await step('closing the session record', () => writeSession(opts.state, { ...session, state: 'exited', exitCode: f.exitCode, endedAt: new Date().toISOString(), endReason: f.endReason, layers: kept ? session.layers : null, egressCut: session.egressCut }));
  return { session: session.id, exitCode: f.exitCode, endReason: f.endReason, changes, egress: f.sp?.egress ?? { allowed: 0, denied: {} }, committed };
}

function dropLayersKeepImage(layers: SessionLayers): void {
  dropLayers({ ...layers, image: null });
}
