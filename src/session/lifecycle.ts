/**
 * One agent session, whatever runs it: the egress proxy with its governance layers,
 * the session record and token, ttl, quarantine and release, token revocation, limit
 * events, and revert or persist of the writable grants at the end, each step audited.
 * The runtime (process: bubblewrap; container: Docker Engine) is a `Box`: it starts
 * the agent, signals, freezes and thaws it, and cleans up after it.
 */
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import type { Model } from '../model/types.js';
import { AuditSink, deviceKey, dlpDigest } from '../audit/sink.js';
import { mintToken, modelScopes, readRevoked, revoke } from '../audit/token.js';
import type { Overlay } from '../box/bwrap.js';
import { EgressProxy, type EgressEvent, type ProxyOptions, type Violation } from '../egress/proxy.js';
import type { ConsentBroker } from '../egress/consent.js';
import type { Labels } from '../policy/entities.js';
import type { Authorizer } from '../policy/verdict.js';
import { writeSession, type Session } from './records.js';

/** What a runtime provides to the session. */
export interface Box {
  runtime: 'process' | 'container' | 'microvm';
  id: string;
  sessionDir: string;
  /** Writable grants as overlays (upper layers under the session dir). */
  overlays: Overlay[];
  /** Where the session's egress proxy listens, if the agent has network. */
  proxySocket: string | undefined;
  /** The agent's uid and gid (owner of the proxy socket). */
  uid: number;
  gid: number;
  cgroupDirs: string[];
  /** Starts the agent; `exited` resolves with its exit code (127/125 for not found / failed to start). */
  start(): Promise<{ pid: number; exited: Promise<number> }>;
  signal(sig: NodeJS.Signals): void | Promise<void>;
  /** Freezes every process of the agent; returns how, in words. */
  freeze(): string | Promise<string>;
  thaw(): void | Promise<void>;
  limitHits(): { pids: number; memory: number };
  /** Removes what the runtime made for the session (cgroups, container, mounts). */
  cleanup(): void | Promise<void>;
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
}

export interface Change {
  path: string;
  kind: 'added' | 'modified' | 'deleted';
}

export interface LaunchResult {
  session: string;
  exitCode: number;
  endReason: string;
  changes: Change[];
  egress: { allowed: number; denied: Record<string, number> };
}

/** Lists what the agent changed in each overlay's upper layer. */
export function overlayChanges(overlays: Overlay[]): Change[] {
  const out: Change[] = [];
  for (const o of overlays) {
    const walk = (rel: string) => {
      const dir = posix.join(o.upper, rel);
      for (const name of readdirSync(dir).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        const st = lstatSync(posix.join(o.upper, r));
        const target = posix.join(o.path, r);
        if (st.isCharacterDevice() && st.rdev === 0) out.push({ path: target, kind: 'deleted' });
        else if (st.isDirectory()) {
          if (!existsSync(target)) out.push({ path: target, kind: 'added' });
          walk(r);
        } else out.push({ path: target, kind: existsSync(target) ? 'modified' : 'added' });
      }
    };
    if (existsSync(o.upper)) walk('');
  }
  return out;
}

/** Applies the upper layers to the granted paths, each file by rename (snapshot: persist). Returns what it refused to commit. */
function commitOverlays(overlays: Overlay[]): string[] {
  const skipped: string[] = [];
  for (const o of overlays) {
    const walk = (rel: string) => {
      for (const name of readdirSync(posix.join(o.upper, rel)).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        const src = posix.join(o.upper, r);
        const dst = posix.join(o.path, r);
        const st: Stats = lstatSync(src);
        if (st.isCharacterDevice() && st.rdev === 0) rmSync(dst, { recursive: true, force: true });
        else if (st.isDirectory()) {
          if (!existsSync(dst)) mkdirSync(dst, { mode: st.mode & 0o7777 });
          walk(r);
        } else if (!st.isFile() && !st.isSymbolicLink()) {
          // FIFOs, sockets and device nodes are never committed: copying a FIFO would
          // block the launcher forever.
          skipped.push(dst);
        } else {
          const tmp = posix.join(posix.dirname(dst), `.agentbox-commit-${process.pid}-${name}`);
          if (st.isSymbolicLink()) symlinkSync(readlinkSync(src), tmp);
          else copyFileSync(src, tmp);
          // Permission bits only: a setuid or setgid bit the agent set is dropped.
          if (!st.isSymbolicLink()) chmodSync(tmp, st.mode & 0o777);
          try {
            chownSync(tmp, st.uid, st.gid);
          } catch {
            // not root: keep the invoking user's ownership
          }
          renameSync(tmp, dst);
        }
      }
    };
    if (existsSync(o.upper)) walk('');
  }
  return skipped;
}

export async function runSession(model: Model, opts: LaunchOptions, box: Box): Promise<LaunchResult> {
  const { id, sessionDir } = box;
  const audit = new AuditSink(opts.state);
  const event = (action: string, resource: string, decision: 'allow' | 'deny' | 'info', reason: string, details?: Record<string, unknown>) =>
    audit.append({ session: id, agent: model.name, action, resource, decision, reason, ...(details ? { details } : {}) });

  // The session's directories: traversable (not listable) by the agent uid, which
  // the runtime runs as when it binds the overlay and the proxy socket.
  mkdirSync(sessionDir, { recursive: true, mode: 0o711 });
  chmodSync(opts.state, 0o711);
  chmodSync(posix.join(opts.state, 'sessions'), 0o711);
  for (const o of box.overlays) {
    for (const d of [o.upper, o.work, o.merged, o.lower]) mkdirSync(d, { recursive: true, mode: 0o700 });
    const st = statSync(o.path);
    chownSync(o.upper, st.uid, st.gid);
    chmodSync(o.upper, st.mode & 0o7777);
    chmodSync(posix.dirname(o.upper), 0o711);
    chmodSync(posix.dirname(posix.dirname(o.upper)), 0o711);
  }

  const egress = { allowed: 0, denied: {} as Record<string, number> };
  let proxy: EgressProxy | undefined;
  let broker: ConsentBroker | undefined;
  // Set once the session record exists: a DLP or upload violation may quarantine it.
  let quarantine: (why: string) => Promise<void> = async () => undefined;
  if (box.proxySocket) {
    mkdirSync(posix.dirname(box.proxySocket), { recursive: true, mode: 0o755 });
    chmodSync(posix.dirname(box.proxySocket), 0o755);
    const extra: Partial<ProxyOptions> = {};
    // The governance layers are loaded only when the manifest or --policy uses them:
    // a plain launch's start-up time is the product's.
    if (opts.policy) {
      const { agentEntity, agentFacts, connectRequest } = await import('../policy/entities.js');
      const { MANIFEST_PERMIT_ID, verdictText } = await import('../policy/verdict.js');
      const { engine, labels } = opts.policy;
      const agent = agentEntity(agentFacts(model));
      extra.policy = (host, port, consented) => {
        const v = engine.authorize(connectRequest(agent, host, port, labels, 'run', consented));
        return v.decision === 'allow' ? { allow: true, ids: [MANIFEST_PERMIT_ID], reason: 'no policy forbids it' } : { allow: false, ids: [...v.forbiddenBy.map((p) => p.id), ...v.errors.map((e) => e.id)], reason: verdictText(v) };
      };
    }
    if (model.egress.consent) {
      const { ConsentBroker } = await import('../egress/consent.js');
      const b = new ConsentBroker({ state: opts.state, session: id, agent: model.name, timeoutSeconds: model.egress.consent.timeoutSeconds, tty: Boolean(opts.tty), log: opts.log });
      broker = b;
      extra.consent = {
        hosts: model.egress.consent.hosts,
        ask: async (host, port, purpose) => {
          let requestId = '';
          const a = await b.ask({ host, port, purpose }, (r) => {
            requestId = r.id;
            event('consent.request', `${host}:${port}`, 'info', r.question, { id: r.id, purpose, timeoutSeconds: model.egress.consent!.timeoutSeconds, expiresAt: r.expiresAt });
          });
          const decision = a.answer === 'once' || a.answer === 'session' ? 'allow' : 'deny';
          const said = a.answer === 'timeout' ? `no answer within ${model.egress.consent!.timeoutSeconds}s: denied` : `${a.by} answered ${a.answer === 'deny' ? 'deny' : `allow ${a.answer === 'once' ? 'once' : 'for this session'}`}`;
          event('consent.answer', `${host}:${port}`, decision, said, { id: requestId, answer: a.answer, by: a.by, via: a.via });
          opts.log(`agentbox: ${host}:${port}: ${said}`);
          return { ...a, id: requestId };
        },
      };
    }
    if (model.egress.dlp || model.egress.maxUploadBytes !== undefined) {
      const { compileDetectors, UploadMeter } = await import('../policy/dlp.js');
      if (model.egress.dlp) {
        extra.dlp = compileDetectors(model.egress.dlp);
        extra.digest = dlpDigest(opts.state);
      }
      if (model.egress.maxUploadBytes !== undefined) extra.upload = new UploadMeter(model.egress.maxUploadBytes, model.egress.uploadWindowSeconds * 1000);
    }
    extra.onViolation = (v: Violation) => {
      const action = model.egress.onViolation;
      event(`violation.${v.kind}`, `${v.host}:${v.port}`, 'deny', `${v.reason}; onViolation: ${action}`, v.details);
      opts.log(`agentbox: ${v.reason}`);
      if (action === 'quarantine') void quarantine(`${v.kind} violation towards ${v.host}:${v.port}`);
    };
    proxy = new EgressProxy({
      rules: { grants: model.grants.net, denies: model.denies.net },
      agent: model.name,
      ...(opts.resolve ? { resolve: opts.resolve } : {}),
      ...extra,
      onEvent: (e: EgressEvent) => {
        if (e.reason === 'closed') {
          event(e.action, `${e.host}:${e.port}`, 'allow', 'closed', { bytesIn: e.bytesIn, bytesOut: e.bytesOut, address: e.address });
          return;
        }
        event(e.action, `${e.host}:${e.port}`, e.decision, e.reason, { rule: e.rule ?? null, address: e.address ?? null, ...(e.details ?? {}) });
        if (e.decision === 'allow') egress.allowed++;
        else {
          const k = `${e.host}:${e.port}`;
          egress.denied[k] = (egress.denied[k] ?? 0) + 1;
          if (opts.verbose) opts.log(`agentbox: denied ${k}: ${e.reason}`);
        }
      },
    });
    await proxy.listen({ path: box.proxySocket });
    // Only the agent's uid may use the proxy: another local user must not ride its egress.
    chownSync(box.proxySocket, box.uid, box.gid);
    chmodSync(box.proxySocket, 0o600);
  }

  const started = new Date();
  const session: Session = {
    id,
    agent: model.name,
    runtime: box.runtime,
    state: 'running',
    pid: 0,
    launcherPid: process.pid,
    startedAt: started.toISOString(),
    expiresAt: model.ttlSeconds !== undefined ? new Date(started.getTime() + model.ttlSeconds * 1000).toISOString() : null,
    exitCode: null,
    endedAt: null,
    endReason: null,
    dir: sessionDir,
    jti: null,
    cgroups: box.cgroupDirs,
    layers: box.overlays.map((o) => ({ path: o.path, upper: o.upper })),
    egressCut: false,
    quarantinedAt: null,
  };
  // The session's capability token: its scopes, its lifetime, revocable by jti.
  const ttlExp = model.ttlSeconds !== undefined ? Math.floor(started.getTime() / 1000) + model.ttlSeconds : null;
  const exp = opts.tokenExp != null && (ttlExp === null || opts.tokenExp < ttlExp) ? opts.tokenExp : ttlExp;
  const minted = mintToken(deviceKey(opts.state).privateKey, { sub: model.name, sid: id, scopes: modelScopes(model), exp });
  session.jti = minted.claims.jti;
  writeFileSync(posix.join(opts.state, 'sessions', `${id}.token`), minted.token + '\n', { mode: 0o600 });

  let agent: { pid: number; exited: Promise<number> };
  try {
    agent = await box.start();
  } catch (e) {
    await proxy?.close();
    await box.cleanup();
    rmSync(sessionDir, { recursive: true, force: true });
    throw e;
  }
  session.pid = agent.pid;
  session.cgroups = [...box.cgroupDirs];
  writeSession(opts.state, session);
  event('token.minted', minted.claims.jti, 'info', 'session token', { scopes: minted.claims.scopes, exp: minted.claims.exp });
  event('launch', opts.command.join(' '), 'allow', 'session started', {
    runtime: 'process',
    uid: box.uid,
    grants: [...model.grants.fs, ...model.grants.net, ...model.grants.exec].map((g) => g.source.text),
    ttlSeconds: model.ttlSeconds ?? null,
    limits: model.limits,
    landlock: Boolean(opts.landlockHelper),
    ...(opts.policy ? { policy: { dir: opts.policy.dir, policies: [...opts.policy.engine.policies.keys()], checked: 'every grant allowed' } } : {}),
    ...(model.egress.consent ? { consent: model.egress.consent.hosts.map((h) => h.source.text) } : {}),
    ...(model.egress.dlp ? { dlp: [...model.egress.dlp.detectors, ...model.egress.dlp.custom.map((c) => c.name)] } : {}),
    ...(model.egress.maxUploadBytes !== undefined ? { maxUploadBytes: model.egress.maxUploadBytes, uploadWindowSeconds: model.egress.uploadWindowSeconds, onViolation: model.egress.onViolation } : {}),
  });

  let endReason = 'exited';
  const killGroup = (signal: NodeJS.Signals) => box.signal(signal);
  const end = (reason: string) => {
    if (endReason !== 'exited') return;
    endReason = reason;
    void (async () => {
      // A frozen process cannot act on a signal: thaw first (egress stays cut).
      await box.thaw();
      await killGroup('SIGCONT');
      await killGroup('SIGTERM');
      setTimeout(() => void killGroup('SIGKILL'), 2000).unref();
    })();
  };
  const ttlTimer =
    model.ttlSeconds !== undefined
      ? setTimeout(() => {
          opts.log(`agentbox: ${id} reached its ttl of ${model.ttlSeconds}s; ending the session`);
          event('ttl.expired', id, 'deny', `ttl ${model.ttlSeconds}s reached`);
          end('ttl');
        }, model.ttlSeconds * 1000)
      : undefined;
  const onSignal = (sig: NodeJS.Signals) => end(sig === 'SIGTERM' ? 'killed' : `signal ${sig}`);
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);

  // Quarantine (SIGUSR1 from `agentbox quarantine`, or a violation under onViolation:
  // quarantine): cut egress, then freeze, then say so.
  let quarantining = false;
  const onQuarantine = async (why = 'agentbox quarantine') => {
    if (quarantining || session.state === 'quarantined' || endReason !== 'exited') return;
    quarantining = true;
    const t0 = performance.now();
    session.egressCut = true;
    void proxy?.close();
    broker?.close();
    const cutMs = performance.now() - t0;
    const frozenBy = await box.freeze();
    quarantining = false;
    session.state = 'quarantined';
    session.quarantinedAt = new Date().toISOString();
    writeSession(opts.state, session);
    event('quarantine.egress-cut', id, 'deny', 'the proxy stopped forwarding and closed every tunnel', { ms: Number(cutMs.toFixed(2)) });
    event('quarantine.frozen', id, 'deny', frozenBy, { ms: Number((performance.now() - t0).toFixed(2)), trigger: why });
    opts.log(`agentbox: session ${id} quarantined (${why}): egress cut, processes frozen; agentbox kill ${id} ends it, agentbox release ${id} thaws it`);
  };
  // A violation quarantines as `agentbox quarantine` does: frozen, evidence, token revoked.
  quarantine = async (why: string) => {
    await onQuarantine(why);
    if (session.state !== 'quarantined') return;
    const { collectEvidence } = await import('./evidence.js');
    const evidence = collectEvidence(opts.state, session, why);
    event('quarantine.evidence', evidence.dir, 'info', 'forensic snapshot taken while frozen', { files: evidence.files });
    if (session.jti && revoke(opts.state, session.jti, why)) event('token.revoked', session.jti, 'deny', why);
  };
  const onSigQuarantine = () => void onQuarantine();
  // Release (SIGUSR2 from `agentbox release`): thaw; egress stays cut.
  const onRelease = async () => {
    if (session.state !== 'quarantined') return;
    await box.thaw();
    session.state = 'running';
    writeSession(opts.state, session);
    event('quarantine.released', id, 'info', 'processes thawed; egress stays cut');
  };
  process.on('SIGUSR1', onSigQuarantine);
  const onSigRelease = () => void onRelease();
  process.on('SIGUSR2', onSigRelease);
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

  const exitCode = await agent.exited;
  if (ttlTimer) clearTimeout(ttlTimer);
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal);
  process.off('SIGUSR1', onSigQuarantine);
  process.off('SIGUSR2', onSigRelease);
  clearInterval(tokenWatch);
  await box.thaw();
  await killGroup('SIGKILL');
  broker?.close();
  await proxy?.close();

  const hits = box.limitHits();
  if (hits.pids > 0) event('limit.pids', id, 'deny', `${hits.pids} process creations refused at pids=${model.limits.pids}`);
  if (hits.memory > 0) event('limit.memory', id, 'deny', `memory limit reached ${hits.memory} times`);
  await box.cleanup();
  event('exit', id, 'info', endReason, { exitCode });

  const changes = overlayChanges(box.overlays);
  if (box.overlays.length > 0) {
    if (model.runtime.snapshot === 'persist') {
      const skipped = commitOverlays(box.overlays);
      for (const p of skipped) opts.log(`agentbox: not committed (not a regular file, directory or symlink): ${p}`);
      event('persist', id, 'info', `${changes.length - skipped.length} changes committed`, { changes: changes.map((c) => `${c.kind} ${c.path}`), notCommitted: skipped });
    } else {
      event('revert', id, 'info', `${changes.length} changes discarded`, { changes: changes.map((c) => `${c.kind} ${c.path}`) });
    }
  }
  rmSync(sessionDir, { recursive: true, force: true });
  writeSession(opts.state, { ...session, state: 'exited', exitCode, endedAt: new Date().toISOString(), endReason, layers: [] });
  return { session: id, exitCode, endReason, changes, egress };
}
