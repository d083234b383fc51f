/**
 * DLP detectors and the upload meter: known positives and near misses for each
 * detector, decoding views, and properties over generated card numbers and text.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUILTIN, compileDetectors, luhnValid, percentDecode, scanRequest, UploadMeter } from '../../src/policy/dlp.js';

const all = compileDetectors({ detectors: ['private-key', 'aws-access-key', 'us-ssn', 'payment-card'], custom: [{ name: 'confidential', marker: 'CONFIDENTIAL', ignoreCase: false }] });
const scanBody = (body: string) => scanRequest(all, { url: 'http://h/x', headers: [], body })?.detector;

/** Appends the Luhn check digit to a digit string. */
function withCheckDigit(partial: string): string {
  for (let d = 0; d <= 9; d++) if (luhnValid(partial + d)) return partial + d;
  throw new Error('unreachable');
}

describe('Luhn', () => {
  it('accepts the test card numbers the networks publish and rejects a changed digit', () => {
    for (const n of ['4111111111111111', '5555555555554444', '378282246310005', '6011111111111117', '3530111333300000', '4012888888881881']) {
      expect(luhnValid(n)).toBe(true);
      const changed = n.slice(0, -1) + String((Number(n.at(-1)) + 1) % 10);
      expect(luhnValid(changed)).toBe(false);
    }
    expect(luhnValid('')).toBe(false);
    expect(luhnValid('41x1')).toBe(false);
  });
});

describe('built-in detectors', () => {
  it('find private keys in PEM, PKCS#8, OpenSSH and PGP form', () => {
    for (const k of ['-----BEGIN RSA PRIVATE KEY-----', '-----BEGIN PRIVATE KEY-----', '-----BEGIN OPENSSH PRIVATE KEY-----', '-----BEGIN EC PRIVATE KEY-----', '-----BEGIN ENCRYPTED PRIVATE KEY-----', '-----BEGIN PGP PRIVATE KEY BLOCK-----']) {
      expect(scanBody(`x\n${k}\nMIIE...\n`)).toBe('private-key');
    }
    expect(scanBody('-----BEGIN PUBLIC KEY-----\nMIIB')).toBeUndefined();
    expect(scanBody('-----BEGIN CERTIFICATE-----')).toBeUndefined();
  });

  it('find AWS access key ids but not longer tokens that contain one', () => {
    expect(scanBody('aws_access_key_id = AKIAIOSFODNN7EXAMPLE')).toBe('aws-access-key');
    expect(scanBody('ASIAY34FZKBOKMUTVV7A')).toBe('aws-access-key');
    expect(scanBody('XAKIAIOSFODNN7EXAMPLE')).toBeUndefined();
    expect(scanBody('AKIAIOSFODNN7EXAMPLEX')).toBeUndefined();
    expect(scanBody('akiaiosfodnn7example')).toBeUndefined();
  });

  it('find SSNs written NNN-NN-NNNN, not numbers never issued or longer runs', () => {
    expect(scanBody('ssn: 123-45-6789.')).toBe('us-ssn');
    for (const n of ['000-12-3456', '666-12-3456', '912-12-3456', '123-00-4567', '123-45-0000', '1123-45-6789', '123-45-67890', '2026-11-2345']) expect(scanBody(n)).toBeUndefined();
  });

  it('find card numbers with a valid Luhn digit and issuer, grouped or not', () => {
    expect(scanBody('card 4111111111111111 exp')).toBe('payment-card');
    expect(scanBody('4111 1111 1111 1111')).toBe('payment-card');
    expect(scanBody('4111-1111-1111-1111')).toBe('payment-card');
    expect(scanBody('amex 3782 822463 10005')).toBe('payment-card');
    expect(scanBody('4111111111111112')).toBeUndefined(); // Luhn fails
    expect(scanBody('1234567812345670')).toBeUndefined(); // Luhn passes, no issuer starts with 1
    expect(scanBody('order 20261123094512 shipped')).toBeUndefined();
  });

  it('a custom marker and regex; ignoreCase only when asked', () => {
    const d = compileDetectors({ detectors: [], custom: [{ name: 'proj', regex: 'PROJECT-[0-9]{3}', ignoreCase: false }, { name: 'conf', marker: 'Confidential', ignoreCase: true }] });
    expect(scanRequest(d, { url: '/', headers: [], body: 'see PROJECT-042' })?.detector).toBe('proj');
    expect(scanRequest(d, { url: '/', headers: [], body: 'see project-042' })).toBeUndefined();
    expect(scanRequest(d, { url: '/', headers: [], body: 'STRICTLY CONFIDENTIAL' })?.detector).toBe('conf');
  });
});

describe('what is scanned', () => {
  it('the URL raw and percent-decoded, header values, the body and its form/JSON-decoded views', () => {
    expect(scanRequest(all, { url: 'http://h/?q=123-45-6789', headers: [], body: '' })).toMatchObject({ detector: 'us-ssn', where: 'url' });
    expect(scanRequest(all, { url: 'http://h/?k=%2D%2D%2D%2D%2DBEGIN%20PRIVATE%20KEY%2D%2D%2D%2D%2D', headers: [], body: '' })).toMatchObject({ detector: 'private-key', where: 'url' });
    expect(scanRequest(all, { url: 'http://h/', headers: [['x-data', 'AKIAIOSFODNN7EXAMPLE']], body: '' })).toMatchObject({ detector: 'aws-access-key', where: 'header' });
    expect(scanRequest(all, { url: 'http://h/', headers: [], body: 'a=CONFI%44ENTIAL' })).toMatchObject({ detector: 'confidential', where: 'body' });
    expect(scanRequest(all, { url: 'http://h/', headers: [], body: '{"t":"CONFI\\u0044ENTIAL"}' })).toMatchObject({ detector: 'confidential', where: 'body' });
    expect(scanRequest(all, { url: 'http://h/ok', headers: [['accept', '*/*']], body: 'hello world' })).toBeUndefined();
  });

  it('percent-decoding never throws and keeps malformed escapes', () => {
    expect(percentDecode('%zz%4')).toBe('%zz%4');
    expect(percentDecode('a+b%20c', true)).toBe('a b c');
    expect(percentDecode('é%C3%A9')).toBe('éé');
  });
});

describe('properties', () => {
  it('every Luhn-valid Visa/Mastercard number is found, however it is grouped', () => {
    fc.assert(
      fc.property(fc.constantFrom('4', '51', '52', '53', '54', '55'), fc.stringMatching(/^[0-9]{14}$/), fc.constantFrom('', ' ', '-'), (prefix, rest, sep) => {
        const n = withCheckDigit((prefix + rest).slice(0, 15));
        const grouped = n.match(/.{1,4}/g)!.join(sep);
        return BUILTIN['payment-card'].find(`pay ${grouped} now`) !== undefined;
      }),
      { numRuns: 500 },
    );
  });

  it('text with no digit run of 13 or more never trips the card detector', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.stringMatching(/^[0-9]{1,12}$/), fc.stringMatching(/^[a-z .,]{1,8}$/))), (parts) => {
        const text = parts.join('x');
        return BUILTIN['payment-card'].find(text) === undefined;
      }),
      { numRuns: 500 },
    );
  });
});

describe('upload meter', () => {
  it('admits up to the limit per destination and window, never more', () => {
    const m = new UploadMeter(100, 1000);
    expect(m.take('a:443', 60, 0)).toBe(true);
    expect(m.take('a:443', 40, 10)).toBe(true);
    expect(m.take('a:443', 1, 20)).toBe(false);
    expect(m.used('a:443', 20)).toBe(100);
    expect(m.take('b:443', 100, 20)).toBe(true); // another destination has its own budget
    expect(m.take('a:443', 60, 1001)).toBe(true); // the first 60 left the window
    expect(m.take('a:443', 1, 1002)).toBe(false);
  });

  it('over any sequence of chunks, what was admitted within one window never exceeds the limit', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ n: fc.integer({ min: 1, max: 400 }), dt: fc.integer({ min: 0, max: 300 }) }), { maxLength: 60 }), (chunks) => {
        const m = new UploadMeter(1000, 1000);
        const admitted: { t: number; n: number }[] = [];
        let t = 0;
        for (const c of chunks) {
          t += c.dt;
          if (m.take('d', c.n, t)) admitted.push({ t, n: c.n });
          const inWindow = admitted.filter((a) => t - a.t < 1000).reduce((s, a) => s + a.n, 0);
          if (inWindow > 1000) return false;
        }
        return true;
      }),
      { numRuns: 300 },
    );
  });
});
