/**
 * Attack: writing an internal address so the proxy does not recognise it. The attack
 * review reached loopback and asked about cloud metadata with IPv6 literals written
 * non-canonically ([::ffff:7f00:1], [0:0:0:0:0:0:0:1], [::0:1], [::ffff:a9fe:a9fe]).
 * Defence: every literal is parsed to bytes and written back in one canonical form, and
 * IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are
 * classified by that IPv4 address. Properties: any spelling of a generated address
 * canonicalises to the same text and the same classification.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalHost, embeddedIpv4, formatIpv6, isInternalAddress, parseIp, parseIpv4, parseIpv6 } from '../../src/model/address.js';

const runs = Number(process.env.AGENTBOX_PROPERTY_RUNS ?? 5000) / 5;

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 });

/** Ways inet_aton(3) accepts to write the same IPv4 address. */
function v4Spellings(b: number[]): string[] {
  const n = ((b[0]! * 256 + b[1]!) * 256 + b[2]!) * 256 + b[3]!;
  return [
    b.join('.'),
    b.map((x) => `0x${x.toString(16)}`).join('.'),
    b.map((x) => `0${x.toString(8)}`).join('.'),
    String(n),
    `0x${n.toString(16)}`,
    `${b[0]}.${b[1]! * 65536 + b[2]! * 256 + b[3]!}`,
    `${b[0]}.${b[1]}.${b[2]! * 256 + b[3]!}`,
  ];
}

/** Ways RFC 4291 allows to write the same IPv6 address. */
function v6Spellings(w: number[]): string[] {
  const full = w.map((x) => x.toString(16));
  const padded = w.map((x) => x.toString(16).padStart(4, '0'));
  const out = [full.join(':'), padded.join(':'), full.join(':').toUpperCase(), `[${full.join(':')}]`];
  // Any run of zero words may be the one written as ::
  for (let i = 0; i < 8; i++) {
    if (w[i] !== 0) continue;
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    out.push(`${full.slice(0, i).join(':')}::${full.slice(j).join(':')}`);
  }
  // The last 32 bits as a dotted quad.
  out.push(`${full.slice(0, 6).join(':')}:${w[6]! >> 8}.${w[6]! & 255}.${w[7]! >> 8}.${w[7]! & 255}`);
  return out;
}

describe('IP literals', () => {
  it('the review\'s spellings of loopback and metadata are internal, in canonical form', () => {
    for (const a of ['[::ffff:7f00:1]', '[0:0:0:0:0:0:0:1]', '[::0:1]', '[::ffff:a9fe:a9fe]', '::ffff:127.0.0.1', '127.1', '0x7f.0.0.1', '2130706433', '0177.0.0.1', '[::127.0.0.1]', '[64:ff9b::a9fe:a9fe]', '[2002:7f00:1::]']) {
      expect(isInternalAddress(a), a).toBe(true);
    }
    expect(canonicalHost('[0:0:0:0:0:0:0:1]')).toBe('::1');
    expect(canonicalHost('[::FFFF:7F00:1]')).toBe('::ffff:7f00:1');
    expect(canonicalHost('127.1')).toBe('127.0.0.1');
    expect(canonicalHost('Example.COM.')).toBe('example.com');
    expect(isInternalAddress('8.8.8.8')).toBe(false);
    expect(isInternalAddress('[2606:4700::1111]')).toBe(false);
    expect(isInternalAddress('not-an-address')).toBe(true);
  });

  it('RFC 5952: the longest zero run, leftmost on a tie, and never a single zero word', () => {
    expect(formatIpv6(parseIpv6('2001:db8:0:0:1:0:0:1')!)).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6(parseIpv6('2001:db8:0:1:1:1:1:1')!)).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIpv6(parseIpv6('0:0:0:0:0:0:0:0')!)).toBe('::');
    expect(parseIpv6('1::2::3')).toBeUndefined();
    expect(parseIpv6('1:2:3:4:5:6:7:8:9')).toBeUndefined();
    expect(parseIpv6('fe80::1%eth0')).toBeUndefined();
    expect(parseIpv4('256.0.0.1')).toBeUndefined();
    expect(parseIpv4('1.2.3.4.5')).toBeUndefined();
    expect(parseIp('cafe.beef')).toBeUndefined();
  });

  it('every spelling of an IPv4 address canonicalises to one text and one classification (property)', () => {
    fc.assert(
      fc.property(v4, (t) => {
        const b = [...t];
        const canon = b.join('.');
        const internal = isInternalAddress(canon);
        for (const s of v4Spellings(b)) {
          if (canonicalHost(s) !== canon || isInternalAddress(s) !== internal) return false;
        }
        // The same address inside IPv6: mapped, compatible, NAT64, 6to4 and Teredo forms carry its class.
        const hex = (i: number) => (b[i]! * 256 + b[i + 1]!).toString(16);
        const carriers = [`::ffff:${canon}`, `::ffff:${hex(0)}:${hex(2)}`, `64:ff9b::${hex(0)}:${hex(2)}`, `2002:${hex(0)}:${hex(2)}::1`];
        if (!(b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3]! <= 1)) carriers.push(`::${canon}`);
        const teredo = [0, 2].map((i) => ((b[i]! ^ 255) * 256 + (b[i + 1]! ^ 255)).toString(16));
        carriers.push(`2001:0:4136:e378:8000:63bf:${teredo[0]}:${teredo[1]}`);
        return carriers.every((c) => isInternalAddress(`[${c}]`) === internal);
      }),
      { numRuns: runs },
    );
  });

  it('every spelling of an IPv6 address canonicalises to one text and one classification (property)', () => {
    fc.assert(
      fc.property(v6, (w) => {
        const bytes = w.flatMap((x) => [x >> 8, x & 255]);
        const canon = formatIpv6(bytes);
        const internal = isInternalAddress(canon);
        return v6Spellings(w).every((s) => canonicalHost(s) === canon && isInternalAddress(s) === internal) && parseIp(canon)!.text === canon;
      }),
      { numRuns: runs },
    );
  });

  it('an embedded internal IPv4 address makes the IPv6 address internal (property)', () => {
    const internal4 = fc.oneof(
      fc.tuple(fc.constant(127), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(10), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(169), fc.constant(254), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(192), fc.constant(168), fc.nat(255), fc.nat(255)),
    );
    fc.assert(
      fc.property(internal4, (t) => {
        const b = [...t];
        const mapped = [...new Array<number>(10).fill(0), 255, 255, ...b];
        expect(embeddedIpv4(mapped)).toEqual(b);
        return isInternalAddress(`[${formatIpv6(mapped)}]`) && isInternalAddress(`::ffff:${b.join('.')}`);
      }),
      { numRuns: runs },
    );
  });
});
