/**
 * Request bodies as DLP must see them: read within the session's buffer budget and an
 * idle timeout, then decoded from their Content-Encoding (the decoder must consume the
 * whole body: bytes after a compressed stream are refused, not forwarded unscanned) and
 * from their charset (UTF-8, UTF-16 by charset or BOM, Latin-1, ASCII; anything else
 * cannot be read and is refused). The raw bytes are scanned too.
 */
import type { IncomingMessage } from 'node:http';
import { brotliDecompressSync, inflateRawSync, inflateSync, gunzipSync } from 'node:zlib';
import { refusal, type Refusal } from './reasons.js';
import { byBom } from '../policy/decoders.js';

/** A byte budget shared by every body a session's proxy holds at once. */
export class BufferBudget {
  private used = 0;
  constructor(readonly limit: number) {}
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
  get held(): number {
    return this.used;
  }
}

export interface ReadLimits {
  maxBytes: number;
  budget: BufferBudget;
  idleMs: number;
}

/** The body, whole; its bytes stay counted against the budget until `release` is called. */
export function readBody(req: IncomingMessage, l: ReadLimits): Promise<{ ok: true; body: Buffer; release: () => void } | { ok: false; refusal: Refusal }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let done = false;
    const fail = (r: Refusal) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      l.budget.give(n);
      // Stop reading (and holding) the body; the caller answers and closes the connection.
      req.pause();
      req.removeAllListeners('data');
      resolve({ ok: false, refusal: r });
    };
    let timer = setTimeout(() => fail(refusal('unscannable', `the request body stalled for ${l.idleMs / 1000}s; it was not sent`)), l.idleMs);
    req.on('data', (c: Buffer) => {
      if (done) return;
      clearTimeout(timer);
      timer = setTimeout(() => fail(refusal('unscannable', `the request body stalled for ${l.idleMs / 1000}s; it was not sent`)), l.idleMs);
      if (n + c.length > l.maxBytes) return fail(refusal('unscannable', `the request body is over ${l.maxBytes} bytes, more than agentbox scans for data-loss prevention; it was not sent`));
      if (!l.budget.take(c.length)) return fail(refusal('busy', `the session's proxy already holds ${l.budget.held} bytes of request bodies (its limit is ${l.budget.limit}); try again`));
      n += c.length;
      chunks.push(c);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      let released = false;
      resolve({ ok: true, body: Buffer.concat(chunks), release: () => (released ? undefined : ((released = true), l.budget.give(n))) });
    });
    req.on('error', () => fail(refusal('unscannable', 'the request body could not be read')));
  });
}

const CHARSETS: Record<string, BufferEncoding | 'utf-16be'> = {
  'utf-8': 'utf8', utf8: 'utf8', 'us-ascii': 'latin1', ascii: 'latin1', 'iso-8859-1': 'latin1', latin1: 'latin1', 'windows-1252': 'latin1',
  'utf-16': 'utf16le', 'utf-16le': 'utf16le', 'utf-16be': 'utf-16be',
};

/** The charset a Content-Type names, lowercased, or undefined. */
export function charsetOf(contentType: string | undefined): string | undefined {
  const m = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? '');
  return m?.[1]?.toLowerCase();
}

function decodeText(bytes: Buffer, charset: string | undefined): { ok: true; text: string } | { ok: false; reason: string } {
  // A byte-order mark decides, whatever the header says.
  const bom = byBom(bytes);
  if (bom) return { ok: true, text: bom.text };
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return { ok: true, text: bytes.subarray(3).toString('utf8') };
  if (charset === undefined) return { ok: true, text: bytes.toString('utf8') };
  const enc = CHARSETS[charset];
  if (!enc) return { ok: false, reason: `the body's charset ${JSON.stringify(charset)} cannot be read for data-loss prevention; it was not sent` };
  if (enc === 'utf-16be') {
    const even = bytes.length % 2 === 0 ? bytes : bytes.subarray(0, bytes.length - 1);
    return { ok: true, text: Buffer.from(even).swap16().toString('utf16le') };
  }
  return { ok: true, text: bytes.toString(enc) };
}

/**
 * The texts DLP scans for a body: the raw bytes (as UTF-8 and as Latin-1, so nothing
 * is lost to decoding), and the body decoded from its encoding and charset.
 */
export function scanTexts(body: Buffer, headers: { encoding: string | undefined; contentType: string | undefined }, maxBytes: number): { ok: true; texts: string[] } | { ok: false; refusal: Refusal } {
  const enc = (headers.encoding ?? 'identity').trim().toLowerCase();
  let decoded: Buffer;
  if (enc === 'identity' || enc === '') decoded = body;
  else {
    const decoder = enc === 'gzip' || enc === 'x-gzip' ? gunzipSync : enc === 'deflate' ? inflateSync : enc === 'br' ? brotliDecompressSync : undefined;
    if (!decoder) return { ok: false, refusal: refusal('unscannable', `the body's Content-Encoding ${JSON.stringify(enc)} cannot be inspected for data-loss prevention; it was not sent`) };
    try {
      const r = decoder(body, { maxOutputLength: maxBytes, info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      // Bytes after the compressed stream would reach the server unscanned.
      if (r.engine.bytesWritten !== body.length) return { ok: false, refusal: refusal('unscannable', `the ${enc} body has ${body.length - r.engine.bytesWritten} bytes after its compressed stream; it was not sent`) };
      decoded = r.buffer;
    } catch {
      // Raw deflate is a common mislabelling of "deflate": try it before refusing.
      try {
        if (enc !== 'deflate') throw new Error('no');
        const r = inflateRawSync(body, { maxOutputLength: maxBytes, info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
        if (r.engine.bytesWritten !== body.length) throw new Error('trailing');
        decoded = r.buffer;
      } catch {
        return { ok: false, refusal: refusal('unscannable', `the ${enc} body does not decode within ${maxBytes} bytes, so it cannot be inspected; it was not sent`) };
      }
    }
  }
  const text = decodeText(decoded, charsetOf(headers.contentType));
  if (!text.ok) return { ok: false, refusal: refusal('unscannable', text.reason) };
  const texts = [text.text];
  if (decoded !== body) texts.push(body.toString('latin1'));
  else if (text.text !== body.toString('utf8')) texts.push(body.toString('utf8'));
  texts.push(decoded.toString('latin1'));
  return { ok: true, texts: [...new Set(texts)] };
}
