/**
 * What an agent could wrap a secret in before sending it: the inverse of each decoder
 * agentbox runs (policy/decoders.ts), written the adversarial way (every character
 * encoded, not only those that must be).
 */
import { gzipSync } from 'node:zlib';

const pct = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');

export const ENCODERS: Record<string, (s: string) => string> = {
  url: pct,
  form: (s) => `d=${pct(s).replace(/%20/g, '+')}`,
  json: (s) => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
  base64: (s) => Buffer.from(s, 'utf8').toString('base64'),
  base64url: (s) => Buffer.from(s, 'utf8').toString('base64url'),
  hex: (s) => Buffer.from(s, 'utf8').toString('hex'),
  'quoted-printable': (s) => [...Buffer.from(s, 'utf8')].map((b) => `=${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  'gzip+base64': (s) => gzipSync(Buffer.from(s, 'utf8')).toString('base64'),
  'utf-16+base64': (s) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(s, 'utf16le')]).toString('base64'),
  // Fullwidth forms of ASCII letters and digits: NFKC turns them back.
  nfkc: (s) => s.replace(/[A-Za-z0-9]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)),
  'zero-width': (s) => [...s].join('\u200b'),
};

export const ENCODER_NAMES = Object.keys(ENCODERS);

/** Every chain of encoders up to `depth` long, innermost first. */
export function chains(depth: number): string[][] {
  let level: string[][] = [[]];
  const all: string[][] = [[]];
  for (let d = 0; d < depth; d++) {
    level = level.flatMap((c) => ENCODER_NAMES.map((e) => [...c, e]));
    all.push(...level);
  }
  return all;
}

export const encode = (s: string, chain: readonly string[]): string => chain.reduce((t, e) => ENCODERS[e]!(t), s);
