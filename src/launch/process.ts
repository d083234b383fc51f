/**
 * The process runtime: runs an agent inside bubblewrap (see bwrap-plan.ts for the
 * layers), with its egress proxy, limits, ttl, snapshot-revert, session record and
 * audit events. The only module that starts agents on this host.
 */
import { spawn } from 'node:child_process';
import { writeFileSync, chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import { AgentboxError } from '../errors.js';
import type { Model } from '../model/types.js';
import { effectiveFs } from '../plan/plan.js';
import { isWithin } from '../manifest/normalise.js';
import { AuditSink, deviceKey, dlpDigest } from '../audit/sink.js';
import { mintToken, modelScopes, readRevoked, revoke } from '../audit/token.js';
import { whichSync } from '../host/which.js';
import { buildLaunchPlan, RESERVED, type LaunchFacts, type LaunchPlan, type PathKind } from './bwrap-plan.js';
import { createCgroups, unenforceable, type SessionCgroups } from './cgroups.js';
import { EgressProxy, type EgressEvent, type ProxyOptions, type Violation } from './proxy.js';
import type { ConsentBroker } from './consent.js';
import type { Labels } from '../policy/entities.js';
import type { PolicyEngine } from '../policy/engine.js';
import { usesProxy } from '../model/types.js';
import { seccompBytes } from './seccomp.js';
import { newSessionId, writeSession, type Session } from './sessions.js';

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
  policy?: { engine: PolicyEngine; labels: Labels; dir: string };
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

function kindOf(p: string): PathKind {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'file';
  } catch {
    return 'missing';
  }
}

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

/** Checks what the box needs before anything starts; exit 4 names every gap. */
function preflight(model: Model, root: boolean, opts: LaunchOptions): { bwrap: string; setpriv: string; unshare: string; socat: string | undefined } {
  const gaps: string[] = [];
  const bwrap = whichSync('bwrap');
  if (!bwrap) gaps.push('bubblewrap is not installed (apt-get install bubblewrap)');
  const setpriv = (whichSync('setpriv')) ?? '';
  const unshare = (whichSync('unshare')) ?? '';
  if (root && (!setpriv || !unshare)) gaps.push('setpriv/unshare are not installed (apt-get install util-linux)');
  const socat = usesProxy(model) ? whichSync('socat') : undefined;
  if (usesProxy(model) && !socat) gaps.push('socat is not installed, so the box cannot reach its egress proxy (apt-get install socat)');
  if (process.arch !== 'x64') gaps.push(`the seccomp filter is built for x86_64; this host is ${process.arch}`);
  if (!opts.landlockHelper) gaps.push('the Landlock layer is unavailable (the landlock-exec helper is not built, or the kernel has no Landlock)');
  const writes = effectiveFs(model).fs.filter((g) => g.access === 'write');
  // The session directory ends up in overlay mount options, where ',' and ':' separate options.
  if (writes.length > 0 && !/^\/[A-Za-z0-9._\/-]*$/.test(opts.state)) {
    gaps.push(`the state directory ${JSON.stringify(opts.state)} must contain only letters, digits and . _ - / to hold overlays (set AGENTBOX_STATE_DIR)`);
  }
  if (writes.length > 0 && !root) gaps.push('writable grants are overlays, which this bubblewrap (0.8, no --overlay) can only build when agentbox runs as root');
  gaps.push(...unenforceable(model.limits).map((u) => `limit ${u}`));
  for (const g of effectiveFs(model).fs) {
    // Inside /proc, /dev or agentbox's own mounts a grant would be shadowed or expose the
    // host; on or above /tmp it would replace the private /tmp. Below /tmp is fine: the
    // grant is bound over the private tmpfs.
    const r = RESERVED.find((x) => isWithin(x, g.path) || (!['/tmp', '/var/tmp'].includes(x) && isWithin(g.path, x)));
    if (r) gaps.push(`grant ${g.source.text} overlaps ${r}, which the box builds itself`);
  }
  if (gaps.length > 0) {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `cannot build the box for ${model.name} on this host; nothing was started`, { details: gaps });
  }
  return { bwrap: bwrap!, setpriv, unshare, socat };
}

/** Lists what the agent changed in each overlay's upper layer. */
export function overlayChanges(overlays: LaunchPlan['overlays']): Change[] {
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
function commitOverlays(overlays: LaunchPlan['overlays']): string[] {
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

export async function launchProcess(model: Model, opts: LaunchOptions): Promise<LaunchResult | LaunchPlan> {
  const root = process.getuid?.() === 0;
  const tools = preflight(model, root, opts);
  const id = newSessionId(model.name);
  const sessionDir = posix.join(opts.state, 'sessions', id);
  const cgroups: SessionCgroups | undefined = opts.dryRun ? undefined : createCgroups(id, model.limits);
  const facts: LaunchFacts = {
    root,
    uid: root ? model.agent.uid : process.getuid!(),
    gid: root ? model.agent.uid : process.getgid!(),
    topLinks: topLinks(),
    kind: kindOf,
    sessionDir,
    landlockHelper: opts.landlockHelper,
    cgroupProcs: cgroups?.procs ?? [],
    cwd: process.cwd(),
    term: process.env.TERM,
    socat: tools.socat,
    setpriv: tools.setpriv,
    unshare: tools.unshare,
    bwrap: tools.bwrap,
  };
  const plan = buildLaunchPlan(model, opts.command, facts);
  if (opts.dryRun) return plan;

  const audit = new AuditSink(opts.state);
  const event = (action: string, resource: string, decision: 'allow' | 'deny' | 'info', reason: string, details?: Record<string, unknown>) =>
    audit.append({ session: id, agent: model.name, action, resource, decision, reason, ...(details ? { details } : {}) });

  // The session's directories: traversable (not listable) by the agent uid, which
  // bubblewrap runs as when it binds the overlay and the proxy socket.
  mkdirSync(sessionDir, { recursive: true, mode: 0o711 });
  chmodSync(opts.state, 0o711);
  chmodSync(posix.join(opts.state, 'sessions'), 0o711);
  for (const o of plan.overlays) {
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
  if (plan.proxySocket) {
    mkdirSync(posix.dirname(plan.proxySocket), { recursive: true, mode: 0o755 });
    chmodSync(posix.dirname(plan.proxySocket), 0o755);
    const extra: Partial<ProxyOptions> = {};
    // The governance layers are loaded only when the manifest or --policy uses them:
    // a plain launch's start-up time is the product's.
    if (opts.policy) {
      const { agentEntity, agentFacts, connectRequest } = await import('../policy/entities.js');
      const { MANIFEST_PERMIT_ID, verdictText } = await import('../policy/engine.js');
      const { engine, labels } = opts.policy;
      const agent = agentEntity(agentFacts(model));
      extra.policy = (host, port, consented) => {
        const v = engine.authorize(connectRequest(agent, host, port, labels, 'run', consented));
        return v.decision === 'allow' ? { allow: true, ids: [MANIFEST_PERMIT_ID], reason: 'no policy forbids it' } : { allow: false, ids: [...v.forbiddenBy.map((p) => p.id), ...v.errors.map((e) => e.id)], reason: verdictText(v) };
      };
    }
    if (model.egress.consent) {
      const { ConsentBroker } = await import('./consent.js');
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
    await proxy.listen({ path: plan.proxySocket });
    // Only the agent's uid may use the proxy: another local user must not ride its egress.
    chownSync(plan.proxySocket, facts.uid, facts.gid);
    chmodSync(plan.proxySocket, 0o600);
  }

  const started = new Date();
  const session: Session = {
    id,
    agent: model.name,
    runtime: 'process',
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
    cgroups: cgroups?.procs.map((p) => posix.dirname(p)) ?? [],
    layers: plan.overlays.map((o) => ({ path: o.path, upper: o.upper })),
    egressCut: false,
    quarantinedAt: null,
  };
  // The session's capability token: its scopes, its lifetime, revocable by jti.
  const ttlExp = model.ttlSeconds !== undefined ? Math.floor(started.getTime() / 1000) + model.ttlSeconds : null;
  const exp = opts.tokenExp != null && (ttlExp === null || opts.tokenExp < ttlExp) ? opts.tokenExp : ttlExp;
  const minted = mintToken(deviceKey(opts.state).privateKey, { sub: model.name, sid: id, scopes: modelScopes(model), exp });
  session.jti = minted.claims.jti;
  writeFileSync(posix.join(opts.state, 'sessions', `${id}.token`), minted.token + '\n', { mode: 0o600 });

  const child = spawn(plan.argv[0]!, plan.argv.slice(1), { stdio: ['inherit', 'inherit', 'inherit', 'pipe'], detached: true });
  const seccompPipe = child.stdio[3] as NodeJS.WritableStream;
  seccompPipe.end(seccompBytes());
  session.pid = child.pid ?? 0;
  writeSession(opts.state, session);
  event('token.minted', minted.claims.jti, 'info', 'session token', { scopes: minted.claims.scopes, exp: minted.claims.exp });
  event('launch', opts.command.join(' '), 'allow', 'session started', {
    runtime: 'process',
    uid: facts.uid,
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
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
    for (const pid of cgroups?.members() ?? []) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone
      }
    }
  };
  const end = (reason: string) => {
    if (endReason !== 'exited') return;
    endReason = reason;
    // A frozen process cannot act on a signal: thaw first (egress stays cut).
    cgroups?.thaw();
    killGroup('SIGCONT');
    killGroup('SIGTERM');
    setTimeout(() => killGroup('SIGKILL'), 2000).unref();
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
  const onQuarantine = (why = 'agentbox quarantine') => {
    if (session.state === 'quarantined' || endReason !== 'exited') return;
    const t0 = performance.now();
    session.egressCut = true;
    void proxy?.close();
    broker?.close();
    const cutMs = performance.now() - t0;
    const frozen = cgroups?.freeze() ?? false;
    if (!frozen) killGroup('SIGSTOP');
    session.state = 'quarantined';
    session.quarantinedAt = new Date().toISOString();
    writeSession(opts.state, session);
    event('quarantine.egress-cut', id, 'deny', 'the proxy stopped forwarding and closed every tunnel', { ms: Number(cutMs.toFixed(2)) });
    event('quarantine.frozen', id, 'deny', frozen ? 'cgroup freezer: every process of the session is frozen' : 'SIGSTOP sent to the session (no cgroup freezer)', { ms: Number((performance.now() - t0).toFixed(2)), trigger: why });
    opts.log(`agentbox: session ${id} quarantined (${why}): egress cut, processes frozen; agentbox kill ${id} ends it, agentbox release ${id} thaws it`);
  };
  // A violation quarantines as `agentbox quarantine` does: frozen, evidence, token revoked.
  quarantine = async (why: string) => {
    onQuarantine(why);
    if (session.state !== 'quarantined') return;
    const { collectEvidence } = await import('./evidence.js');
    const evidence = collectEvidence(opts.state, session, why);
    event('quarantine.evidence', evidence.dir, 'info', 'forensic snapshot taken while frozen', { files: evidence.files });
    if (session.jti && revoke(opts.state, session.jti, why)) event('token.revoked', session.jti, 'deny', why);
  };
  const onSigQuarantine = () => onQuarantine();
  // Release (SIGUSR2 from `agentbox release`): thaw; egress stays cut.
  const onRelease = () => {
    if (session.state !== 'quarantined') return;
    cgroups?.thaw();
    killGroup('SIGCONT');
    session.state = 'running';
    writeSession(opts.state, session);
    event('quarantine.released', id, 'info', 'processes thawed; egress stays cut');
  };
  process.on('SIGUSR1', onSigQuarantine);
  process.on('SIGUSR2', onRelease);
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

  const exitCode = await new Promise<number>((resolve) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      opts.log(`agentbox: cannot start the box: ${e.message}`);
      resolve(e.code === 'ENOENT' ? 127 : 125);
    });
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGHUP: 1 } as Record<string, number>)[signal] ?? 1 : 1)));
  });
  if (ttlTimer) clearTimeout(ttlTimer);
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal);
  process.off('SIGUSR1', onSigQuarantine);
  process.off('SIGUSR2', onRelease);
  clearInterval(tokenWatch);
  cgroups?.thaw();
  killGroup('SIGKILL');
  broker?.close();
  await proxy?.close();

  const hits = cgroups?.hits() ?? { pids: 0, memory: 0 };
  if (hits.pids > 0) event('limit.pids', id, 'deny', `${hits.pids} process creations refused at pids=${model.limits.pids}`);
  if (hits.memory > 0) event('limit.memory', id, 'deny', `memory limit reached ${hits.memory} times`);
  cgroups?.remove();
  event('exit', id, 'info', endReason, { exitCode });

  const changes = overlayChanges(plan.overlays);
  if (plan.overlays.length > 0) {
    if (model.runtime.snapshot === 'persist') {
      const skipped = commitOverlays(plan.overlays);
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
