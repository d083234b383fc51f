/**
 * IP address literals parsed to bytes (pure): every spelling the kernel, a resolver or
 * an HTTP client would accept for the same address gives the same canonical text
 * (dotted quad; RFC 5952 for IPv6), so allowlist, consent, policy and cache keys are
 * decided on the address and not on how it was written. Internal addresses (loopback,
 * private, link-local such as cloud metadata, multicast, reserved) are recognised
 * through every IPv6 form that carries an IPv4 address inside it.
 */

/**
 * An IPv4 address in any form inet_aton(3) accepts: one to four parts, each decimal,
 * octal (leading 0) or hexadecimal (0x), the last part filling the remaining bytes
 * (`127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1`).
 */
export function parseIpv4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length < 1 || parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) n = p.length === 1 ? 0 : parseInt(p.slice(1), 8);
    else if (/^[1-9][0-9]*$/.test(p)) n = parseInt(p, 10);
    else return undefined;
    if (!Number.isSafeInteger(n)) return undefined;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255)) return undefined;
  const room = 4 - nums.length;
  if (last >= 256 ** room) return undefined;
  const tail: number[] = [];
  for (let i = room - 1; i >= 0; i--) tail.push(Math.floor(last / 256 ** i) % 256);
  return [...nums, ...tail];
}

/** An IPv6 address (with an embedded dotted quad allowed at the end), as 16 bytes; no zone ids. */
export function parseIpv6(text: string): number[] | undefined {
  if (!/^[0-9a-f:.]+$/i.test(text) || text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const words = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(p)) return undefined;
        const b = p.split('.').map(Number);
        if (b.some((x) => x > 255)) return undefined;
        out.push(b[0]! * 256 + b[1]!, b[2]! * 256 + b[3]!);
      } else {
        if (!/^[0-9a-f]{1,4}$/i.test(p)) return undefined;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  if (!head || !tail) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return undefined;
    all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  } else {
    if (head.length !== 8) return undefined;
    all = head;
  }
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run (of 2+) of zero words as `::`. */
export function formatIpv6(bytes: readonly number[]): string {
  const w: number[] = [];
  for (let i = 0; i < 16; i += 2) w.push(bytes[i]! * 256 + bytes[i + 1]!);
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = w.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export type IpAddress = { family: 4; bytes: number[]; text: string } | { family: 6; bytes: number[]; text: string };

/** The address a literal names (brackets allowed around IPv6), or undefined for a name. */
export function parseIp(literal: string): IpAddress | undefined {
  let t = literal.trim().toLowerCase();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  if (t.includes(':')) {
    const b = parseIpv6(t);
    return b ? { family: 6, bytes: b, text: formatIpv6(b) } : undefined;
  }
  const b = /^[0-9a-fx.]+$/.test(t) ? parseIpv4(t) : undefined;
  return b ? { family: 4, bytes: b, text: b.join('.') } : undefined;
}

const prefix = (bytes: readonly number[], p: readonly number[]) => p.every((x, i) => bytes[i] === x);
const zeros = (n: number) => new Array<number>(n).fill(0);

/** The IPv4 address an IPv6 address carries (mapped, compatible, SIIT, NAT64, 6to4, Teredo), if any. */
export function embeddedIpv4(b: readonly number[]): number[] | undefined {
  if (prefix(b, [...zeros(10), 0xff, 0xff])) return b.slice(12); // ::ffff:a.b.c.d
  if (prefix(b, [...zeros(8), 0xff, 0xff, 0, 0])) return b.slice(12); // ::ffff:0:a.b.c.d (SIIT)
  if (prefix(b, zeros(12)) && !(b[12] === 0 && b[13] === 0 && b[14] === 0 && (b[15] ?? 0) <= 1)) return b.slice(12); // ::a.b.c.d
  if (prefix(b, [0x00, 0x64, 0xff, 0x9b, ...zeros(8)])) return b.slice(12); // 64:ff9b::/96
  if (prefix(b, [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01])) return b.slice(12); // 64:ff9b:1::/48
  if (prefix(b, [0x20, 0x02])) return b.slice(2, 6); // 2002:AABB:CCDD::/48 (6to4)
  if (prefix(b, [0x20, 0x01, 0x00, 0x00])) return b.slice(12).map((x) => x ^ 0xff); // Teredo client
  return undefined;
}

const V4_INTERNAL: [number[], number][] = [
  [[0, 0, 0, 0], 8], [[10, 0, 0, 0], 8], [[100, 64, 0, 0], 10], [[127, 0, 0, 0], 8], [[169, 254, 0, 0], 16],
  [[172, 16, 0, 0], 12], [[192, 0, 0, 0], 24], [[192, 0, 2, 0], 24], [[192, 168, 0, 0], 16], [[198, 18, 0, 0], 15],
  [[198, 51, 100, 0], 24], [[203, 0, 113, 0], 24], [[224, 0, 0, 0], 4], [[240, 0, 0, 0], 4],
];
const V6_INTERNAL: [number[], number][] = [
  [zeros(16), 128], // ::
  [[...zeros(15), 1], 128], // ::1
  [[0xfc, 0], 7], // unique local
  [[0xfe, 0x80], 10], // link-local
  [[0xfe, 0xc0], 10], // site-local (deprecated)
  [[0xff, 0], 8], // multicast
  [[0x01, 0x00, ...zeros(6)], 64], // discard
  [[0x20, 0x01, 0x0d, 0xb8], 32], // documentation
];

function inPrefix(bytes: readonly number[], base: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if (((bytes[byte] ?? 0) & mask) !== ((base[byte] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * True for loopback, private, link-local, shared, multicast, reserved, documentation and
 * unspecified addresses, however they are written, and for an IPv6 address that carries
 * such an IPv4 address; and for anything that is not an address (fail closed).
 */
export function isInternalAddress(literal: string): boolean {
  const a = parseIp(literal);
  if (!a) return true;
  const v4 = a.family === 4 ? a.bytes : embeddedIpv4(a.bytes);
  if (v4 && V4_INTERNAL.some(([base, bits]) => inPrefix(v4, base, bits))) return true;
  if (a.family === 6 && V6_INTERNAL.some(([base, bits]) => inPrefix(a.bytes, base, bits))) return true;
  return false;
}

/** Canonical host text: an address in canonical form, or a name lowercased without its trailing dot. */
export function canonicalHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  const ip = parseIp(h);
  return ip ? ip.text : h;
}
