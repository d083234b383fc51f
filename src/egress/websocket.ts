/**
 * WebSocket frames from the agent, inspected (RFC 6455, RFC 7692).
 *
 * The relay parses every frame the agent sends. The frames of one data message
 * (first frame, continuations, FIN) are held, unmasked, decompressed when the message
 * is compressed (permessage-deflate, with or without context takeover: one inflater
 * per connection, as the sender keeps one deflater), and the whole message is scanned
 * with the decoders and detectors. Only then are its frames forwarded, unchanged. A
 * match closes both sides with 1008 (policy violation); a message over the size bound
 * closes with 1009. Control frames (close, ping, pong) are scanned too, and forwarded
 * as they come. Extensions other than permessage-deflate are never offered upstream.
 */
import { constants, createInflateRaw, type InflateRaw } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import type { ScanResult } from '../policy/dlp.js';

export interface FrameScanOptions {
  /** permessage-deflate was agreed in the server's 101 answer. */
  deflate: boolean;
  /** Most bytes of one message, compressed or not. */
  maxMessage: number;
  scan(payload: Buffer, binary: boolean): ScanResult;
  /** Raw bytes that may go to the server, in order. */
  forward(raw: Buffer): void;
  /** The message matched or broke the protocol: nothing of it was forwarded. */
  refuse(why: { code: 1002 | 1008 | 1009; reason: string; hit?: ScanResult }): void;
}

/** The Sec-WebSocket-Extensions offer agentbox forwards: permessage-deflate offers only. */
export function offeredExtensions(header: string | string[] | undefined): string | undefined {
  const all = (Array.isArray(header) ? header.join(',') : header ?? '').split(',').map((x) => x.trim()).filter((x) => /^permessage-deflate(\s*;|$)/i.test(x));
  return all.length > 0 ? all.join(', ') : undefined;
}

/** What the server agreed to: permessage-deflate, nothing, or something agentbox cannot read (undefined). */
export function agreedExtensions(headText: string): { deflate: boolean } | undefined {
  const lines = headText.split('\r\n').filter((l) => /^sec-websocket-extensions:/i.test(l));
  if (lines.length === 0) return { deflate: false };
  const exts = lines.flatMap((l) => l.slice(l.indexOf(':') + 1).split(',')).map((x) => x.trim()).filter(Boolean);
  if (exts.length === 1 && /^permessage-deflate(\s*;|$)/i.test(exts[0]!)) return { deflate: true };
  return undefined;
}

/** A close frame: from agentbox to the agent (unmasked) or to the server (masked). */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  const text = Buffer.from(reason).subarray(0, 123);
  const payload = Buffer.concat([Buffer.from([code >> 8, code & 0xff]), text]);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const key = randomBytes(4);
  const out = Buffer.from(payload);
  for (let i = 0; i < out.length; i++) out[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), key, out]);
}

export class FrameScanner {
  private buf: Buffer = Buffer.alloc(0);
  private held: Buffer[] = [];
  private parts: Buffer[] = [];
  private partBytes = 0;
  private message: { binary: boolean; compressed: boolean } | undefined;
  private inflater: InflateRaw | undefined;
  private busy = false;
  private stopped = false;

  constructor(private readonly o: FrameScanOptions) {}

  push(chunk: Buffer): void {
    if (this.stopped) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    void this.drain();
  }

  close(): void {
    this.stopped = true;
    this.inflater?.destroy();
  }

  private stop(code: 1002 | 1008 | 1009, reason: string, hit?: ScanResult): void {
    if (this.stopped) return;
    this.close();
    this.o.refuse({ code, reason, hit });
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (!this.stopped) {
        const f = this.frame();
        if (!f) break;
        await this.handle(f);
      }
    } finally {
      this.busy = false;
    }
  }

  /** The next whole frame, or undefined when more bytes are needed. */
  private frame(): { fin: boolean; rsv: number; opcode: number; payload: Buffer; raw: Buffer } | undefined {
    const b = this.buf;
    if (b.length < 2) return undefined;
    const fin = (b[0]! & 0x80) !== 0;
    const rsv = (b[0]! >> 4) & 0x07;
    const opcode = b[0]! & 0x0f;
    const masked = (b[1]! & 0x80) !== 0;
    let len = b[1]! & 0x7f;
    let at = 2;
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = b.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(this.o.maxMessage)) {
        this.stop(1009, `a WebSocket frame of ${big} bytes is more than agentbox scans (${this.o.maxMessage})`);
        return undefined;
      }
      len = Number(big);
      at = 10;
    }
    if (!masked) {
      this.stop(1002, 'a WebSocket frame from the agent was not masked');
      return undefined;
    }
    if (len > this.o.maxMessage) {
      this.stop(1009, `a WebSocket frame of ${len} bytes is more than agentbox scans (${this.o.maxMessage})`);
      return undefined;
    }
    if (b.length < at + 4 + len) return undefined;
    const key = b.subarray(at, at + 4);
    const payload = Buffer.from(b.subarray(at + 4, at + 4 + len));
    for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
    const raw = b.subarray(0, at + 4 + len);
    this.buf = b.subarray(at + 4 + len);
    return { fin, rsv, opcode, payload, raw };
  }

  private async handle(f: { fin: boolean; rsv: number; opcode: number; payload: Buffer; raw: Buffer }): Promise<void> {
    const rsv1 = (f.rsv & 0x04) !== 0;
    if ((f.rsv & 0x03) !== 0 || (rsv1 && (!this.o.deflate || f.opcode === 0 || f.opcode >= 8))) return this.stop(1002, 'a WebSocket frame used reserved bits no agreed extension defines');
    if (f.opcode >= 8) {
      // Control frames: at most 125 bytes, never fragmented; their payload is content too.
      if (f.opcode > 10 || !f.fin || f.payload.length > 125) return this.stop(1002, 'a malformed WebSocket control frame');
      const body = f.opcode === 8 ? f.payload.subarray(2) : f.payload;
      const hit = body.length > 0 ? this.o.scan(body, true) : undefined;
      if (hit) return this.stop(1008, 'a WebSocket control frame matched data-loss prevention', hit);
      this.o.forward(f.raw);
      return;
    }
    if (f.opcode === 0) {
      if (!this.message) return this.stop(1002, 'a WebSocket continuation frame with no message begun');
    } else if (f.opcode === 1 || f.opcode === 2) {
      if (this.message) return this.stop(1002, 'a WebSocket message began inside another');
      this.message = { binary: f.opcode === 2, compressed: rsv1 };
    } else return this.stop(1002, `WebSocket opcode ${f.opcode} is not defined`);
    this.partBytes += f.payload.length;
    if (this.partBytes > this.o.maxMessage) return this.stop(1009, `a WebSocket message over ${this.o.maxMessage} bytes is more than agentbox scans`);
    this.held.push(f.raw);
    this.parts.push(f.payload);
    if (!f.fin) return;
    const m = this.message!;
    let payload: Buffer = Buffer.concat(this.parts);
    const raw = Buffer.concat(this.held);
    this.message = undefined;
    this.parts = [];
    this.held = [];
    this.partBytes = 0;
    if (m.compressed) {
      const out = await this.inflate(payload);
      if (!out) return;
      payload = out;
    }
    const hit = this.o.scan(payload, m.binary);
    if (hit) return this.stop(1008, 'a WebSocket message matched data-loss prevention', hit);
    this.o.forward(raw);
  }

  /** One compressed message through the connection's inflater (RFC 7692 §7.2.2: the 00 00 ff ff tail restored). */
  private inflate(payload: Buffer): Promise<Buffer | undefined> {
    if (!this.inflater) {
      const fresh = createInflateRaw({ windowBits: 15 });
      // A message may end the deflate stream (BFINAL, RFC 7692 §7.2.3.3): the next one
      // starts a new stream, as the server's inflater does (a finished inflater would
      // read every later message as empty, unscanned).
      fresh.once('end', () => {
        if (this.inflater === fresh) this.inflater = undefined;
      });
      this.inflater = fresh;
    }
    const z = this.inflater;
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      let n = 0;
      const onData = (c: Buffer) => {
        n += c.length;
        out.push(c);
        if (n > this.o.maxMessage) {
          z.off('data', onData);
          this.stop(1009, `a compressed WebSocket message expands past ${this.o.maxMessage} bytes, more than agentbox scans`);
          resolve(undefined);
        }
      };
      const onError = () => {
        this.stop(1002, 'a compressed WebSocket message does not inflate');
        resolve(undefined);
      };
      z.on('data', onData);
      z.once('error', onError);
      z.write(Buffer.concat([payload, Buffer.from([0x00, 0x00, 0xff, 0xff])]));
      z.flush(constants.Z_SYNC_FLUSH, () => {
        z.off('data', onData);
        z.off('error', onError);
        if (this.stopped) return resolve(undefined);
        // The stream ended in this message: the inflater is done; drop it now (its 'end'
        // may come after this callback).
        if (z.readableEnded || (z as unknown as { _finishFlushCalled?: boolean })._finishFlushCalled || z.destroyed) {
          if (this.inflater === z) this.inflater = undefined;
        }
        resolve(Buffer.concat(out));
      });
    });
  }
}
