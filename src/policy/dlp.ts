/**
 * Data-loss prevention detectors and the upload meter (pure).
 *
 * Detectors run over what leaves in plain HTTP: the URL (raw and percent-decoded),
 * header values, and the body (raw and, for forms, decoded). A match names the
 * detector and where it was found; the matched text itself is handed to the caller
 * only to be hashed, never logged.
 */
import type { DlpCustomDetector } from '../model/types.js';
import type { DlpDetectorName } from '../model/types.js';

export interface Detector {
  name: string;
  /** Returns the first matching text, or undefined. */
  find(text: string): string | undefined;
}

/** Luhn checksum over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** Issuer prefixes of the major card networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay). */
function cardIssuer(d: string): boolean {
  const n2 = Number(d.slice(0, 2));
  const n4 = Number(d.slice(0, 4));
  const n6 = Number(d.slice(0, 6));
  if (d[0] === '4') return d.length === 13 || d.length === 16 || d.length === 19;
  if ((n2 >= 51 && n2 <= 55) || (n4 >= 2221 && n4 <= 2720)) return d.length === 16;
  if (n2 === 34 || n2 === 37) return d.length === 15;
  if (n4 === 6011 || n2 === 65 || (n6 >= 622126 && n6 <= 622925) || (n4 >= 6440 && n4 <= 6499)) return d.length >= 16 && d.length <= 19;
  if (n4 >= 3528 && n4 <= 3589) return d.length >= 16 && d.length <= 19;
  if (n2 === 36 || n2 === 38 || n2 === 39 || (n4 >= 3000 && n4 <= 3059)) return d.length >= 14 && d.length <= 19;
  if (n2 === 62) return d.length >= 16 && d.length <= 19;
  return false;
}

const regexDetector = (name: string, re: RegExp, accept: (m: string) => boolean = () => true): Detector => {
  const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`);
  return {
    name,
    find(text) {
      // matchAll works on a copy of g, so concurrent scans do not share lastIndex.
      for (const m of text.matchAll(g)) if (accept(m[0])) return m[0];
      return undefined;
    },
  };
};

export const BUILTIN: Record<DlpDetectorName, Detector> = {
  // PEM (PKCS#1, PKCS#8, EC, DSA, encrypted), OpenSSH and PGP private keys.
  'private-key': regexDetector('private-key', /-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----/),
  // AWS access key ids: long-term (AKIA), temporary (ASIA) and the rarer ABIA/ACCA.
  'aws-access-key': regexDetector('aws-access-key', /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Z0-9])/),
  // US SSNs written NNN-NN-NNNN, excluding numbers never issued (000, 666, 9xx area; 00 group; 0000 serial).
  'us-ssn': regexDetector('us-ssn', /(?<![0-9-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![0-9-])/),
  // 13-19 digits, optionally grouped by single spaces or dashes, with a known issuer prefix and a valid Luhn check.
  'payment-card': regexDetector('payment-card', /(?<![0-9])\d(?:[ -]?\d){12,18}(?![0-9])/, (m) => {
    const d = m.replace(/[ -]/g, '');
    return d.length >= 13 && d.length <= 19 && cardIssuer(d) && luhnValid(d);
  }),
};

export function compileDetectors(dlp: { detectors: readonly DlpDetectorName[]; custom: readonly DlpCustomDetector[] }): Detector[] {
  const out: Detector[] = dlp.detectors.map((d) => BUILTIN[d]);
  for (const c of dlp.custom) {
    if (c.regex !== undefined) out.push(regexDetector(c.name, new RegExp(c.regex, c.ignoreCase ? 'ui' : 'u')));
    else {
      const marker = c.ignoreCase ? c.marker!.toLowerCase() : c.marker!;
      out.push({
        name: c.name,
        find: (text) => {
          const t = c.ignoreCase ? text.toLowerCase() : text;
          const i = t.indexOf(marker);
          return i < 0 ? undefined : text.slice(i, i + marker.length);
        },
      });
    }
  }
  return out;
}

/** Percent-decoding that never throws (`%zz` stays as written); `plus` turns + into space (forms). */
export function percentDecode(text: string, plus = false): string {
  const t = plus ? text.replace(/\+/g, ' ') : text;
  if (!t.includes('%')) return t;
  const bytes: number[] = [];
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(t.slice(i + 1, i + 3))) {
      bytes.push(parseInt(t.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c < 0x80) bytes.push(c);
    else for (const b of Buffer.from(t[i]!, 'utf8')) bytes.push(b);
  }
  return Buffer.from(bytes).toString('utf8');
}

export interface DlpHit {
  detector: string;
  where: 'host' | 'url' | 'header' | 'body';
  /** The matched text: hash it, never log it. */
  match: string;
}

/** The views of one body a detector should see: as sent, form-decoded, JSON-unescaped. */
function bodyViews(body: string): string[] {
  const views = [body];
  if (body.includes('%') || body.includes('+')) views.push(percentDecode(body, true));
  // JSON escapes could split a marker ("CONFI\u0044ENTIAL"); scan the unescaped form too.
  if (body.includes('\\u') || body.includes('\\n')) {
    views.push(body.replace(/\\u([0-9a-fA-F]{4})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))).replace(/\\n/g, '\n'));
  }
  return views;
}

/**
 * The texts of one request, each in the forms a detector should see: the URL (raw and
 * percent-decoded), each header, and the body in every form given (as sent, decoded
 * from its content encoding and charset) and their form-decoded and unescaped views.
 */
export function scanRequest(detectors: readonly Detector[], parts: { url: string; headers: readonly [string, string][]; body: string | readonly string[] }): DlpHit | undefined {
  const bodies = typeof parts.body === 'string' ? [parts.body] : parts.body;
  const views: { where: DlpHit['where']; text: string }[] = [
    { where: 'url', text: parts.url },
    { where: 'url', text: percentDecode(parts.url, true) },
    ...parts.headers.map(([k, v]) => ({ where: 'header' as const, text: `${k}: ${v}` })),
    ...bodies.flatMap((b) => bodyViews(b).map((text) => ({ where: 'body' as const, text }))),
  ];
  for (const v of views) {
    for (const d of detectors) {
      const m = d.find(v.text);
      if (m !== undefined) return { detector: d.name, where: v.where, match: m };
    }
  }
  return undefined;
}

/** A host name is content too: scanned before it is looked up (CONNECT targets, Host headers). */
export function scanHost(detectors: readonly Detector[], host: string): DlpHit | undefined {
  // Names are case-insensitive: a key written in lower case is still the key.
  const joined = host.split('.').join('');
  for (const text of [host, joined, host.toUpperCase(), joined.toUpperCase()]) {
    for (const d of detectors) {
      const m = d.find(text);
      if (m !== undefined) return { detector: d.name, where: 'host', match: m };
    }
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
