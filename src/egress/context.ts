/**
 * What the proxy's handlers (tunnel, forward) share: admission, the meters and budgets,
 * the open-connection registry, and the event sink.
 */
import type { ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { CarryOver, Detector, UploadMeter } from '../policy/dlp.js';
import type { View } from '../policy/decoders.js';
import type { Admissions } from './admission.js';
import type { BufferBudget } from './body.js';
import type { ReasonCode } from './reasons.js';
import type { HttpHostRules } from '../model/types.js';
import type { InspectReason } from '../model/http.js';
import type { SessionCa } from './ca.js';
import type { Brokered } from './credentials.js';
import type { PolicyAnswer } from './policy-cache.js';

/** HTTP-level governance: the method/path rules, which hosts are decrypted, and per-request policy. */
export interface HttpGovernance {
  rules(host: string): HttpHostRules[];
  inspects(host: string): InspectReason | undefined;
  /** Organisation policy for one request (method and path in the Cedar context). */
  requestPolicy?: (host: string, port: number, method: string, path: string) => PolicyAnswer;
}

export interface EgressEvent {
  action: 'egress.connect' | 'egress.http' | 'egress.https';
  host: string;
  port: number;
  decision: 'allow' | 'deny';
  /** Why it was refused (deny only). */
  code?: ReasonCode;
  reason: string;
  rule: string | undefined;
  address: string | undefined;
  bytesOut: number;
  bytesIn: number;
  /** Anything else the audit record should carry (policy ids, consent, DLP detector). */
  details?: Record<string, unknown>;
}

export interface Violation {
  kind: 'dlp' | 'upload-limit';
  host: string;
  port: number;
  reason: string;
  details: Record<string, unknown>;
}

/** An open tunnel or plain-HTTP exchange (evidence lists them at a quarantine). */
export interface OpenExchange {
  kind: 'tunnel' | 'http';
  host: string;
  port: number;
  address: string;
  since: string;
  bytesIn: number;
  bytesOut: number;
}

export interface ProxyContext {
  admissions: Admissions;
  /** True once egress is cut (quarantine): checked again right before every upstream dial. */
  cut(): boolean;
  event(e: Omit<EgressEvent, 'bytesIn' | 'bytesOut'> & Partial<Pick<EgressEvent, 'bytesIn' | 'bytesOut'>>): void;
  violation(v: Violation): void;
  denyBody(host: string, port: number, reason: string): string;
  canonical(host: string): string;
  trackOpen(x: Omit<OpenExchange, 'since' | 'bytesIn' | 'bytesOut'>): OpenExchange;
  trackClose(x: OpenExchange): void;
  sockets: Set<Socket>;
  upstreams: Set<ClientRequest>;
  upload: UploadMeter | undefined;
  dlp: readonly Detector[] | undefined;
  /** What went to each destination lately (a secret split over two requests). */
  carry?: CarryOver;
  digest: ((match: string) => string) | undefined;
  budget: BufferBudget;
  http: HttpGovernance | undefined;
  /** The session CA and upstream trust, when anything is decrypted. */
  /** `upstream`: one TLS context holding the trust store, built once (parsing ~140 roots per connection costs ~30 ms). */
  tls: { ca: SessionCa; trust: string[]; upstream: SecureContext } | undefined;
  /**
   * Set when no TLS can be terminated here (agentboxd: a unit's environment cannot carry
   * a per-session CA): why. A tunnel to a host the manifest inspects is then refused,
   * never passed uninspected.
   */
  noTls?: string | undefined;
  brokered: readonly Brokered[] | undefined;
  maxScanBytes: number;
  bodyIdleMs: number;
  connectTimeoutMs: number;
}

/** Splits `host:port` / `[v6]:port` as in a CONNECT target or Host header. */
export function splitAuthority(authority: string, defaultPort: number): { host: string; port: number } | undefined {
  // Host names as DNS writes them (letters, digits, - _ .), IPv4, or a bracketed IPv6:
  // nothing else reaches a decision, a log line or a consent question (a control
  // character in a CONNECT target could rewrite the question on a terminal).
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?$/.exec(authority.trim());
  if (!m) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, '').toLowerCase(), port };
}

/** The carry-over of one destination, as the body scanner takes it. */
export function carryFor(ctx: Pick<ProxyContext, 'carry'>, dest: string): { get(): readonly string[]; put(views: readonly View[]): void } | undefined {
  const c = ctx.carry;
  if (!c) return undefined;
  return { get: () => c.get(dest, Date.now()), put: (views) => c.put(dest, Date.now(), views) };
}
