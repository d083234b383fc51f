/**
 * One agent session, whatever runs it: the egress proxy with its governance layers,
 * the session record and token, ttl, quarantine and release, token revocation, limit
 * events, and at the end the writable layers listed and reverted or committed, each
 * step audited. The runtime (process: bubblewrap; container: Docker Engine; micro-VM:
 * QEMU) is a `Box` (box.ts); requests (quarantine, release, end) arrive through a
 * `SessionControl` (control.ts), by default the launcher's own signals.
 *
 * The end (finish.ts) always runs, whatever failed before it. A failure after the box
 * started is recorded and the session ends the normal way; one before it undoes what
 * was made and is thrown to the caller.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Model } from '../model/types.js';
import { deviceKey } from '../audit/sink.js';
import { mintToken, modelScopes, readRevoked } from '../tokens/token.js';
import { identify } from '../host/proc.js';
import { startSessionProxy, type SessionProxy } from '../egress/session-proxy.js';
import type { Violation } from '../egress/proxy.js';
import { writeSession, type Session } from './records.js';
import type { LaunchResult, SessionOptions } from './options.js';
import { EXEC_SPEC, type Box } from './box.js';
import { cutMarker } from './records.js';
import { socketControl, type ControlAnswer, type ControlHandler, type LocalRequest } from './control.js';
import { attachSocket } from './box.js';
import { installGuard, sessionEvents, type EventFn } from './events.js';
import { finish } from './finish.js';
import { isolate, revokeToken, takeEvidence } from './quarantine.js';
import { SessionObserver } from './observe.js';
import { termSafe } from '../escape/terminal.js';
import { Monitor, type Trip } from './monitor.js';
import { AgentboxError } from '../errors.js';
import { writeFileNoFollow } from '../host/open-exact.js';

export type { Change } from './layers.js';

export type { LaunchResult, SessionOptions } from './options.js';

/** The record a session starts with, before its box runs. */
function initialRecord(model: Model, box: Box, started: Date): Session {
  return {
    id: box.id,
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
}

/** The launch audit entry: what runs, in which box, under which controls and grants. */
function launchDetails(model: Model, box: Box, opts: SessionOptions): Record<string, unknown> {
  return {
    runtime: box.runtime,
    ...(box.isolation ? { isolation: box.isolation } : {}),
    ...(box.facts ?? {}),
    uid: box.uid,
    controls: box.controls,
    grants: [...model.grants.fs, ...model.grants.net, ...model.grants.exec].map((g) => g.source.text),
    ttlSeconds: model.ttlSeconds ?? null,
    limits: model.limits,
    ...(opts.envAdded ? { envAdded: opts.envAdded } : {}),
    ...(box.layers ? { layers: { fs: box.layers.fs, limitBytes: box.layers.limitBytes, snapshot: model.runtime.snapshot } } : {}),
    ...(opts.policy ? { policy: { dir: opts.policy.dir, policies: [...opts.policy.engine.policies.keys()], checked: 'every grant allowed' } } : {}),
    ...(opts.egress?.tls ? { tls: { decrypts: 'hosts with egress.http rules, credentials or inspect: true, and every host under DLP, except inspect: false' } } : {}),
    ...(opts.egress?.brokered.length ? { credentials: opts.egress.brokered.map((b) => ({ name: b.spec.name, host: b.spec.host, env: b.spec.env ?? null, digest: b.digest })) } : {}),
    ...(model.egress.consent ? { consent: model.egress.consent.hosts.map((h) => h.source.text) } : {}),
    ...(model.egress.dlp ? { dlp: [...model.egress.dlp.detectors, ...model.egress.dlp.custom.map((c) => c.name)] } : {}),
    observed: box.observed ?? { files: false, denials: false, why: `the ${box.runtime} runtime does not observe its box through the host kernel` },
    ...(model.egress.maxUploadBytes !== undefined ? { maxUploadBytes: model.egress.maxUploadBytes, maxSessionUploadBytes: model.egress.maxSessionUploadBytes, uploadWindowSeconds: model.egress.uploadWindowSeconds, onViolation: model.egress.onViolation } : {}),
  };
}

/** What the running session reacts to: ttl, requests, a revoked or expired token. Returns the cleanups. */
async function supervise(model: Model, opts: SessionOptions, s: { session: Session; jti: string; event: EventFn; end(reason: string): void; handle: ControlHandler; local(r: LocalRequest): void }): Promise<(() => void)[]> {
  const cleanups: (() => void)[] = [];
  if (model.ttlSeconds !== undefined) {
    const t = setTimeout(() => {
      opts.log(`agentbox: ${s.session.id} reached its ttl of ${model.ttlSeconds}s; ending the session`);
      s.event('ttl.expired', s.session.id, 'deny', `ttl ${model.ttlSeconds}s reached`);
      s.end('ttl');
    }, model.ttlSeconds * 1000);
    cleanups.push(() => clearTimeout(t));
  }
  const control = opts.control ?? socketControl(opts.state, s.session.id, (request, caller, served, detail) =>
    s.event(served ? `control.${request}` : 'control.refused', s.session.id, served ? 'info' : 'deny', served ? `${request} asked on the control socket by ${caller.text}${detail ? `: ${detail}` : ''}` : detail, { by: { uid: caller.uid, pid: caller.pid }, request }),
  );
  cleanups.push(await control.listen(s.handle, s.local));
  const tokenWatch = setInterval(() => {
    // A quarantined (or released) session's token is revoked on purpose: it stays frozen or
    // cut off for the responder rather than being ended.
    // So is one `agentbox quarantine` cut while this launcher could not run (its marker).
    if (s.session.egressCut || existsSync(cutMarker(opts.state, s.session.id))) return;
    if (readRevoked(opts.state).has(s.jti)) {
      s.event('token.revoked-ended', s.jti, 'deny', 'the session token was revoked; ending the session');
      opts.log(`agentbox: the token of ${s.session.id} was revoked; ending the session`);
      clearInterval(tokenWatch);
      s.end('token revoked');
    } else if (opts.tokenExp != null && Date.now() / 1000 >= opts.tokenExp) {
      s.event('token.expired', s.jti, 'deny', 'the token the session runs under expired');
      clearInterval(tokenWatch);
      s.end('token expired');
    }
  }, 200);
  cleanups.push(() => clearInterval(tokenWatch));
  return cleanups;
}

export async function runSession(model: Model, opts: SessionOptions, box: Box): Promise<LaunchResult> {
  const { id } = box;
  const event = sessionEvents(opts.state, id, model.name, opts.log);
  const guard = installGuard(id, event, opts.log);
  const started = new Date();
  const session = initialRecord(model, box, started);

  let endReason = 'exited';
  let exitCode = 125;
  let sp: SessionProxy | undefined;
  let quarantine: (why: string) => Promise<void> = async () => undefined;
  const cleanups: (() => void)[] = [];
  let startedBox = false;
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
      setTimeout(() => void Promise.resolve(box.signal('SIGKILL')).catch(guard.report), 2000).unref();
    })().catch(guard.report);
  };
  // What the kernel sees of the box (file activity, denials), where the runtime observes it.
  // Behaviour rules need the file activity: the manifest's own fail closed without it; a
  // preset's default is recorded as not enforced (docs/visibility.md).
  const monitorTrips: { rule: string; action: string }[] = [];
  let onTrip: (t: Trip) => void = () => undefined;
  const enforceable = Boolean(box.observed?.files);
  const ownRules = model.monitor.filter((r) => r.source.origin === 'manifest');
  const unlabelled = model.monitor.filter((r) => r.labels.length > 0 && !opts.policy);
  const monitor = enforceable && model.monitor.length > 0 ? new Monitor(model.monitor, model.home, opts.policy?.labels, (t) => onTrip(t)) : undefined;
  const observer = box.observed?.files || box.observed?.denials
    ? new SessionObserver({ model, event, log: opts.log, verbose: opts.verbose, uid: box.uid, keepAll: model.learn !== undefined, owns: (pid) => box.owns?.(pid) ?? false, ...(monitor ? { onRead: (p: string, b: number, at: number) => monitor.read(p, b, at) } : {}) })
    : undefined;
  if (observer) {
    box.kernel = { fileLine: (l) => observer.fileLine(l), auditLine: (l) => observer.auditLine(l) };
    const tick = setInterval(() => observer.tick(), 250);
    cleanups.push(() => clearInterval(tick));
  }
  const done = async () => {
    for (const c of cleanups) c();
    try {
      const r = await finish(model, opts, box, session, { endReason, exitCode, startedBox, sp, event, observer });
      return monitorTrips.length > 0 ? { ...r, monitorTrips } : r;
    } finally {
      guard.remove();
    }
  };
  try {
    if (ownRules.length > 0 && !enforceable) {
      throw new AgentboxError('CONTROL_UNAVAILABLE', `the monitor rules of ${model.name} (${ownRules.map((r) => r.name).join(', ')}) cannot be enforced: this box's file activity is not observed (${box.observed?.why ?? `the ${box.runtime} runtime`}); nothing was started`, { details: ['monitor rules need the process runtime, run as root, with observation on (docs/visibility.md)'] });
    }
    if (unlabelled.length > 0 && ownRules.some((r) => unlabelled.includes(r))) {
      throw new AgentboxError('CONTROL_UNAVAILABLE', `monitor rule ${unlabelled[0]!.name} names labels (${unlabelled[0]!.labels.join(', ')}) but no organisation policy with labels.yaml is loaded; nothing was started`, { details: ['give --policy DIR (or AGENTBOX_POLICY), or name folders with reads.under / reads.named'] });
    }
    if (model.monitor.length > 0 && !monitor) {
      opts.log(`agentbox: the preset's monitor rules (${model.monitor.map((r) => r.name).join(', ')}) are not enforced: ${box.observed?.why ?? `the ${box.runtime} runtime does not observe file activity`}`);
    }
    // The proxy's decisions reach the monitor: a connection that completes a
    // read-then-upload rule cuts egress here, synchronously, before it is dialled.
    const proxyEvent: typeof event = (action, resource, decision, reason, details) => {
      event(action, resource, decision, reason, details);
      if (monitor && decision === 'allow' && action.startsWith('egress.') && reason !== 'closed') monitor.egress(resource, Date.now());
    };
    onTrip = (t: Trip) => {
      try {
        writeFileNoFollow(cutMarker(opts.state, id), JSON.stringify({ at: new Date().toISOString(), by: `monitor rule ${t.rule.name}`, reason: t.why }) + '\n', 0o600, true);
      } catch (e) {
        guard.report(e);
      }
      session.egressCut = true;
      monitorTrips.push({ rule: t.rule.name, action: t.rule.onTrip });
      event('monitor.tripped', t.rule.name, 'deny', `${t.why}; onTrip: ${t.rule.onTrip}`, { rule: t.rule.name, from: t.rule.source.origin === 'preset' ? `preset ${t.rule.source.preset}` : t.rule.source.pointer, files: t.files, bytes: t.bytes, ...(t.upload ? { upload: t.upload } : {}), onTrip: t.rule.onTrip });
      opts.log(`agentbox: monitor rule ${t.rule.name} tripped (${termSafe(t.why)}): ${t.rule.onTrip === 'quarantine' ? 'quarantining the session' : 'egress cut for the rest of the session'}`);
      if (t.rule.onTrip === 'quarantine') quarantine(`monitor rule ${t.rule.name}: ${t.why}`).catch(guard.report);
      else void sp?.close().catch(() => undefined);
    };
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
        event: proxyEvent,
        policy: opts.policy,
        resolve: opts.resolve,
        tls: opts.egress?.tls,
        brokered: opts.egress?.brokered,
        cutFile: cutMarker(opts.state, id),
        onViolation: (v: Violation) => {
          if (model.egress.onViolation === 'quarantine') quarantine(`${v.kind} violation towards ${v.host}:${v.port}`).catch(guard.report);
        },
      });
    }

    // The session's capability token: its scopes, its lifetime, revocable by jti.
    const ttlExp = model.ttlSeconds !== undefined ? Math.floor(started.getTime() / 1000) + model.ttlSeconds : null;
    const exp = opts.tokenExp != null && (ttlExp === null || opts.tokenExp < ttlExp) ? opts.tokenExp : ttlExp;
    const minted = await mintToken(deviceKey(opts.state).privateKey, { sub: model.name, sid: id, scopes: modelScopes(model), exp });
    session.jti = minted.claims.jti;
    writeFileSync(posix.join(opts.state, 'sessions', `${id}.token`), minted.token + '\n', { mode: 0o600 });

    // The launcher's stdout reader went away (`agentbox launch … | head`): the session
    // ends through the normal path, as the agent itself would on SIGPIPE.
    const onStdoutError = (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') end('stdout closed');
    };
    process.stdout.on('error', onStdoutError);
    cleanups.push(() => process.stdout.off('error', onStdoutError));
    box.terminalEvents = {
      attached: (by) => event('session.attach', id, 'allow', `attached to the agent's terminal by ${by}`, { by }),
      detached: (by) => event('session.detach', id, 'info', `detached from the agent's terminal by ${by}`, { by }),
    };
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
    if (box.execSpec) {
      mkdirSync(session.dir, { recursive: true, mode: 0o700 });
      writeFileSync(join(session.dir, EXEC_SPEC), JSON.stringify(box.execSpec), { mode: 0o600 });
    }
    // Audited before the record says running: whoever sees a running session finds its launch entry.
    event('token.minted', minted.claims.jti, 'info', 'session token', { scopes: minted.claims.scopes, exp: minted.claims.exp });
    event('launch', opts.command.join(' '), 'allow', 'session started', launchDetails(model, box, opts));
    writeSession(opts.state, session);
    if (box.needsReaper && opts.spawnReaper) {
      session.reaper = opts.spawnReaper(opts.state, id);
      writeSession(opts.state, session);
    }

    // Quarantine (a request, or a violation under onViolation: quarantine): cut egress and
    // freeze; a violation then revokes and takes evidence. A request comes from
    // `agentbox quarantine`, which has already frozen the box and cut its egress through the
    // kernel (`frozenBy`): the launcher closes its proxy, revokes and answers with what only
    // it knows (the tunnels open at the cut); the caller takes the evidence.
    let quarantining = false;
    const isolateOnce = async (why: string, by?: { frozenBy: string; by: string }): Promise<boolean> => {
      if (quarantining || session.state === 'quarantined' || endReason !== 'exited') return false;
      quarantining = true;
      try {
        await isolate(session, box, sp, why, event, opts.state, by);
      } finally {
        quarantining = false;
      }
      opts.log(`agentbox: session ${id} quarantined (${why}): egress cut, processes frozen; agentbox kill ${id} ends it, agentbox release ${id} thaws it`);
      return true;
    };
    quarantine = async (why: string) => {
      if (!(await isolateOnce(why))) return;
      revokeToken(opts.state, session, why, event);
      await takeEvidence(opts.state, session, why, event, { ...(box.evidence?.() ?? {}), egress: sp?.proxy.openTunnels() });
    };
    // Release: thaw; egress stays cut.
    const release = async () => {
      if (session.state !== 'quarantined') return;
      await box.thaw();
      session.state = 'running';
      writeSession(opts.state, session);
      event('quarantine.released', id, 'info', 'processes thawed; egress stays cut');
    };
    const status = (): ControlAnswer => ({ ok: true, state: session.state, session: id, agent: model.name, runtime: box.runtime, pid: session.pid, egressCut: session.egressCut, quarantinedAt: session.quarantinedAt });
    const handle: ControlHandler = async (r, caller) => {
      switch (r.kind) {
        case 'status':
          return status();
        case 'quarantine': {
          const tunnels = sp?.proxy.openTunnels() ?? [];
          await isolateOnce(r.why, r.frozenBy ? { frozenBy: r.frozenBy, by: caller.text } : undefined);
          revokeToken(opts.state, session, r.why, event);
          return { ...status(), tokenRevoked: session.jti, egress: tunnels };
        }
        case 'release':
          if (session.state !== 'quarantined') return { ok: false, error: `${id} is ${session.state}, not quarantined` };
          await release();
          return status();
        case 'end':
          end(r.reason);
          return { ...status(), ending: r.reason };
        case 'attach':
          return box.runtime === 'process' ? { ...status(), socket: attachSocket(box.paths) } : { ...status(), container: session.container };
        case 'exec':
          if (session.state !== 'running') return { ok: false, error: `${id} is ${session.state}; nothing is run in it until agentbox release` };
          return status();
      }
    };
    const local = (r: LocalRequest) => {
      if (r.kind === 'forward') {
        if (session.state === 'running') void Promise.resolve(box.signal(r.signal)).catch(guard.report);
      } else end(r.reason);
    };
    cleanups.push(...(await supervise(model, opts, { session, jti: minted.claims.jti, event, end, handle, local })));

    exitCode = await agent.exited;
    if (endReason === 'stdout closed' && exitCode !== 0) exitCode = 141;
  } catch (e) {
    if (!startedBox) {
      await done();
      throw e;
    }
    // After the box started, a failure is recorded and the session ends the normal way.
    guard.report(e);
  }
  return done();
}
