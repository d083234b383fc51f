/**
 * The container's output, relayed with backpressure: the Engine's multiplexed attach
 * stream (an 8-byte header per frame: stream type, then the payload length) is split
 * into stdout and stderr, and when either writer is full the attach stream is paused,
 * so a flood of output blocks the agent inside its memory limit instead of growing the
 * launcher's buffers.
 */
import type { Readable, Writable } from 'node:stream';

export interface Sinks {
  stdout: Writable;
  stderr: Writable;
}

/** Relays a multiplexed attach stream; resolves when it ends. */
export function demux(stream: Readable, sinks: Sinks): Promise<void> {
  let buf: Buffer = Buffer.alloc(0);
  const blocked = new Set<Writable>();
  const unblock = (to: Writable) => {
    if (!blocked.delete(to)) return;
    to.off('drain', onDrain.get(to)!);
    to.off('close', onDrain.get(to)!);
    if (blocked.size === 0) stream.resume();
  };
  const onDrain = new Map<Writable, () => void>();
  // A writer that goes away (the reader of the launcher's stdout closed it) unblocks the
  // stream too: its output is dropped from then on, and the attach stream keeps being
  // read to its end, so it never holds the launcher open.
  const write = (to: Writable, chunk: Buffer) => {
    if (to.destroyed || to.writableEnded) return;
    if (!to.write(chunk) && !blocked.has(to)) {
      blocked.add(to);
      stream.pause();
      if (!onDrain.has(to)) onDrain.set(to, () => unblock(to));
      to.once('drain', onDrain.get(to)!);
      to.once('close', onDrain.get(to)!);
    }
  };
  stream.on('data', (c: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, c]) : c;
    for (;;) {
      if (buf.length < 8) return;
      const type = buf[0];
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) return;
      const payload = buf.subarray(8, 8 + size);
      buf = buf.subarray(8 + size);
      write(type === 2 ? sinks.stderr : sinks.stdout, payload);
    }
  });
  return new Promise((resolve) => {
    stream.on('end', () => resolve());
    stream.on('close', () => resolve());
    stream.on('error', () => resolve());
  });
}

/** Relays a terminal (Tty: true) attach stream, which is not multiplexed. */
export function relayRaw(stream: Readable, to: Writable): Promise<void> {
  stream.pipe(to, { end: false });
  return new Promise((resolve) => {
    stream.on('end', () => resolve());
    stream.on('close', () => resolve());
    stream.on('error', () => resolve());
  });
}
