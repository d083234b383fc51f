/**
 * Whether one connection may leave, and to which address: the egress proxy's decision,
 * in this order (the first refusal wins, each with a reason code):
 *
 * 1. the host is canonicalised (every spelling of an address is one address) and, with
 *    DLP, scanned as content, before anything looks it up;
 * 2. explicit denies, then grants; a host outside the grants that the manifest marks
 *    `consent: ask` goes on to 3 and 4 instead of being refused;
 * 3. organisation policy (Cedar), once per (host, port) for the session's life;
 * 4. consent: the connection is held while a person is asked, for this kind of use
 *    (an encrypted tunnel, an upload of N bytes, a download, another request); a
 *    "session" answer covers that kind only, a "deny" the host; at most
 *    `maxQuestions` questions per session and MAX_PENDING_CONSENT at once;
 * 5. the name is resolved once and the address checked (no loopback, private or
 *    link-local unless that address is itself granted), and that address is dialled.
 */
import { isIP } from 'node:net';
import { hostMatches } from '../model/decide.js';
import type { ConsentHost } from '../model/types.js';
import { hitName, isUndecodable, scanHost, type Detector } from '../policy/dlp.js';
import { canonicalHost, decideEgressFor, isInternalAddress, pickAddress, type EgressRules } from './addresses.js';
import type { ConsentAnswer } from './consent.js';
import { PolicyCache, type PolicyAnswer } from './policy-cache.js';
import { refusal, type Refusal } from './reasons.js';

/** Questions one session may have waiting at once: an agent cannot flood a person with them. */
export const MAX_PENDING_CONSENT = 4;

/** What the connection is for, as a person is asked about it. */
export interface Use {
  kind: 'tunnel' | 'upload' | 'download' | 'request';
  /** Plain words: "to upload 10240 bytes (POST /v1/files?x=1)". */
  purpose: string;
}

export interface Admitted {
  ok: true;
  host: string;
  address: string;
  rule: string;
  /** The upload meter's key: the grant that admitted it, or the consented host:port. */
  meterKey: string;
  details: Record<string, unknown>;
}

export type Admission = Admitted | ({ ok: false; host: string } & Refusal);

export type Resolve = (host: string) => Promise<string[]>;

export interface AdmissionOptions {
  rules: EgressRules;
  resolve: Resolve;
  policy?: (host: string, port: number, consented: boolean) => PolicyAnswer;
  consent?: { hosts: readonly ConsentHost[]; maxQuestions?: number; ask: (host: string, port: number, purpose: string) => Promise<ConsentAnswer & { id: string }> };
  dlp?: readonly Detector[];
  digest?: (match: string) => string;
  /** True once egress is cut. */
  closed: () => boolean;
}

export class Admissions {
  private readonly policy: PolicyCache | undefined;
  /** Consent given per host:port:kind for the session, or refused per host:port. */
  private readonly allowedFor = new Set<string>();
  private readonly deniedFor = new Set<string>();
  /** Requests being asked now, per host:port:kind: a second connection waits for the same answer. */
  private readonly asking = new Map<string, Promise<ConsentAnswer & { id: string }>>();
  private questions = 0;

  constructor(private readonly o: AdmissionOptions) {
    this.policy = o.policy ? new PolicyCache(o.policy) : undefined;
  }

  private consentHost(host: string, port: number): ConsentHost | undefined {
    return this.o.consent?.hosts.find((c) => (c.hostKind === 'any' || hostMatches(c.host, host)) && (c.port === 'any' || c.port === port));
  }

  async admit(rawHost: string, port: number, use: Use): Promise<Admission> {
    const host = canonicalHost(rawHost);
    const details: Record<string, unknown> = {};
    const no = (r: Refusal): Admission => ({ ok: false, host, ...r, details: { ...details, ...r.details } });
    if (this.o.closed()) return no(refusal('egress-cut', 'egress is cut for this session'));
    const d = decideEgressFor(this.o.rules, host, port);
    const explicitDeny = !d.allow && d.rule !== undefined;
    const ask = !d.allow && !explicitDeny ? this.consentHost(host, port) : undefined;
    if (!d.allow && !ask) {
      const code = explicitDeny ? 'denied-by-rule' : /allows port/.test(d.reason) ? 'wrong-port' : 'not-granted';
      return no(refusal(code, d.reason, d.rule ? `${d.rule.text} (${d.rule.pointer})` : undefined));
    }
    // A host name is content: an encoded secret in a label must not reach a resolver. The
    // name is scanned as the agent wrote it (case and all), and the labels a granted
    // wildcard matched must not look like encoded data.
    if (this.o.dlp && this.o.dlp.length > 0) {
      const wild = d.allow ? /^net:connect:\*\.([^:]+):/.exec(d.rule.text)?.[1] : undefined;
      const under = wild !== undefined && host.endsWith(`.${wild}`) ? host.slice(0, -wild.length - 1) : undefined;
      const raw = rawHost.replace(/\.$/, '');
      const hit = scanHost(this.o.dlp, raw, under) ?? (raw !== host ? scanHost(this.o.dlp, host) : undefined);
      if (hit && isUndecodable(hit)) return no(refusal('unscannable', `the host name cannot be decoded for data-loss prevention (${hit.undecodable}); it was not looked up`, 'egress.dlp'));
      if (hit) {
        const why = hit.detector === 'encoded-host-label' ? `a label under ${wild} looks like encoded data, not a name (long, random, or hex)` : `it matches detector ${hitName(hit)}`;
        return no(refusal('dlp', `data-loss prevention: the host name was refused because ${why}; it was not looked up`, `egress.dlp ${hit.detector}`, { dlp: { detector: hit.detector, via: hit.via, where: 'host', digest: this.o.digest?.(hit.match) } }));
      }
    }
    let rule = d.allow ? `${d.rule.text} (${d.rule.pointer})` : `${ask!.source.text} (${ask!.source.pointer})`;
    const meterKey = d.allow ? `grant ${d.rule.pointer}` : `consent ${host}:${port}`;
    // Only an entry naming the literal address may ask about an internal one (loopback,
    // private, link-local such as cloud metadata): `*` or a name never reaches them.
    const askLiteral = ask !== undefined && (ask.hostKind === 'ipv4' || ask.hostKind === 'ipv6');
    if (ask && isIP(host) && isInternalAddress(host) && !askLiteral) {
      return no(refusal('internal-address', `${host} is an internal address; consent for it needs an entry naming it in egress.consent.ask`, rule));
    }

    const p = this.policy?.decide(host, port, Boolean(ask));
    if (p) {
      details.policy = { decision: p.answer.allow ? 'allow' : 'deny', ids: p.answer.ids, cached: p.cached };
      if (!p.answer.allow) return no(refusal('policy', `organisation policy forbids it: ${p.answer.reason}`, p.answer.ids.join(', ') || undefined));
    }

    if (ask) {
      const r = await this.consent(host, port, use, details);
      if (r) return no({ ...r, rule });
      rule = `${rule}, consent ${(details.consent as { answer: string }).answer}`;
    }

    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else {
      try {
        addresses = await this.o.resolve(host);
      } catch (e) {
        return no(refusal('unresolvable', `${host} does not resolve (${(e as NodeJS.ErrnoException).code ?? 'error'})`, rule));
      }
    }
    // The literal address a person approved is dialled as it is; a name admitted by
    // consent may resolve to an internal address only where a grant names that address.
    if (askLiteral) return { ok: true, host, address: host, rule, meterKey, details };
    const pick = pickAddress(this.o.rules, addresses, port);
    return pick.ok ? { ok: true, host, address: pick.address, rule, meterKey, details } : no(refusal('internal-address', pick.reason, rule));
  }

  /** Asks (or recalls) consent; returns the refusal, or nothing when admitted. */
  private async consent(host: string, port: number, use: Use, details: Record<string, unknown>): Promise<Refusal | undefined> {
    const hostKey = `${host}:${port}`;
    const key = `${hostKey}:${use.kind}`;
    if (this.deniedFor.has(hostKey)) {
      details.consent = { answer: 'deny', remembered: true };
      return refusal('consent-denied', 'a person denied this host earlier in the session');
    }
    if (this.allowedFor.has(key)) {
      details.consent = { answer: 'session', remembered: true, kind: use.kind };
      return undefined;
    }
    let a: ConsentAnswer & { id: string };
    for (;;) {
      let pending = this.asking.get(key);
      const mine = pending === undefined;
      if (!pending) {
        if (this.asking.size >= MAX_PENDING_CONSENT) return refusal('consent-limit', `${MAX_PENDING_CONSENT} consent questions are already waiting for an answer; this one was not asked`);
        const max = this.o.consent!.maxQuestions ?? Number.POSITIVE_INFINITY;
        if (this.questions >= max) return refusal('consent-limit', `this session already asked ${max} consent questions (egress.consent.maxQuestions); further hosts are denied without asking`);
        this.questions++;
        pending = this.o.consent!.ask(host, port, use.purpose);
        this.asking.set(key, pending);
        void pending.finally(() => this.asking.delete(key));
      }
      a = await pending;
      // "Allow once" admits the connection that asked; one that waited alongside asks anew.
      if (a.answer === 'once' && !mine && !this.o.closed()) continue;
      break;
    }
    details.consent = { id: a.id, answer: a.answer, by: a.by, via: a.via, kind: use.kind };
    if (a.answer === 'session') this.allowedFor.add(key);
    if (a.answer === 'deny') this.deniedFor.add(hostKey);
    if (this.o.closed()) return refusal('egress-cut', 'egress is cut for this session');
    if (a.answer === 'timeout') return refusal('consent-timeout', 'nobody answered the consent request in time (no answer is a deny)');
    if (a.answer === 'deny') return refusal('consent-denied', `${a.by} denied the consent request`);
    return undefined;
  }
}
