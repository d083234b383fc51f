/**
 * A request body through the DLP scanner with bounded memory.
 *
 * - Up to `holdBytes` (1 MiB) the body is held whole and scanned as before (every
 *   decoding of body.ts): nothing leaves until it is scanned, and a small body that
 *   matches never reaches the server at all.
 * - Past that, the body streams: each chunk is scanned together with the last
 *   `overlapBytes` of what came before (so a match that straddles two chunks is seen)
 *   and forwarded only once scanned. A compressed body (gzip, deflate, br) is scanned
 *   through a streaming decompressor whose output is bounded by `maxDecodedBytes`; a
 *   charset other than UTF-8/ASCII/Latin-1 cannot be windowed and is refused once
 *   past the held size. At most holdBytes + overlap + one chunk is held per request.
 * - A match mid-stream stops the body: the caller cuts the upstream request (the
 *   server gets a truncated request, never the matching bytes) and answers 403.
 */
import { createBrotliDecompress, createGunzip, createInflate, type Gunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { hitName, isUndecodable, scanRequest, type Detector, type DlpHit, type ScanResult } from '../policy/dlp.js';
import type { View } from '../policy/decoders.js';
import { charsetOf, scanTexts, type BufferBudget } from './body.js';
import { refusal, type Refusal } from './reasons.js';

export const HOLD_BYTES = 1024 * 1024;
export const OVERLAP_BYTES = 64 * 1024;

export interface ScanOptions {
  detectors: readonly Detector[];
  url: string;
  headers: [string, string][];
  encoding: string | undefined;
  contentType: string | undefined;
  budget: BufferBudget;
  /** Most decoded bytes a compressed body may expand to. */
  maxDecodedBytes: number;
  idleMs: number;
  holdBytes?: number;
  overlapBytes?: number;
  /** What went to the same destination just before; `put` keeps this body's views for the next. */
  carry?: { get(): readonly string[]; put(views: readonly View[]): void };
}

export type ScanEvents = {
  /** Scanned bytes, in order, to forward. */
  data: (c: Buffer) => boolean | void;
  /** The whole body passed. */
  end: () => void;
  /** A match or an unscannable body: nothing after `sent` bytes was forwarded. */
  refuse: (r: Refusal, hit: DlpHit | undefined, sent: number) => void;
};

const WINDOWABLE = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii', 'iso-8859-1', 'latin1', 'windows-1252']);

/** Streams `req` through the scanner; events say what to forward and when to stop. `pause`/`resume` carry back-pressure. */
export function scanBody(req: Readable, o: ScanOptions, on: ScanEvents): { pause(): void; resume(): void } {
  const hold = o.holdBytes ?? HOLD_BYTES;
  const overlap = o.overlapBytes ?? OVERLAP_BYTES;
  const held: Buffer[] = [];
  let heldBytes = 0;
  let streaming = false;
  let done = false;
  let sent = 0;
  let tail = '';
  let decoded = 0;
  let decoder: Gunzip | undefined;
  const enc = (o.encoding ?? 'identity').trim().toLowerCase();
  const give = () => {
    o.budget.give(heldBytes);
    heldBytes = 0;
  };
  const stop = (r: Refusal, hit?: DlpHit) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    give();
    req.pause();
    req.removeAllListeners('data');
    decoder?.destroy();
    on.refuse(r, hit, sent);
  };
  const dlpRefusal = (hit: DlpHit, at: string) => refusal('dlp', `data-loss prevention: the request's ${hit.where} matches detector ${hitName(hit)}${at}; it was not sent`, `egress.dlp ${hit.detector}`);
  /** A scan's answer acted on: false (and the body stopped) on a match or an undecodable text. */
  const acted = (r: ScanResult, at: string): boolean => {
    if (!r) return true;
    if (isUndecodable(r)) stop(refusal('unscannable', `the request's ${r.where} could not be fully decoded for data-loss prevention: ${r.undecodable}${at}; it was not sent`, 'egress.dlp'));
    else stop(dlpRefusal(r, at), r);
    return false;
  };
  const scanWindow = (text: string): ScanResult => {
    const hit = scanRequest(o.detectors, { url: '', headers: [], body: tail + text });
    const all = tail + text;
    tail = all.length > overlap ? all.slice(-overlap) : all;
    return hit;
  };
  /** Forwards scanned bytes; false (and the body paused) when the upstream pushes back. */
  const forward = (c: Buffer): boolean => {
    sent += c.length;
    if (on.data(c) !== false) return true;
    req.pause();
    return false;
  };
  let timer = setTimeout(() => stop(refusal('unscannable', `the request body stalled for ${o.idleMs / 1000}s; it was cut`)), o.idleMs);
  const bump = () => {
    clearTimeout(timer);
    timer = setTimeout(() => stop(refusal('unscannable', `the request body stalled for ${o.idleMs / 1000}s; it was cut`)), o.idleMs);
  };

  /** Raw bytes (as sent) and, for a compressed body, the decoder's output are each windowed. */
  const rawUtf8 = new StringDecoder('utf8');
  const scanRaw = (c: Buffer): boolean => {
    // As Latin-1 (every byte, nothing lost) and as UTF-8 (a character split across chunks kept whole).
    const at = ` (after ${sent} bytes had been sent)`;
    return acted(scanWindow(c.toString('latin1')), at) && acted(scanUtf8(rawUtf8.write(c)), at);
  };
  let utf8Tail = '';
  const scanUtf8 = (text: string): ScanResult => {
    const all = utf8Tail + text;
    utf8Tail = all.length > overlap ? all.slice(-overlap) : all;
    return scanRequest(o.detectors, { url: '', headers: [], body: all });
  };
  const decodedUtf8 = new StringDecoder('utf8');
  let decodedTail = '';
  const scanDecoded = (c: Buffer): boolean => {
    decoded += c.length;
    if (decoded > o.maxDecodedBytes) {
      stop(refusal('unscannable', `the ${enc} body expands past ${o.maxDecodedBytes} bytes, more than agentbox scans; it was cut`));
      return false;
    }
    const text = decodedTail + decodedUtf8.write(c);
    decodedTail = text.length > overlap ? text.slice(-overlap) : text;
    return acted(scanRequest(o.detectors, { url: '', headers: [], body: text }), ` (after ${sent} bytes had been sent)`);
  };

  const startStreaming = (): boolean => {
    const cs = charsetOf(o.contentType);
    const h = held[0] ?? Buffer.alloc(0);
    // A byte-order mark decides the charset, whatever the header says (as body.ts does).
    if ((h[0] === 0xff && h[1] === 0xfe) || (h[0] === 0xfe && h[1] === 0xff) || (h[0] === 0 && h[1] === 0 && h[2] === 0xfe && h[3] === 0xff)) {
      stop(refusal('unscannable', `the body is UTF-16 or UTF-32 (byte-order mark) and over ${hold} bytes, which cannot be scanned in parts; it was not sent`));
      return false;
    }
    if (cs !== undefined && !WINDOWABLE.has(cs)) {
      stop(refusal('unscannable', `the body's charset ${JSON.stringify(cs)} cannot be scanned in parts, and the body is over ${hold} bytes; it was not sent`));
      return false;
    }
    if (enc !== 'identity' && enc !== '') {
      const make = enc === 'gzip' || enc === 'x-gzip' ? createGunzip : enc === 'deflate' ? createInflate : enc === 'br' ? createBrotliDecompress : undefined;
      if (!make) {
        stop(refusal('unscannable', `the body's Content-Encoding ${JSON.stringify(enc)} cannot be inspected for data-loss prevention; it was not sent`));
        return false;
      }
      decoder = make() as Gunzip;
      decoder.on('data', (d: Buffer) => void scanDecoded(d));
      decoder.on('error', () => stop(refusal('unscannable', `the ${enc} body does not decode, so it cannot be inspected; it was cut`)));
    }
    streaming = true;
    const first = Buffer.concat(held);
    held.length = 0;
    give();
    if (!scanRaw(first)) return false;
    throughDecoder(first);
    return true;
  };

  /**
   * A chunk of a compressed body is forwarded only after the decompressor has produced
   * (and the scanner seen) everything it decodes to: the body waits meanwhile.
   */
  let pending = 0;
  let ended = false;
  const throughDecoder = (c: Buffer) => {
    if (!decoder) return void forward(c);
    pending++;
    req.pause();
    decoder.write(c, () => {
      pending--;
      if (done) return;
      const flowing = forward(c);
      if (pending === 0 && ended) return void endDecoder();
      // Back-pressure from the upstream resumes the body on its 'drain'.
      if (flowing) req.resume();
    });
  };
  const endDecoder = () => {
    decoder!.once('end', () => {
      if (done) return;
      done = true;
      on.end();
    });
    decoder!.end();
  };

  req.on('data', (c: Buffer) => {
    if (done) return;
    bump();
    if (!streaming) {
      if (!o.budget.take(c.length)) return stop(refusal('busy', `the session's proxy already holds ${o.budget.held} bytes of request bodies (its limit is ${o.budget.limit}); try again`));
      held.push(c);
      heldBytes += c.length;
      if (heldBytes > hold) void startStreaming();
      return;
    }
    if (!scanRaw(c)) return;
    throughDecoder(c);
  });
  req.on('end', () => {
    if (done) return;
    clearTimeout(timer);
    if (!streaming) {
      // Small enough to hold: scanned whole with every decoding, then sent at once.
      const body = Buffer.concat(held);
      const t = scanTexts(body, { encoding: o.encoding, contentType: o.contentType }, o.maxDecodedBytes);
      if (!t.ok) return stop(t.refusal);
      const views: View[] = [];
      if (!acted(scanRequest(o.detectors, { url: o.url, headers: o.headers, body: t.texts, carry: o.carry?.get(), views }), '')) return;
      o.carry?.put(views);
      done = true;
      give();
      if (body.length > 0) forward(body);
      on.end();
      return;
    }
    if (decoder) {
      ended = true;
      if (pending === 0) endDecoder();
      return;
    }
    done = true;
    on.end();
  });
  req.on('error', () => stop(refusal('unscannable', 'the request body could not be read')));
  return { pause: () => req.pause(), resume: () => req.resume() };
}
