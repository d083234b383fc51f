/**
 * Decoders before detectors (pure): every way a text could be hiding what a detector
 * looks for, undone, repeated until nothing changes.
 *
 * A text is a view; each decoder that changes a view makes a new one (the decoded
 * parts written in place, so what stood around them stays: `password=<base64>` is
 * still an assignment once decoded). Views are explored breadth-first, identical
 * texts once. The exploration is bounded in depth, in views and in characters: a
 * text that still decodes further at the bound is reported as not fully decodable,
 * and the caller refuses it rather than pass it unscanned.
 *
 * Decoders: url (percent), form (percent with + as space), base64 and base64url
 * (tokens of 12+ characters, across line breaks, as in MIME and PEM), hex (tokens of
 * 16+ digits), quoted-printable, JSON string escapes, NFKC, zero-width and bidi
 * characters stripped; inside a base64 or hex token, gzip and zlib (both have a
 * header) and UTF-16/UTF-32 are undone too. Content-Encoding and charset are body.ts's.
 */
import { gunzipSync, inflateSync } from 'node:zlib';

export interface View {
  text: string;
  /** The decoders that made this view, outermost first; [] for the text as sent. */
  chain: string[];
}

export interface DecodeBounds {
  /** Most decodings in a row (the acceptance floor is 3). */
  maxDepth: number;
  /** Most views of one text. */
  maxViews: number;
  /** Most characters over all views of one text. */
  maxChars: number;
}

export const DEFAULT_BOUNDS: DecodeBounds = { maxDepth: 5, maxViews: 96, maxChars: 48 * 1024 * 1024 };

export type Decoded = { ok: true; views: View[] } | { ok: false; reason: string; views: View[] };

/** Bytes that read as text: valid UTF-8, no NUL, at most 1 in 10 control characters. */
function asText(b: Buffer): string | undefined {
  if (b.length === 0) return undefined;
  const s = b.toString('utf8');
  if (s.includes('\uFFFD') && !b.includes(Buffer.from('\uFFFD'))) return undefined;
  let control = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) return undefined;
    if (c < 0x20 && c !== 9 && c !== 10 && c !== 13) control++;
  }
  return control * 10 <= s.length ? s : undefined;
}

const MAX_INFLATE = 4 * 1024 * 1024;


/** Decoded bytes as text: directly, as UTF-16/32 (BOM or NUL pattern), or decompressed. */
/** Decoding that must not be passed over: compression nested deeper, or expanding past the bound. */
export class TooDeep extends Error {}

/** Printable ASCII runs of 12+ characters in bytes that are not text (a tar, a file with one stray byte), as `strings` shows them. */
function printableRuns(b: Buffer): string | undefined {
  const runs = b.toString('latin1').match(/[\x20-\x7e\t\r\n]{12,}/g);
  return runs ? runs.join(' ') : undefined;
}

export function bytesAsText(b: Buffer, depth = 0): { text: string; via: string[] } | undefined {
  const t = asText(b);
  if (t !== undefined) return { text: t, via: [] };
  const u = utf16or32(b);
  if (u !== undefined) return { text: u.text, via: [u.via] };
  if (b.length < 8) return undefined;
  const tries: [string, (x: Buffer) => Buffer][] = [];
  if (b[0] === 0x1f && b[1] === 0x8b) tries.push(['gzip', (x) => gunzipSync(x, { maxOutputLength: MAX_INFLATE })]);
  else if ((b[0]! & 0x0f) === 8 && ((b[0]! << 8) | b[1]!) % 31 === 0) tries.push(['deflate', (x) => inflateSync(x, { maxOutputLength: MAX_INFLATE })]);
  // Raw deflate and brotli have no header: inside a token they are not tried (most
  // tokens are ids and hashes; inflating every one costs most of the scan and finds
  // "text" in noise). Bodies in those encodings are read by their Content-Encoding
  // (body.ts), WebSocket messages by permessage-deflate (websocket.ts).
  if (tries.length > 0 && depth >= 3) throw new TooDeep(`compressed more than ${depth} times over`);
  for (const [name, f] of tries) {
    let inflated: Buffer;
    try {
      inflated = f(b);
    } catch (e) {
      // Past the bound is refused, not passed; a header that is not this format is not.
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) throw new TooDeep(`it inflates past ${MAX_INFLATE} bytes`);
      continue;
    }
    const out = bytesAsText(inflated, depth + 1);
    if (out) return { text: out.text, via: [name, ...out.via] };
  }
  // Bytes, not text: what is printable in them is still scanned.
  const runs = printableRuns(b);
  return runs === undefined ? undefined : { text: runs, via: ['bytes'] };
}

/** UTF-32 or UTF-16 text by its byte-order mark (body.ts reads bodies with it too). */
export function byBom(b: Buffer): { text: string; via: 'utf-32' | 'utf-16' } | undefined {
  const u32 = (le: boolean) => {
    let s = '';
    for (let i = 4; i + 3 < b.length; i += 4) {
      const cp = le ? b.readUInt32LE(i) : b.readUInt32BE(i);
      if (cp > 0x10ffff) return undefined;
      s += String.fromCodePoint(cp);
    }
    return s;
  };
  if ((b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0) || (b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff)) {
    const s = u32(b[0] === 0xff);
    return s === undefined ? undefined : { text: s, via: 'utf-32' };
  }
  if (b[0] === 0xff && b[1] === 0xfe) return { text: b.subarray(2).toString('utf16le'), via: 'utf-16' };
  if (b[0] === 0xfe && b[1] === 0xff) return { text: Buffer.from(b.subarray(2)).swap16().toString('utf16le'), via: 'utf-16' };
  return undefined;
}

/** UTF-32 or UTF-16 by byte-order mark, or UTF-16 by its NUL pattern (ASCII text in UTF-16LE/BE). */
export function utf16or32(b: Buffer): { text: string; via: string } | undefined {
  const bom = byBom(b);
  if (bom) return bom;
  if (b.length >= 8 && b.length % 2 === 0) {
    let evenZero = 0;
    let oddZero = 0;
    for (let i = 0; i < b.length; i += 2) {
      if (b[i] === 0) evenZero++;
      if (b[i + 1] === 0) oddZero++;
    }
    const half = b.length / 2;
    if (oddZero >= half * 0.9 && evenZero === 0) return { text: b.toString('utf16le'), via: 'utf-16' };
    if (evenZero >= half * 0.9 && oddZero === 0) return { text: Buffer.from(b).swap16().toString('utf16le'), via: 'utf-16' };
  }
  return undefined;
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

type Decoder = (text: string) => { text: string; via?: string[] } | undefined;

/** Replaces each token a regex finds by its decoding, where it decodes to text; the inner formats met on the way. */
function tokens(re: RegExp, decode: (token: string) => Buffer | undefined): Decoder {
  return (text) => {
    let changed = false;
    const inner = new Set<string>();
    const out = text.replace(re, (tok) => {
      const bytes = decode(tok);
      if (!bytes) return tok;
      const t = bytesAsText(bytes);
      if (!t) return tok;
      changed = true;
      for (const v of t.via) inner.add(v);
      // The decoded text stands apart from its neighbours, as a token did.
      return ` ${t.text} `;
    });
    return changed ? { text: out, via: [...inner] } : undefined;
  };
}

// One token class for both alphabets (a base64url token is not cut at its first - or _),
// 12+ characters (9 bytes: an SSN or a short key), across line breaks as in MIME and PEM.
const B64 = /[A-Za-z0-9+/_-]{12,}(?:(?:\r?\n|\\r\\n|\\n)[A-Za-z0-9+/_-]{4,})*={0,2}/g;
const base64: Decoder = tokens(B64, (tok) => {
  const clean = tok.replace(/\\r|\\n|[\r\n=]/g, '');
  if (clean.length % 4 === 1) return undefined;
  const url = /[-_]/.test(clean);
  // Both alphabets in one token is neither encoding.
  if (url && /[+/]/.test(clean)) return undefined;
  // A run of letters only, or of digits only, is a word or a number more often than base64.
  if (/^[A-Za-z]+$/.test(clean) && !/[A-Z]/.test(clean.slice(1))) return undefined;
  if (/^[0-9]+$/.test(clean)) return undefined;
  return Buffer.from(clean, url ? 'base64url' : 'base64');
});
/** A long token cut by a scan window may start off its 4-character grid: each shift is tried. */
const base64Shifted: Decoder = (text) => {
  let changed = false;
  const out = text.replace(/[A-Za-z0-9+/]{256,}={0,2}/g, (tok) => {
    for (const k of [1, 2, 3]) {
      const t = bytesAsText(Buffer.from(tok.slice(k), 'base64'));
      if (t && t.via[0] !== 'bytes') {
        changed = true;
        return ` ${t.text} `;
      }
    }
    return tok;
  });
  return changed ? { text: out, via: [] } : undefined;
};

const hex: Decoder = tokens(/(?<![0-9A-Za-z])(?:[0-9a-fA-F]{2}){8,}(?![0-9A-Za-z])/g, (tok) => Buffer.from(tok, 'hex'));

const url: Decoder = (text) => {
  if (!/%[0-9a-fA-F]{2}/.test(text)) return undefined;
  const t = percentDecode(text);
  return t === text ? undefined : { text: t };
};

const form: Decoder = (text) => {
  if (!text.includes('+') || !/(?:^|[&\s"'])[^=&\s"']+=/.test(text)) return undefined;
  const t = percentDecode(text, true);
  return t === text ? undefined : { text: t };
};

const quotedPrintable: Decoder = (text) => {
  // Evidence of quoted-printable: a soft line break, or three =XX in a row (`x=10` in code is not).
  if (!/=\r?\n|(?:=[0-9A-Fa-f]{2}){3}/.test(text)) return undefined;
  const soft = text.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    if (soft[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(soft.slice(i + 1, i + 3))) {
      bytes.push(parseInt(soft.slice(i + 1, i + 3), 16));
      i += 2;
    } else for (const b of Buffer.from(soft[i]!, 'utf8')) bytes.push(b);
  }
  const t = Buffer.from(bytes).toString('utf8');
  return t === text ? undefined : { text: t };
};

const JSON_ESCAPE = /\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([\\"/bfnrt']))/g;
const SIMPLE: Record<string, string> = { '\\': '\\', '"': '"', '/': '/', "'": "'", b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const json: Decoder = (text) => {
  if (!/\\(?:u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|[\\"/bfnrt'])/.test(text)) return undefined;
  const t = text.replace(JSON_ESCAPE, (_m, u: string | undefined, x: string | undefined, c: string | undefined) => (u ? String.fromCharCode(parseInt(u, 16)) : x ? String.fromCharCode(parseInt(x, 16)) : SIMPLE[c!]!));
  return t === text ? undefined : { text: t };
};

const COMPAT = /[\uFF01-\uFF5E\u2070-\u209F\u2460-\u24FF\u3251-\u32BF\uFB00-\uFB06\u{1D400}-\u{1D7FF}\u{1F100}-\u{1F1FF}]/u;
const nfkc: Decoder = (text) => {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return undefined;
  // Only compatibility forms of letters and digits (fullwidth, mathematical, circled,
  // super/subscript, ligatures): an ellipsis or a non-breaking space hides nothing.
  if (!COMPAT.test(text)) return undefined;
  const t = text.normalize('NFKC');
  return t === text ? undefined : { text: t };
};

/** Zero-width, soft hyphen, word joiners, bidi controls and other invisible characters. */
const INVISIBLE = /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0\u{1D173}-\u{1D17A}\u{E0000}-\u{E007F}\u{E0100}-\u{E01EF}]/gu;
/** Invisible characters next to a character a token is made of (in an emoji sequence they hide nothing). */
const INVISIBLE_IN_TOKEN = /[A-Za-z0-9+/=_.:-][\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0\u{1D173}-\u{1D17A}\u{E0000}-\u{E007F}\u{E0100}-\u{E01EF}]|[\u{E0020}-\u{E007E}]/u;
const zeroWidth: Decoder = (text) => {
  if (!INVISIBLE_IN_TOKEN.test(text)) return undefined;
  // Tag characters spell ASCII ("ASCII smuggling"): U+E0041 is A.
  const t = text.replace(/[\u{E0020}-\u{E007E}]/gu, (c) => String.fromCharCode(c.codePointAt(0)! - 0xe0000)).replace(INVISIBLE, '');
  return t === text ? undefined : { text: t };
};

export const DECODERS: readonly [string, Decoder][] = [
  ['url', url],
  ['form', form],
  ['json', json],
  ['base64', base64],
  ['base64', base64Shifted],
  ['hex', hex],
  ['quoted-printable', quotedPrintable],
  ['nfkc', nfkc],
  ['zero-width', zeroWidth],
];

/**
 * Every view of `text`, breadth-first. `ok: false` when the text still decodes further
 * at a bound (depth, views or characters): the views found so far come with it.
 */
/** Text decoders that make no sense on bytes (a binary body read as Latin-1): only base64 and hex tokens are looked for there. */
const TOKEN_DECODERS = new Set(['base64', 'hex']);

/** A view that is bytes, not text: more than 1 in 20 characters a control character, C1 control or U+FFFD. */
function binaryish(text: string): boolean {
  let odd = 0;
  const n = Math.min(text.length, 65536);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 9 && c !== 10 && c !== 13) || (c >= 0x7f && c < 0xa0) || c === 0xfffd) odd++;
  }
  return n > 0 && odd * 20 > n;
}

export function decodeViews(text: string, bounds: DecodeBounds = DEFAULT_BOUNDS): Decoded {
  const views: View[] = [{ text, chain: [] }];
  const seen = new Set<string>([text]);
  let chars = text.length;
  let frontier: View[] = [views[0]!];
  for (let depth = 0; frontier.length > 0; depth++) {
    const next: View[] = [];
    for (const v of frontier) {
      const bytes = binaryish(v.text);
      for (const [name, d] of DECODERS) {
        if (bytes && !TOKEN_DECODERS.has(name)) continue;
        let r: ReturnType<Decoder>;
        try {
          r = d(v.text);
        } catch (e) {
          if (e instanceof TooDeep) return { ok: false, reason: `${e.message}, more than agentbox unwraps`, views };
          r = undefined;
        }
        if (!r || seen.has(r.text)) continue;
        if (depth >= bounds.maxDepth) return { ok: false, reason: `it is still encoded (${[...v.chain, name].join('→')}) after ${bounds.maxDepth} decodings, more than agentbox unwraps`, views };
        if (views.length >= bounds.maxViews || chars + r.text.length > bounds.maxChars) {
          return { ok: false, reason: `decoding it takes more than ${bounds.maxViews} views or ${bounds.maxChars} characters, more than agentbox scans`, views };
        }
        seen.add(r.text);
        chars += r.text.length;
        const child = { text: r.text, chain: [...v.chain, name, ...(r.via ?? [])] };
        views.push(child);
        next.push(child);
      }
    }
    frontier = next;
  }
  return { ok: true, views };
}
