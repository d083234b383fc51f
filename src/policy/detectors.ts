/**
 * The DLP detectors (pure): secretlint's recommended preset, run by a synchronous
 * runner over each text agentbox scans, and the detectors agentbox adds where the
 * preset has none (key formats, wallet secrets, JWTs, assignments, cards, IBANs).
 *
 * secretlint is used as a rule library, not as a linter: its rules' own code runs
 * (`rule.create(context).file(source)`), with a context that only collects reports.
 * Its comment filter (`secretlint-disable`) is not loaded: text an agent sends must
 * not be able to switch a detector off.
 */
import { createHash } from 'node:crypto';
import { rules as secretlintRules } from '@secretlint/secretlint-rule-preset-recommend';
import { wordlists } from 'bip39';
import { isValidIBAN } from 'ibantools';
import { RE2 } from 're2-wasm';
import type { DlpCustomDetector } from '../model/types.js';
import { percentDecode } from './decoders.js';
import { DETECTOR_NAMES, type DlpDetectorName } from '../model/dlp.js';

export interface Detector {
  name: string;
  /** Returns the first matching text, or undefined. */
  find(text: string): string | undefined;
}

// ---------------------------------------------------------------------------
// secretlint's rules, run synchronously.

interface SecretlintReport {
  range: readonly [number, number];
}
interface SecretlintRule {
  meta: { id: string; type?: string };
  create(context: unknown, options: Record<string, unknown>): { file?(source: unknown): unknown };
}

/** Which secretlint rule each detector name runs. */
const SECRETLINT_RULE: Record<string, string> = {
  'aws-secret-key': 'aws',
  'basic-auth': 'basicauth',
  'private-key': 'privatekey',
};

function secretlintDetector(name: string, ruleName: string): Detector {
  const rule = (secretlintRules as unknown as SecretlintRule[]).find((r) => r.meta.id === `@secretlint/secretlint-rule-${ruleName}`);
  if (!rule) throw new Error(`secretlint's recommended preset has no rule ${ruleName}`);
  let reports: SecretlintReport[] = [];
  const context = {
    createTranslator: () => (id: string) => id,
    report: (d: { range: readonly [number, number] }) => void reports.push({ range: d.range }),
    ignore: () => undefined,
  };
  const handler = rule.create(context, {});
  return {
    name,
    find(text) {
      reports = [];
      // `.json` lets the GCP rule read service-account files; every other rule ignores the name.
      const ext = /^\s*\{/.test(text) ? '.json' : '.txt';
      const source = { content: text, filePath: `/request${ext}`, ext, contentType: 'text', indexToPosition: () => ({ line: 1, column: 0 }), locationToRange: () => [0, 0] };
      const r = handler.file?.(source);
      // Only the GCP rule's .p12 branch is asynchronous, and it is never given a .p12.
      if (r && typeof (r as Promise<unknown>).then === 'function') void (r as Promise<unknown>).catch(() => undefined);
      const first = reports[0];
      return first ? text.slice(first.range[0], first.range[1]) || text.slice(first.range[0], first.range[0] + 1) : undefined;
    },
  };
}

// ---------------------------------------------------------------------------
// Helpers.

const regexDetector = (name: string, re: RegExp, accept: (m: RegExpExecArray, text: string) => boolean = () => true): Detector => {
  const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`);
  return {
    name,
    find(text) {
      // matchAll works on a copy of g, so concurrent scans do not share lastIndex.
      for (const m of text.matchAll(g)) if (accept(m as RegExpExecArray, text)) return m[0];
      return undefined;
    },
  };
};

const anyOf = (name: string, parts: readonly Detector[]): Detector => ({
  name,
  find(text) {
    for (const p of parts) {
      const m = p.find(text);
      if (m !== undefined) return m;
    }
    return undefined;
  },
});

/** Shannon entropy in bits per character. */
export function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
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

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
/** Base58Check: the payload when the 4-byte double-SHA-256 checksum holds, else undefined. */
export function base58Check(s: string): Buffer | undefined {
  let n = 0n;
  for (const c of s) {
    const v = B58.indexOf(c);
    if (v < 0) return undefined;
    n = n * 58n + BigInt(v);
  }
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  const zeros = /^1*/.exec(s)![0].length;
  const bytes = Buffer.concat([Buffer.alloc(zeros), Buffer.from(n === 0n ? '' : hex, 'hex')]);
  if (bytes.length < 5) return undefined;
  const body = bytes.subarray(0, -4);
  const sum = createHash('sha256').update(createHash('sha256').update(body).digest()).digest().subarray(0, 4);
  return sum.equals(bytes.subarray(-4)) ? body : undefined;
}

const b64urlJson = (seg: string): Record<string, unknown> | undefined => {
  try {
    const v = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

/** Documentation's example credentials (AWS's own docs use these): not a leak. */
const EXAMPLE = /EXAMPLE/;

// ---------------------------------------------------------------------------
// agentbox's own detectors.

const privateKey = anyOf('private-key', [
  // PEM armour (PKCS#1, PKCS#8, SEC1, DSA, encrypted, OpenSSH, PGP) with key material after
  // it: a document that only names the header ("-----BEGIN RSA PRIVATE KEY-----") is not a key.
  // Line breaks as written, escaped (`\n` in JSON and source strings) or flattened to spaces.
  regexDetector('private-key', /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[ \t]*(?:\r?\n|\\r\\n|\\n)(?:[A-Za-z-]{1,40}:[^\r\n\\]{0,200}(?:\r?\n|\\r\\n|\\n))*(?:\s|\\n|\\r)*|[ \t]+)[A-Za-z0-9+/=]{32}/),
  // PuTTY key files, line breaks real, escaped or flattened (a header value has none).
  regexDetector('private-key', /PuTTY-User-Key-File-\d: [\s\S]{0,4000}?Private-Lines: \d+(?:\r?\n|\\r\\n|\\n|[ \t]+)[A-Za-z0-9+/=]{32}/),
  // Unarmoured base64 key bodies: OpenSSH ("openssh-key-v1\0"), PKCS#8 RSA, PKCS#1 RSA, PKCS#8 and SEC1 EC.
  regexDetector('private-key', /b3BlbnNzaC1rZXktdjEA[A-Za-z0-9+/]{40}|MII[A-Za-z0-9+/]{3}(?:IBADANBgkqhkiG9w0BAQEFAASC|IBAAKCA)[A-Za-z0-9+/]{40}|MIG[A-Za-z0-9+/]AgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg|MHcCAQEEI[A-Za-z0-9+/]{40}/),
  secretlintDetector('private-key', 'privatekey'),
]);

const AWS_KEY_ID = /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Z0-9])/;
const awsAccessKey = regexDetector('aws-access-key', AWS_KEY_ID, (m) => !EXAMPLE.test(m[0]));

/** A 40-character secret next to a key id (within 300 characters either way), or what secretlint's AWS rule finds by its keywords. */
const awsSecretKey = anyOf('aws-secret-key', [
  secretlintDetector('aws-secret-key', 'aws'),
  regexDetector('aws-secret-key', /(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/, (m, text) => {
    const s = m[0];
    if (EXAMPLE.test(s) || !/[A-Z]/.test(s) || !/[a-z]/.test(s) || entropy(s) < 4) return false;
    const around = text.slice(Math.max(0, m.index - 300), m.index + s.length + 300);
    return AWS_KEY_ID.test(around) || /aws.{0,20}secret|secret.{0,20}access.{0,5}key/i.test(around);
  }),
]);

const jwt = regexDetector('jwt', /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/, (m) => {
  const [h, p, sig] = m[0].split('.');
  const header = b64urlJson(h!);
  if (!header || (typeof header.alg !== 'string' && typeof header.typ !== 'string' && typeof header.enc !== 'string')) return false;
  // An unsigned token ends in "."; a signed one has at least 16 characters of signature.
  return (sig!.length >= 16 || header.alg === 'none') && p!.length >= 8;
});

const stripe = regexDetector('stripe', /(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{20,247}(?![0-9a-zA-Z])/);

/** Keys whose values are secrets: `password=…`, `"api_key": "…"`, `SECRET: …`. */
const ASSIGNMENT = /(?<![A-Za-z0-9])(["']?)([A-Za-z0-9_.-]{0,30}?(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|(?:secret|encryption|signing|master|session|jwt)[_-]?key(?:[_-]?base)?))\1[ \t]{0,3}(?::=|=>|[:=])[ \t]{0,3}(["'`]?)([^\s"'`,;&<>(){}[\]\\]{8,200})\3/gi;
/** Keys that name something about a secret, not the secret (token_type, password_hash, page_token). */
const NOT_A_SECRET_KEY = /(csrf|xsrf|authenticity|page|next|cursor|continuation|sync|nonce|verifier|challenge)|(type|name|length|len|size|count|expires?|expiry|ttl|url|uri|path|file|field|hint|label|placeholder|prompt|policy|reset|hash|limit|max|min|id|format|encoding|header|env)$/i;
const PLACEHOLDER_VALUE = /^(?:x+|\*+|\.+|-+|<[^>]*>|null|none|nil|undefined|true|false|changeme|change_me|password|secret|token|redacted|required|optional|string|test|example.*|placeholder.*|(?:your|my|the|some|test|dummy|sample|fake)[-_ ]?(?:db[-_]?)?(?:password|passwd|pass|pwd|secret|token|api[-_]?key|key|value)s?(?:[-_]?(?:here|goes[-_]?here|\d{1,3}))?)$|^\$[A-Za-z_][A-Za-z0-9_]*$|^%[A-Za-z_][A-Za-z0-9_]*%$|example|placeholder|redacted|xxxx|\*\*\*\*|\$\{|\{\{|%\(/i;
const genericSecret: Detector = {
  name: 'generic-secret',
  find(text) {
    for (const m of text.matchAll(ASSIGNMENT)) {
      const key = m[2]!;
      const value = m[4]!;
      const after = text[m.index + m[0].length];
      if (NOT_A_SECRET_KEY.test(key.replace(/[_.-]+$/, ''))) continue;
      if (PLACEHOLDER_VALUE.test(value)) continue;
      // `pwd: /home/user/src` is a working directory, not a password.
      if (/^pwd$/i.test(key) && /^[~.]?\//.test(value)) continue;
      // Code, not a value: a call, a member access or an index (`password = getPassword()`, `token = req.headers["x"]`).
      if (after === '(' || after === '[' || after === '.' || /^[a-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(value)) continue;
      if (/^[A-Za-z_$][\w$]*$/.test(value) && m[3] === '' && /[a-z][A-Z]|_/.test(value) && !/\d/.test(value)) continue; // an identifier: `password: userPassword`
      const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((r) => r.test(value)).length;
      if (classes < 2 || entropy(value) < 3) continue;
      return `${key}=${value}`;
    }
    return undefined;
  },
};

const cryptoKey = anyOf('crypto-key', [
  // Wallet Import Format: 5… (uncompressed) or K…/L… (compressed) on mainnet, 9…/c… on testnet.
  regexDetector('crypto-key', /(?<![A-Za-z0-9])[5KL9c][1-9A-HJ-NP-Za-km-z]{50,51}(?![A-Za-z0-9])/, (m) => {
    const p = base58Check(m[0]);
    return p !== undefined && (p[0] === 0x80 || p[0] === 0xef) && (p.length === 33 || (p.length === 34 && p[33] === 1));
  }),
  // BIP32 extended private keys (xprv, tprv, yprv, zprv, uprv, vprv, Yprv, Zprv).
  regexDetector('crypto-key', /(?<![A-Za-z0-9])[xtyzuvYZ]prv[1-9A-HJ-NP-Za-km-z]{100,108}(?![A-Za-z0-9])/, (m) => base58Check(m[0])?.length === 78),
]);

const BIP39_INDEX = new Map(wordlists.english!.map((w, i) => [w, i]));
const BIP39 = new Set(BIP39_INDEX.keys());

/**
 * The BIP39 checksum of `len` word indices from `at`: the first len/3 bits of SHA-256 of
 * the entropy. Done here with node:crypto (bip39's validateMnemonic rebuilds strings and
 * hashes in JavaScript: tens of microseconds a window, seconds on a long run of words).
 */
function bip39Valid(idx: readonly number[], at: number, len: number): boolean {
  let bits = 0n;
  for (let i = 0; i < len; i++) bits = (bits << 11n) | BigInt(idx[at + i]!);
  const cs = len / 3;
  const entBits = len * 11 - cs;
  const ent = bits >> BigInt(cs);
  const want = Number(bits & ((1n << BigInt(cs)) - 1n));
  const bytes = Buffer.from(ent.toString(16).padStart(entBits / 4, '0'), 'hex');
  const h = createHash('sha256').update(bytes).digest();
  // len is 12..24, so the checksum is 4..8 bits: all in the first byte.
  return h[0]! >> (8 - cs) === want;
}
/** 12 to 24 BIP39 words in a row (any separators that are not letters) whose checksum holds. */
const seedPhrase: Detector = {
  name: 'seed-phrase',
  find(text) {
    const words: { w: string; start: number; end: number }[] = [];
    const check = (): string | undefined => {
      const idx = words.map((x) => BIP39_INDEX.get(x.w)!);
      for (let len = 24; len >= 12; len -= 3) {
        for (let i = 0; i + len <= words.length; i++) {
          if (bip39Valid(idx, i, len)) return text.slice(words[i]!.start, words[i + len - 1]!.end);
        }
      }
      return undefined;
    };
    let last = -1;
    for (const m of text.matchAll(/[A-Za-z]+/g)) {
      const w = m[0].toLowerCase();
      const gap = last < 0 ? '' : text.slice(last, m.index);
      // A run continues across short gaps of spaces, punctuation and numbering ("1. abandon, 2. ability").
      const joined = words.length === 0 || (gap.length <= 8 && /^[^A-Za-z]*$/.test(gap));
      if (!joined || !BIP39.has(w)) {
        if (words.length >= 12) {
          const hit = check();
          if (hit) return hit;
        }
        words.length = 0;
      }
      if (BIP39.has(w)) words.push({ w, start: m.index, end: m.index + m[0].length });
      last = m.index + m[0].length;
    }
    return words.length >= 12 ? check() : undefined;
  },
};

/** IBAN candidates may run into the words after them ("… 0130 00 please"): every length from the longest is tried. */
const iban: Detector = {
  name: 'iban',
  find(text) {
    for (const m of text.matchAll(/(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){11,30}/g)) {
      const compact = m[0].replace(/[ -]/g, '').toUpperCase();
      for (let len = Math.min(34, compact.length); len >= 15; len--) if (isValidIBAN(compact.slice(0, len))) return m[0];
    }
    return undefined;
  },
};

/**
 * 13–19 digits with a known issuer prefix and a valid Luhn check, written together or in
 * groups of 3–6 digits with one separator used throughout ("4111 1111 1111 1111",
 * "4111.1111.1111.1111", "4111-1111-1111-1111", "4111/1111/1111/1111").
 */
const paymentCard: Detector = {
  name: 'payment-card',
  find(text) {
    // A run of digit groups; the card is any stretch of it (an expiry or CVV may follow).
    for (const m of text.matchAll(/(?<![0-9])\d+(?:[^0-9A-Za-z\r\n]{1,3}\d+)*/g)) {
      const groups = m[0].split(/[^0-9]+/);
      const seps = m[0].match(/[^0-9]+/g) ?? [];
      for (let i = 0; i < groups.length; i++) {
        let digits = '';
        for (let j = i; j < groups.length; j++) {
          if (j > i && (seps[j - 1] !== seps[i] || groups[j - 1]!.length < 3 || groups[j - 1]!.length > 6)) break;
          digits += groups[j];
          if (digits.length > 19) break;
          if (digits.length >= 13 && (j === i || groups[j]!.length <= 6) && cardIssuer(digits) && luhnValid(digits)) return groups.slice(i, j + 1).join(seps[i] ?? '');
        }
      }
    }
    return undefined;
  },
};

// US SSNs written NNN-NN-NNNN, excluding numbers never issued (000, 666, 9xx area; 00 group; 0000 serial).
const usSsn = regexDetector('us-ssn', /(?<![0-9-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![0-9-])/);

// ---------------------------------------------------------------------------

const own: Partial<Record<DlpDetectorName, Detector>> = {
  'private-key': privateKey,
  'aws-access-key': awsAccessKey,
  'aws-secret-key': awsSecretKey,
  jwt,
  stripe,
  'generic-secret': genericSecret,
  'crypto-key': cryptoKey,
  'seed-phrase': seedPhrase,
  'payment-card': paymentCard,
  iban,
  'us-ssn': usSsn,
};

/**
 * Formats secretlint's rule for a name misses, found by generating real tokens: run
 * next to the rule (either matching is a match).
 */
const SUPPLEMENTS: Partial<Record<DlpDetectorName, RegExp>> = {
  // Real keys are base64url in both parts (secretlint allows one '-').
  // A service-account key wherever it appears (secretlint reads whole .json files only).
  gcp: /"private_key"\s*:\s*"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----(?:\\n|\r?\n)[A-Za-z0-9+/]{32}/,
  sendgrid: /(?<![A-Za-z0-9_-])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/,
  // Base64 of the service-account JSON, however its length ends.
  '1password': /(?<![A-Za-z0-9_])ops_eyJ[A-Za-z0-9+/_-]{40,}={0,2}/,
  // Project, service-account and admin keys may end in '-'.
  openai: /(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{20})T3BlbkFJ[A-Za-z0-9_-]{20,}/,
  anthropic: /(?<![A-Za-z0-9_-])sk-ant-(?:api\d\d|admin\d\d|oat\d\d)-[A-Za-z0-9_-]{80,}/,
  gitlab: /(?<![A-Za-z0-9_-])gl(?:pat|rt|dt|ptt|cbt|oas|ft|imt|agent|soat|ffct|ft)-[A-Za-z0-9_-]{20,}/,
  slack: /(?<![A-Za-z0-9_-])xoxe\.xox[a-z]-\d-[A-Za-z0-9]{100,}/,
  // Driver suffixes (postgresql+psycopg2://), redis/amqp, passwords with any URL-safe character.
  'database-connection-string': /(?<![A-Za-z0-9+.-])(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|oracle|clickhouse|cockroachdb|couchdb)(?:\+[a-z0-9]+)?:\/\/[^\s:/@]{0,64}:[^\s@/]{6,128}@[^\s/]{1,253}/i,
  // Any scheme, any password characters, hosts without a dot.
  'basic-auth': /(?<![A-Za-z0-9+.-])[a-z][a-z0-9+.-]{1,20}:\/\/[^\s:/@]{1,64}:[^\s@/]{6,128}@[A-Za-z0-9.-]{1,253}/i,
};

/** A supplement's match is a credential unless its secret part is a placeholder (`user:password@`, `${PASS}`). */
function supplement(name: DlpDetectorName, re: RegExp): Detector {
  return regexDetector(name, re, (m) => {
    const userinfo = /:\/\/[^\s:/@]{0,64}:([^\s@/]+)@/.exec(m[0]);
    if (!userinfo) return !EXAMPLE.test(m[0]);
    const pw = percentDecode(userinfo[1]!);
    return !PLACEHOLDER_VALUE.test(pw) && !/^(?:pass|pw|pwd|passwd|password|secret)\d{0,3}$/i.test(pw) && entropy(pw) >= 2.5;
  });
}


/** Every detector `egress.dlp.detectors` can name, built once. */
export const BUILTIN: Record<DlpDetectorName, Detector> = Object.fromEntries(
  DETECTOR_NAMES.map((n) => {
    if (own[n]) return [n, own[n]];
    const rule = secretlintDetector(n, SECRETLINT_RULE[n] ?? n);
    const extra = SUPPLEMENTS[n];
    return [n, extra ? anyOf(n, [rule, supplement(n, extra)]) : rule];
  }),
) as Record<DlpDetectorName, Detector>;

/** RE2 keeps its input in a 16 MiB WebAssembly heap: custom patterns see windows of this many characters. */
const RE2_WINDOW = 256 * 1024;
const RE2_OVERLAP = 4096;

/** A manifest's regex on RE2: linear in the text, whatever the pattern. */
function re2Detector(name: string, source: string, ignoreCase: boolean): Detector {
  const re = new RE2(source, ignoreCase ? 'iu' : 'u');
  return {
    name,
    find(text) {
      for (let at = 0; at < text.length || at === 0; at += RE2_WINDOW - RE2_OVERLAP) {
        const m = re.exec(text.slice(at, at + RE2_WINDOW));
        if (m) return m[0];
        if (at + RE2_WINDOW >= text.length) break;
      }
      return undefined;
    },
  };
}

export function compileDetectors(dlp: { detectors: readonly DlpDetectorName[]; custom: readonly DlpCustomDetector[] }): Detector[] {
  const out: Detector[] = dlp.detectors.map((d) => BUILTIN[d]);
  for (const c of dlp.custom) {
    if (c.regex !== undefined) out.push(re2Detector(c.name, c.regex, c.ignoreCase));
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
