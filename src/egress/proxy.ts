/**
 * The session's egress proxy: the box's only route out. HTTP CONNECT tunnels
 * (tunnel.ts) and plain HTTP absolute-form requests (forward.ts), each decided by
 * admission.ts against the manifest's net rules, organisation policy and consent.
 *
 * - Every decision becomes an event (host, port, allowed/denied, reason code and
 *   sentence, bytes).
 * - A denial answers 403 with the reason code in its status line and a plain-language
 *   body: what was refused, by which rule, and that an administrator can widen the
 *   manifest.
 * - The proxy's own resources are bounded per session: at most `maxConnections`
 *   connections at once (503 beyond), at most `maxBufferBytes` of request bodies held
 *   for scanning at once, and a body that stalls is cut after `bodyIdleMs`.
 */
import { existsSync } from 'node:fs';
import { createServer, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { lookup } from 'node:dns/promises';
import { createSecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import type { ConsentHost } from '../model/types.js';
import { CarryOver, type Detector, type UploadMeter } from '../policy/dlp.js';
import { Admissions, type Resolve } from './admission.js';
import { canonicalHost, type EgressRules } from './addresses.js';
import { BufferBudget } from './body.js';
import type { ConsentAnswer } from './consent.js';
import type { EgressEvent, HttpGovernance, OpenExchange, ProxyContext, Violation } from './context.js';
import type { SessionCa } from './ca.js';
import type { Brokered } from './credentials.js';
import { handlePlainUpgrade, handleRequest } from './forward.js';
import type { PolicyAnswer } from './policy-cache.js';
import { handleConnect } from './tunnel.js';
import { hostDetectors } from './credentials.js';

export type { EgressEvent, Violation, OpenExchange, HttpGovernance } from './context.js';
export { splitAuthority } from './context.js';
export { MAX_PENDING_CONSENT } from './admission.js';
export type { PolicyAnswer } from './policy-cache.js';
export type { Resolve } from './admission.js';

export interface ProxyOptions {
  rules: EgressRules;
  /**
   * A file whose existence means egress is cut (written by `agentbox quarantine`, which
   * does not wait for this process): every admission and every upstream dial checks it.
   */
  cutFile?: string;
  agent: string;
  /** Called for every decision, and again with byte counts when an allowed exchange ends. */
  onEvent: (e: EgressEvent) => void;
  /** DNS resolution (default: the system resolver, all addresses). */
  resolve?: Resolve;
  /** Upstream connect timeout. */
  connectTimeoutMs?: number;
  /** Organisation policy per (host, port); the proxy caches each answer for its life (one session). */
  policy?: (host: string, port: number, consented: boolean) => PolicyAnswer;
  /** Hosts outside the grants a person is asked about, and how to ask. */
  consent?: { hosts: readonly ConsentHost[]; maxQuestions?: number; ask: (host: string, port: number, purpose: string) => Promise<ConsentAnswer & { id: string }> };
  /** DLP detectors for host names and plain-HTTP requests. */
  dlp?: readonly Detector[];
  /** How long what went to a destination is kept to catch a secret split over requests (default 60 s). */
  carryWindowMs?: number;
  /** Largest plain-HTTP body buffered for scanning; larger bodies are refused (default 16 MiB). */
  maxScanBytes?: number;
  /** Request-body bytes the proxy holds at once across the session (default 64 MiB; 503 beyond). */
  maxBufferBytes?: number;
  /** Connections the proxy serves at once (default 256; 503 beyond). */
  maxConnections?: number;
  /** A request body that sends nothing for this long is cut (default 30 s). */
  bodyIdleMs?: number;
  /** egress.maxUploadBytes per window per destination (and maxSessionUploadBytes for the session). */
  upload?: UploadMeter;
  /** Keyed hash of a DLP match (the match itself is never recorded). */
  digest?: (match: string) => string;
  /** A DLP match or an upload over the threshold (after it was blocked). */
  onViolation?: (v: Violation) => void;
  /** Method/path rules, inspection and per-request policy. */
  http?: HttpGovernance;
  /** The session CA and the upstream trust store: without it nothing is decrypted. */
  tls?: { ca: SessionCa; trust: string[] };
  /** No TLS termination is possible: why (a tunnel to an inspected host is refused). */
  noTls?: string;
  /** Credentials injected for their hosts (placeholders in the box). */
  brokered?: readonly Brokered[];
}

export const DEFAULT_MAX_SCAN = 16 * 1024 * 1024;
export const DEFAULT_MAX_BUFFER = 64 * 1024 * 1024;
export const DEFAULT_MAX_CONNECTIONS = 256;
export const DEFAULT_BODY_IDLE_MS = 30_000;

const systemResolve: Resolve = async (host) => (await lookup(host, { all: true, verbatim: true })).map((r) => r.address);

function denyBody(agent: string, host: string, port: number, reason: string): string {
  return [
    `agentbox refused the connection to ${host}:${port}.`,
    `Reason: ${reason}.`,
    `The agent "${agent}" may only reach the hosts its manifest grants (net:connect:HOST:PORT).`,
    'An administrator can widen the manifest if this connection is needed.',
    '',
  ].join('\n');
}

export class EgressProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly upstreams = new Set<ClientRequest>();
  private readonly open = new Set<OpenExchange>();
  private readonly ctx: ProxyContext;
  private readonly maxConnections: number;
  private closed = false;
  private readonly cutFile: string | undefined;
  private clients = 0;

  constructor(opts: ProxyOptions) {
    this.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.cutFile = opts.cutFile;
    const admissions = new Admissions({
      rules: opts.rules,
      resolve: opts.resolve ?? systemResolve,
      ...(opts.policy ? { policy: opts.policy } : {}),
      ...(opts.consent ? { consent: opts.consent } : {}),
      ...(opts.dlp || opts.brokered?.length ? { dlp: [...(opts.dlp ?? []), ...hostDetectors(opts.brokered ?? [])] } : {}),
      ...(opts.digest ? { digest: opts.digest } : {}),
      closed: () => this.isCut(),
    });
    this.ctx = {
      admissions,
      cut: () => this.isCut(),
      event: (e) => opts.onEvent({ bytesIn: 0, bytesOut: 0, ...e }),
      violation: (v) => opts.onViolation?.(v),
      denyBody: (host, port, reason) => denyBody(opts.agent, host, port, reason),
      canonical: canonicalHost,
      trackOpen: (x) => {
        const o = { ...x, since: new Date().toISOString(), bytesIn: 0, bytesOut: 0 };
        this.open.add(o);
        return o;
      },
      trackClose: (x) => void this.open.delete(x),
      sockets: this.sockets,
      upstreams: this.upstreams,
      upload: opts.upload,
      dlp: opts.dlp,
      carry: opts.dlp?.length ? new CarryOver(opts.carryWindowMs ?? 60_000) : undefined,
      digest: opts.digest,
      budget: new BufferBudget(opts.maxBufferBytes ?? DEFAULT_MAX_BUFFER),
      http: opts.http,
      tls: opts.tls ? { ...opts.tls, upstream: createSecureContext({ ca: opts.tls.trust, minVersion: 'TLSv1.2' }) } : undefined,
      noTls: opts.tls ? undefined : opts.noTls,
      brokered: opts.brokered,
      maxScanBytes: opts.maxScanBytes ?? DEFAULT_MAX_SCAN,
      bodyIdleMs: opts.bodyIdleMs ?? DEFAULT_BODY_IDLE_MS,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
    };
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => void handleRequest(this.ctx, req, res).catch(() => res.destroy()));
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => void handlePlainUpgrade(this.ctx, req, socket, head).catch(() => socket.destroy()));
    this.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => void handleConnect(this.ctx, req, socket, head).catch(() => socket.destroy()));
    this.server.on('connection', (s: Socket) => {
      if (this.isCut()) {
        s.destroy();
        return;
      }
      // At most maxConnections clients at once: a flood is answered, not queued.
      if (this.clients >= this.maxConnections) {
        s.on('error', () => undefined);
        s.end(`HTTP/1.1 503 Busy (agentbox: ${this.maxConnections} connections already open)\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      this.clients++;
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => {
        this.clients--;
        this.sockets.delete(s);
      });
    });
    this.server.on('clientError', (_e, s: Socket) => s.destroy());
  }

  /** Listens on a unix socket path, or on host:port (port 0 picks one). Returns the address. */
  async listen(where: { path: string } | { host: string; port: number }): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      if ('path' in where) this.server.listen(where.path, resolve);
      else this.server.listen(where.port, where.host, resolve);
    });
    const a = this.server.address();
    return typeof a === 'string' ? a : `${a!.address}:${a!.port}`;
  }

  /** Serves a connection accepted elsewhere (agentboxd's listener, after it checked the peer's uid). */
  accept(socket: Socket): void {
    this.server.emit('connection', socket);
  }

  /** The tunnels and exchanges open right now (for evidence). */
  openTunnels(): OpenExchange[] {
    return [...this.open].map((o) => ({ ...o }));
  }

  private isCut(): boolean {
    if (!this.closed && this.cutFile !== undefined && existsSync(this.cutFile)) void this.close();
    return this.closed;
  }

  /** Stops forwarding at once: refuses new connections and cuts every open tunnel. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    for (const r of this.upstreams) r.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
