/**
 * Data-loss prevention detectors and the upload meter (pure).
 *
 * Detectors (detectors.ts) run over every decoded view (decoders.ts) of what leaves:
 * host names, the URL, header values, bodies and WebSocket messages. A match names
 * the detector, where it was found and the decodings that uncovered it; the matched
 * text itself is handed to the caller only to be hashed, never logged.
 */
import { entropy, type Detector } from './detectors.js';
import { decodeViews, DEFAULT_BOUNDS, type DecodeBounds, type View } from './decoders.js';

export { BUILTIN, compileDetectors, entropy, luhnValid, type Detector } from './detectors.js';
export { percentDecode } from './decoders.js';

export interface DlpHit {
  detector: string;
  where: 'host' | 'url' | 'header' | 'body' | 'frame';
  /** The decodings that uncovered it, outermost first ([] when it was sent as it is). */
  via: string[];
  /** The matched text: hash it, never log it. */
  match: string;
}

/** A text that could not be decoded fully within the bounds: refused, never passed unscanned. */
export interface Undecodable {
  undecodable: string;
  where: DlpHit['where'];
}

export type ScanResult = DlpHit | Undecodable | undefined;

export const isUndecodable = (r: ScanResult): r is Undecodable => r !== undefined && 'undecodable' in r;

/** How a hit is named in reasons and audit entries: `aws-access-key via url→base64`. */
export const hitName = (h: Pick<DlpHit, 'detector' | 'via'>): string => (h.via.length > 0 ? `${h.detector} via ${h.via.join('→')}` : h.detector);

function scanViews(detectors: readonly Detector[], where: DlpHit['where'], text: string, bounds: DecodeBounds, seen: View[] | undefined): ScanResult {
  const d = decodeViews(text, bounds);
  for (const v of d.views) {
    seen?.push(v);
    for (const det of detectors) {
      const m = det.find(v.text);
      if (m !== undefined) return { detector: det.name, where, via: v.chain, match: m };
    }
  }
  return d.ok ? undefined : { undecodable: d.reason, where };
}

export interface ScanParts {
  url: string;
  headers: readonly [string, string][];
  /** The body in every form given (as sent, decoded from its content encoding and charset). */
  body: string | readonly string[];
  where?: DlpHit['where'];
  /** Tails of what went to the same destination just before (a secret split over two requests). */
  carry?: readonly string[];
  /** Filled with every view scanned, for the next request's carry. */
  views?: View[];
  bounds?: DecodeBounds;
}

/**
 * One request through the decoders and detectors: the URL, each header, and each form
 * of the body, each decoded every way (decoders.ts) and each view scanned. A carry from
 * earlier requests to the same destination is scanned joined to the start of each view.
 */
export function scanRequest(detectors: readonly Detector[], parts: ScanParts): ScanResult {
  const bounds = parts.bounds ?? DEFAULT_BOUNDS;
  const bodies = typeof parts.body === 'string' ? [parts.body] : parts.body;
  const roots: { where: DlpHit['where']; text: string }[] = [
    ...(parts.url ? [{ where: 'url' as const, text: parts.url }] : []),
    ...parts.headers.map(([k, v]) => ({ where: 'header' as const, text: `${k}: ${v}` })),
    ...bodies.map((text) => ({ where: parts.where ?? ('body' as const), text })),
  ];
  let undecodable: Undecodable | undefined;
  const views: View[] = parts.views ?? [];
  for (const r of roots) {
    const res = scanViews(detectors, r.where, r.text, bounds, views);
    if (res && !isUndecodable(res)) return res;
    undecodable ??= res;
  }
  for (const tail of parts.carry ?? []) {
    for (const v of views) {
      const joined = tail + v.text.slice(0, CARRY_CHARS);
      for (const det of detectors) {
        const m = det.find(joined);
        if (m !== undefined) return { detector: det.name, where: parts.where ?? 'body', via: ['split', ...v.chain], match: m };
      }
    }
  }
  return undecodable;
}

/** Characters of each view kept for the next request to the same destination. */
export const CARRY_CHARS = 4096;

/**
 * What went to each destination lately, kept for `windowMs`: the tails of the views of
 * its last requests (at most `maxTails`), so a secret split over two requests, or a key
 * id sent before its secret key, is seen whole in the second.
 */
export class CarryOver {
  private readonly by = new Map<string, { t: number; tails: string[] }>();
  constructor(
    readonly windowMs: number,
    readonly maxTails = 8,
  ) {}

  get(dest: string, now: number): string[] {
    const e = this.by.get(dest);
    if (!e) return [];
    if (now - e.t >= this.windowMs) {
      this.by.delete(dest);
      return [];
    }
    return e.tails;
  }

  put(dest: string, now: number, views: readonly View[]): void {
    const fresh = views.filter((v) => v.text.length > 0).map((v) => v.text.slice(-CARRY_CHARS));
    if (fresh.length === 0) return;
    const old = this.get(dest, now);
    this.by.set(dest, { t: now, tails: [...new Set([...fresh, ...old])].slice(0, this.maxTails) });
    if (this.by.size > 4096) this.by.delete(this.by.keys().next().value!);
  }
}

/** Labels that look like encoded data, not names: long hex, or long, digit-mixed and random. */
export function encodedLabel(label: string): boolean {
  if (label.length >= 16 && /^[0-9a-f]+$/i.test(label) && /[0-9]/.test(label) && /[a-f]/i.test(label)) return true;
  if (label.length < 24) return false;
  const digits = (label.match(/[0-9]/g) ?? []).length;
  return digits / label.length >= 0.2 && /[a-z]/i.test(label) && entropy(label) >= 3.8;
}

/**
 * A host name is content too: scanned before it is looked up (CONNECT targets, Host
 * headers, SNI). Detectors see the name as written, its labels joined, in upper case
 * (names are case-insensitive, keys are not), and every decoding of the joined labels.
 * `under` is the part a granted wildcard matched: labels there that look encoded
 * (encodedLabel), or more than 63 characters of them, are refused as data.
 */
export function scanHost(detectors: readonly Detector[], host: string, under?: string): DlpHit | Undecodable | undefined {
  const labels = host.split('.');
  const joined = labels.join('');
  // The data labels without the name they were put under (a.b.c.granted.example → abc),
  // and under a granted wildcard, the labels it matched.
  const data = labels.length > 2 ? labels.slice(0, -2).join('') : '';
  const wild = under ? under.split('.').join('') : '';
  const texts = [...new Set([host, joined, data, wild].filter(Boolean).flatMap((t) => [t, t.toUpperCase()]))];
  for (const text of texts) {
    const r = scanViews(detectors, 'host', text, DEFAULT_BOUNDS, undefined);
    if (r && !isUndecodable(r)) return r;
  }
  if (under) {
    const matched = under.split('.').filter(Boolean);
    const odd = matched.find(encodedLabel);
    if (odd !== undefined) return { detector: 'encoded-host-label', where: 'host', via: [], match: odd };
    if (matched.join('').length > 63) return { detector: 'encoded-host-label', where: 'host', via: [], match: under };
  }
  return undefined;
}

/** Sent bytes over a sliding window: amortised O(1) per chunk. Entries are kept in arrival order and dropped from the front once old; a clock that goes backwards only keeps them longer (never under-counts). */
class WindowSum {
  private entries: { t: number; n: number }[] = [];
  private head = 0;
  private sum = 0;

  total(now: number, windowMs: number): number {
    while (this.head < this.entries.length && now - this.entries[this.head]!.t >= windowMs) this.sum -= this.entries[this.head++]!.n;
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return this.sum;
  }

  add(t: number, n: number): void {
    this.entries.push({ t, n });
    this.sum += n;
  }
}

/**
 * Bytes sent per destination over a sliding window (`egress.maxUploadBytes` per
 * `egress.uploadWindow`), and by the whole session (`egress.maxSessionUploadBytes`).
 * A destination is the grant that admitted the connection (so every subdomain under a
 * wildcard, and every spelling of a host, share one budget) or, for a host admitted by
 * consent, that canonical host and port. `take` admits a chunk only if both the
 * destination and the session stay within their limits; a refused chunk is not counted
 * and must not be sent.
 */
export class UploadMeter {
  private readonly sent = new Map<string, WindowSum>();
  private readonly all = new WindowSum();

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly sessionLimit: number = Number.POSITIVE_INFINITY,
  ) {}

  private of(dest: string): WindowSum {
    let w = this.sent.get(dest);
    if (!w) this.sent.set(dest, (w = new WindowSum()));
    return w;
  }

  used(dest: string, now: number): number {
    return this.of(dest).total(now, this.windowMs);
  }

  /** Bytes the whole session sent in the window. */
  usedBySession(now: number): number {
    return this.all.total(now, this.windowMs);
  }

  /** Why `take` would refuse n more bytes now: the destination's limit, the session's, or nothing. */
  wouldRefuse(dest: string, n: number, now: number): 'destination' | 'session' | undefined {
    if (this.used(dest, now) + n > this.limit) return 'destination';
    if (this.usedBySession(now) + n > this.sessionLimit) return 'session';
    return undefined;
  }

  take(dest: string, n: number, now: number): boolean {
    if (this.wouldRefuse(dest, n, now)) return false;
    this.of(dest).add(now, n);
    this.all.add(now, n);
    return true;
  }
}
