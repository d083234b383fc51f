/**
 * Bug (found by the EPIPE e2e test, 1 run in 15): the container's output relay paused
 * the attach stream while stdout was full, and when stdout was then destroyed (its
 * reader closed the pipe) no 'drain' ever came: the attach stream stayed paused and
 * held the launcher open after the session had ended.
 * Fix: a writer that closes unblocks the relay; its output is dropped from then on and
 * the stream is read to its end.
 */
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { demux } from '../../src/runtimes/container/stream.js';

const frame = (type: 1 | 2, payload: string) => {
  const b = Buffer.from(payload);
  const h = Buffer.alloc(8);
  h[0] = type;
  h.writeUInt32BE(b.length, 4);
  return Buffer.concat([h, b]);
};

describe('the container output relay', () => {
  it('pauses for a full writer and resumes when it drains', async () => {
    const src = new PassThrough();
    const got: string[] = [];
    let release: () => void = () => undefined;
    const slow = new Writable({ highWaterMark: 1, write: (c: Buffer, _e, cb) => { got.push(c.toString()); release = cb; } });
    const done = demux(src, { stdout: slow, stderr: new PassThrough() });
    src.write(frame(1, 'one'));
    await new Promise((r) => setImmediate(r));
    expect(src.isPaused()).toBe(true);
    release();
    await new Promise((r) => setImmediate(r));
    expect(src.isPaused()).toBe(false);
    src.end();
    await done;
    expect(got).toEqual(['one']);
  });

  it('a writer destroyed while the relay waits for it unblocks the stream, which is then read to its end', async () => {
    const src = new PassThrough();
    const stuck = new Writable({ highWaterMark: 1, write: () => undefined });
    const done = demux(src, { stdout: stuck, stderr: new PassThrough() });
    src.write(frame(1, 'x'.repeat(100)));
    await new Promise((r) => setImmediate(r));
    expect(src.isPaused()).toBe(true);
    stuck.destroy();
    await new Promise((r) => setImmediate(r));
    expect(src.isPaused()).toBe(false);
    for (let i = 0; i < 100; i++) src.write(frame(1, 'more'));
    src.end();
    await expect(done).resolves.toBeUndefined();
  });
});
