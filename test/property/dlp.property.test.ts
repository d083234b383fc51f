/**
 * Property: every detector catches a generated secret (test/helpers/secrets.ts) however
 * it is wrapped, up to three encodings deep (test/helpers/encodings.ts, the inverse of
 * each decoder), wherever it is sent: the URL, a header, the body, a host label and a
 * WebSocket message (masked, fragmented, and compressed with permessage-deflate).
 *
 * Attack: exfiltrate a credential by encoding it (percent twice, base64 of hex, gzip,
 * UTF-16, fullwidth letters, zero-width characters) so no pattern sees it as written.
 * Defence: policy/decoders.ts undoes every encoding breadth-first before the detectors
 * run, and names the chain it took.
 *
 * Chains up to two deep are tried exhaustively for every detector and place; three
 * deep are sampled (fast-check) over every detector. The same through the real proxy,
 * over plain HTTP and inspected HTTPS, is test/integration/dlp.test.ts.
 */
import fc from 'fast-check';
import { deflateRawSync, constants } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BUILTIN, isUndecodable, scanHost, scanRequest, type ScanResult } from '../../src/policy/dlp.js';
import { DETECTOR_NAMES, type DlpDetectorName } from '../../src/model/dlp.js';
import { FrameScanner } from '../../src/egress/websocket.js';
import { SECRETS } from '../helpers/secrets.js';
import { chains, encode, ENCODER_NAMES } from '../helpers/encodings.js';

type Place = 'url' | 'header' | 'body' | 'host' | 'frame';
const PLACES: Place[] = ['url', 'header', 'body', 'host', 'frame'];

/** A masked client frame. */
function frame(opcode: number, payload: Buffer, fin: boolean, rsv1 = false): Buffer {
  const key = randomBytes(4);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= key[i & 3]!;
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0, 0x80 | len]) : len < 65536 ? Buffer.from([0, 0x80 | 126, len >> 8, len & 0xff]) : Buffer.concat([Buffer.from([0, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(len)); return b; })()]);
  head[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  return Buffer.concat([head, key, masked]);
}

/** A message through the frame scanner: split in three fragments, compressed when asked. */
async function viaFrames(detector: DlpDetectorName, text: string, deflate: boolean): Promise<ScanResult> {
  let payload = Buffer.from(text, 'utf8');
  if (deflate) {
    const d = deflateRawSync(payload, { finishFlush: constants.Z_SYNC_FLUSH });
    payload = d.subarray(0, d.length - 4);
  }
  const third = Math.ceil(payload.length / 3);
  const parts = [payload.subarray(0, third), payload.subarray(third, 2 * third), payload.subarray(2 * third)];
  const wire = Buffer.concat(parts.map((p, i) => frame(i === 0 ? 1 : 0, p, i === 2, deflate && i === 0)));
  return new Promise<ScanResult>((resolve) => {
    let hit: ScanResult;
    const s = new FrameScanner({
      deflate,
      maxMessage: 16 * 1024 * 1024,
      scan: (p) => (hit = scanRequest([BUILTIN[detector]], { url: '', headers: [], body: p.toString('utf8'), where: 'frame' })),
      forward: () => resolve(undefined),
      refuse: (why) => resolve(why.hit ?? hit),
    });
    // Byte by byte for small messages: frame boundaries fall anywhere in a chunk.
    if (wire.length < 4096) for (const b of wire) s.push(Buffer.from([b]));
    else s.push(wire);
  });
}

/** Where the encoded secret is put, and what the proxy's scanner says. */
async function scanAt(place: Place, detector: DlpDetectorName, enc: string, deflate = false): Promise<ScanResult> {
  const only = [BUILTIN[detector]];
  switch (place) {
    case 'url':
      return scanRequest(only, { url: `http://granted.example/upload?q=${enc.replace(/[\s#&]/g, (c) => encodeURIComponent(c))}`, headers: [], body: '' });
    case 'header':
      return scanRequest(only, { url: 'http://granted.example/', headers: [['x-data', enc.replace(/[\r\n]/g, ' ')]], body: '' });
    case 'body':
      return scanRequest(only, { url: 'http://granted.example/', headers: [], body: JSON.stringify({ data: enc }) });
    case 'host': {
      // Data in a name: hex of the text, in labels of at most 63 characters.
      const hex = Buffer.from(enc, 'utf8').toString('hex');
      const labels = hex.match(/.{1,63}/g) ?? [];
      return scanHost(only, `${labels.join('.')}.granted.example`);
    }
    case 'frame':
      return viaFrames(detector, enc, deflate);
  }
}

const caught = (r: ScanResult, detector: string) => r !== undefined && !isUndecodable(r) && r.detector === detector;

/** One sample secret per detector (seeded, so a failure names a reproducible case). */
const sample = (name: DlpDetectorName, seed: number) => fc.sample(SECRETS[name], { numRuns: 1, seed })[0]!;

describe('every detector, every decoder chain up to two deep, every place', () => {
  const upTo2 = chains(2);
  it.each(DETECTOR_NAMES)('%s', async (name) => {
    const secret = sample(name, 7);
    const missed: string[] = [];
    for (const place of PLACES) {
      // Host names are short: a PEM key or a service-account file hexed twice over is a
      // thousand labels. Names longer than DNS allows are refused before any scan.
      const chainsHere = place === 'host' ? upTo2.filter((c) => encode(secret, c).length <= 2000) : upTo2;
      for (const c of chainsHere) {
        const r = await scanAt(place, name, encode(secret, c), place === 'frame' && c.length % 2 === 1);
        if (!caught(r, name)) missed.push(`${place}:${c.join('→') || 'as is'}:${r === undefined ? 'passed' : isUndecodable(r) ? r.undecodable : r.detector}`);
      }
    }
    expect(missed).toEqual([]);
  }, 600_000);
});

describe('three deep, sampled', () => {
  it.each(DETECTOR_NAMES)('%s', async (name) => {
    const chain3 = fc.tuple(...[0, 1, 2].map(() => fc.constantFrom(...ENCODER_NAMES)));
    await fc.assert(
      fc.asyncProperty(SECRETS[name], chain3, fc.constantFrom(...PLACES.filter((p) => p !== 'host')), fc.boolean(), async (secret, chain, place, deflate) => {
        const r = await scanAt(place, name, encode(secret, chain), deflate);
        expect(caught(r, name), `${name} in ${place} via ${chain.join('→')}: ${JSON.stringify(r)}`).toBe(true);
        // Named with its chain, unless the encoded text itself already holds a match (hex of digits is digits).
        if (r && !isUndecodable(r) && r.via.length === 0) expect(BUILTIN[name].find(encode(secret, chain)) ?? BUILTIN[name].find(JSON.stringify({ data: encode(secret, chain) }))).toBeDefined();
      }),
      { numRuns: name === 'gcp' || name === 'private-key' ? 8 : 25 },
    );
  }, 600_000);
});
