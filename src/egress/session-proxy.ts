/**
 * A session's egress proxy with its governance layers wired in: organisation policy
 * (Cedar), just-in-time consent, DLP and the upload meter, each loaded only when the
 * manifest or --policy uses it (a plain launch's start-up time is the product's).
 * Every decision and answer goes to the session's audit log; a violation is handed to
 * the session, which quarantines under `onViolation: quarantine`.
 */
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { posix } from 'node:path';
import type { Model } from '../model/types.js';
import { dlpDigest } from '../audit/sink.js';
import type { Labels } from '../policy/entities.js';
import type { Authorizer } from '../policy/verdict.js';
import { termSafe } from '../escape/terminal.js';
import type { ConsentBroker } from './consent.js';
import { EgressProxy, type EgressEvent, type ProxyOptions, type Violation } from './proxy.js';
import type { SessionCa } from './ca.js';
import type { Brokered } from './credentials.js';
import { httpEntriesFor, inspection } from '../model/http.js';

export type AuditEvent = (action: string, resource: string, decision: 'allow' | 'deny' | 'info', reason: string, details?: Record<string, unknown>) => void;

export interface SessionProxyOptions {
  state: string;
  session: string;
  /** The unix socket the box reaches the proxy on; undefined: the caller hands connections to `proxy.accept` (agentboxd). */
  socket?: string | undefined;
  uid: number;
  gid: number;
  verbose: boolean;
  tty: boolean;
  log: (line: string) => void;
  event: AuditEvent;
  policy?: { engine: Authorizer; labels: Labels } | undefined;
  resolve?: ((host: string) => Promise<string[]>) | undefined;
  /** A DLP or upload violation, after it was blocked and audited. */
  onViolation: (v: Violation) => void;
  /** The session CA and the upstream trust store, when the manifest decrypts any host. */
  tls?: { ca: SessionCa; trust: string[] } | undefined;
  /** No TLS can be terminated (agentboxd): why; tunnels to inspected hosts are refused. */
  noTls?: string | undefined;
  /** Brokered credentials (secrets read at launch, placeholders in the box). */
  brokered?: readonly Brokered[] | undefined;
  /** The egress cut marker (records.cutMarker): while it exists, nothing new is forwarded. */
  cutFile?: string | undefined;
}

export interface SessionProxy {
  proxy: EgressProxy;
  broker: ConsentBroker | undefined;
  egress: { allowed: number; denied: Record<string, number> };
  close(): Promise<void>;
}

export async function startSessionProxy(model: Model, o: SessionProxyOptions): Promise<SessionProxy> {
  const { event, log } = o;
  if (o.socket !== undefined) {
    mkdirSync(posix.dirname(o.socket), { recursive: true, mode: 0o755 });
    chmodSync(posix.dirname(o.socket), 0o755);
  }
  const extra: Partial<ProxyOptions> = {};
  let requestPolicy: NonNullable<ProxyOptions['http']>['requestPolicy'];
  let broker: ConsentBroker | undefined;
  if (o.policy) {
    const { agentEntity, agentFacts, connectRequest } = await import('../policy/entities.js');
    const { MANIFEST_PERMIT_ID, verdictText } = await import('../policy/verdict.js');
    const { engine, labels } = o.policy;
    const agent = agentEntity(agentFacts(model));
    const answer = (v: ReturnType<typeof engine.authorize>) =>
      v.decision === 'allow' ? { allow: true, ids: [MANIFEST_PERMIT_ID], reason: 'no policy forbids it' } : { allow: false, ids: [...v.forbiddenBy.map((p) => p.id), ...v.errors.map((e) => e.id)], reason: verdictText(v) };
    extra.policy = (host, port, consented) => answer(engine.authorize(connectRequest(agent, host, port, labels, 'run', consented)));
    requestPolicy = (host, port, method, path) => answer(engine.authorize(connectRequest(agent, host, port, labels, 'run', false, undefined, { method, path })));
  }
  const consent = model.egress.consent;
  if (consent) {
    const { ConsentBroker } = await import('./consent.js');
    const b = new ConsentBroker({ state: o.state, session: o.session, agent: model.name, timeoutSeconds: consent.timeoutSeconds, tty: o.tty, log });
    broker = b;
    extra.consent = {
      hosts: consent.hosts,
      maxQuestions: consent.maxQuestions,
      ask: async (host, port, purpose) => {
        let requestId = '';
        const a = await b.ask({ host, port, purpose }, (r) => {
          requestId = r.id;
          event('consent.request', `${host}:${port}`, 'info', r.question, { id: r.id, purpose, timeoutSeconds: consent.timeoutSeconds, expiresAt: r.expiresAt });
        });
        const decision = a.answer === 'once' || a.answer === 'session' ? 'allow' : 'deny';
        const said = a.answer === 'timeout' ? `no answer within ${consent.timeoutSeconds}s: denied` : `${a.by} answered ${a.answer === 'deny' ? 'deny' : `allow ${a.answer === 'once' ? 'once' : 'for this session'}`}`;
        event('consent.answer', `${host}:${port}`, decision, said, { id: requestId, answer: a.answer, by: a.by, via: a.via });
        log(`agentbox: ${host}:${port}: ${termSafe(said)}`);
        return { ...a, id: requestId };
      },
    };
  }
  if (model.egress.dlp || model.egress.maxUploadBytes !== undefined) {
    const { compileDetectors, UploadMeter } = await import('../policy/dlp.js');
    if (model.egress.dlp) {
      extra.dlp = compileDetectors(model.egress.dlp);
      extra.digest = dlpDigest(o.state);
      // A secret split over requests to one destination is seen whole within the upload window.
      extra.carryWindowMs = model.egress.uploadWindowSeconds * 1000;
    }
    if (model.egress.maxUploadBytes !== undefined) {
      const windowMs = model.egress.uploadWindowSeconds * 1000;
      extra.upload = new UploadMeter(model.egress.maxUploadBytes, windowMs, model.egress.maxSessionUploadBytes);
    }
  }
  extra.onViolation = (v: Violation) => {
    event(`violation.${v.kind}`, `${v.host}:${v.port}`, 'deny', `${v.reason}; onViolation: ${model.egress.onViolation}`, v.details);
    log(`agentbox: ${termSafe(v.reason)}`);
    o.onViolation(v);
  };
  extra.http = { rules: (host) => httpEntriesFor(model, host), inspects: (host) => inspection(model, host), ...(requestPolicy ? { requestPolicy } : {}) };
  if (o.tls) extra.tls = o.tls;
  else if (o.noTls) extra.noTls = o.noTls;
  if (o.brokered && o.brokered.length > 0) {
    extra.brokered = o.brokered;
    extra.digest ??= dlpDigest(o.state);
  }
  const egress = { allowed: 0, denied: {} as Record<string, number> };
  const proxy = new EgressProxy({
    rules: { grants: model.grants.net, denies: model.denies.net, ...(model.egress.learnAnyHost ? { learn: true } : {}) },
    agent: model.name,
    ...(o.resolve ? { resolve: o.resolve } : {}),
    ...(o.cutFile ? { cutFile: o.cutFile } : {}),
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
        if (o.verbose) log(`agentbox: denied ${k}: ${termSafe(e.reason)}`);
      }
    },
  });
  if (o.socket !== undefined) {
    await proxy.listen({ path: o.socket });
    // Only the agent's uid may use the proxy: another local user must not ride its egress.
    chownSync(o.socket, o.uid, o.gid);
    chmodSync(o.socket, 0o600);
  }
  return {
    proxy,
    broker,
    egress,
    close: async () => {
      broker?.close();
      await proxy.close();
      o.tls?.ca.destroy();
    },
  };
}
