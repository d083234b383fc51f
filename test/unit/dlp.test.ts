/**
 * DLP detectors and the upload meter: known positives and near misses for each
 * detector, decoding views, and properties over generated card numbers and text.
 */
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { constants, deflateRawSync, gzipSync } from 'node:zlib';
import { entropyToMnemonic, validateMnemonic, wordlists } from 'bip39';
import { FrameScanner } from '../../src/egress/websocket.js';
import { join } from 'node:path';
import { expandDetectors } from '../../src/model/dlp.js';
import { ROOT } from '../helpers/load.js';
import { describe, expect, it } from 'vitest';
import { BUILTIN, compileDetectors, isUndecodable, luhnValid, percentDecode, scanRequest, UploadMeter, type ScanResult } from '../../src/policy/dlp.js';

const all = compileDetectors({ detectors: ['private-key', 'aws-access-key', 'us-ssn', 'payment-card'], custom: [{ name: 'confidential', marker: 'CONFIDENTIAL', ignoreCase: false }] });
/** The detector that matched, 'undecodable', or undefined. */
const det = (r: ScanResult): string | undefined => (r === undefined ? undefined : isUndecodable(r) ? 'undecodable' : r.detector);
const scanBody = (body: string) => det(scanRequest(all, { url: 'http://h/x', headers: [], body }));

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
      expect(scanBody(`x\n${k}\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n`)).toBe('private-key');
      // A document naming the header, with no key material after it, is not a key.
      expect(scanBody(`x\n${k}\n...\n`)).toBeUndefined();
    }
    expect(scanBody('-----BEGIN PUBLIC KEY-----\nMIIB')).toBeUndefined();
    expect(scanBody('-----BEGIN CERTIFICATE-----')).toBeUndefined();
  });

  it('find AWS access key ids but not longer tokens that contain one', () => {
    expect(scanBody('aws_access_key_id = AKIAQ3EGRE7TZLXVMK4P')).toBe('aws-access-key');
    expect(scanBody('aws_access_key_id = AKIAIOSFODNN7EXAMPLE')).toBeUndefined(); // AWS documentation's example
    expect(scanBody('ASIAY34FZKBOKMUTVV7A')).toBe('aws-access-key');
    expect(scanBody('XAKIAQ3EGRE7TZLXVMK4P')).toBeUndefined();
    expect(scanBody('AKIAQ3EGRE7TZLXVMK4PX')).toBeUndefined();
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
    expect(det(scanRequest(d, { url: '/', headers: [], body: 'see PROJECT-042' }))).toBe('proj');
    expect(scanRequest(d, { url: '/', headers: [], body: 'see project-042' })).toBeUndefined();
    expect(det(scanRequest(d, { url: '/', headers: [], body: 'STRICTLY CONFIDENTIAL' }))).toBe('conf');
  });
});

describe('what is scanned', () => {
  it('the URL raw and percent-decoded, header values, the body and its form/JSON-decoded views', () => {
    expect(scanRequest(all, { url: 'http://h/?q=123-45-6789', headers: [], body: '' })).toMatchObject({ detector: 'us-ssn', where: 'url' });
    expect(scanRequest(all, { url: 'http://h/?k=%2D%2D%2D%2D%2DBEGIN%20PRIVATE%20KEY%2D%2D%2D%2D%2D%0AMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7', headers: [], body: '' })).toMatchObject({ detector: 'private-key', where: 'url' });
    expect(scanRequest(all, { url: 'http://h/', headers: [['x-data', 'AKIAQ3EGRE7TZLXVMK4P']], body: '' })).toMatchObject({ detector: 'aws-access-key', where: 'header' });
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

describe('the benign corpus passes with zero blocks', () => {
  // test/fixtures/dlp-benign: documentation naming key formats without a key, settings
  // with placeholders, source with password variables, a chat request, a PNG; plus real
  // files that look random: this repository's lockfile (integrity hashes) and minified JS.
  const everything = compileDetectors({ detectors: expandDetectors(['all']), custom: [] });
  const dir = join(ROOT, 'test', 'fixtures', 'dlp-benign');
  const png = readFileSync(join(dir, 'image.png'));
  const corpus: [string, string][] = [
    ...readdirSync(dir).filter((f) => !f.endsWith('.png')).map((f) => [f, readFileSync(join(dir, f), 'utf8')] as [string, string]),
    ['image.png as a base64 JSON upload', JSON.stringify({ name: 'image.png', data: png.toString('base64') })],
    ['image.png as a data: URL in HTML', `<img src="data:image/png;base64,${png.toString('base64')}">`],
    ['package-lock.json', readFileSync(join(ROOT, 'package-lock.json'), 'utf8')],
    ['protobuf.min.js', readFileSync(join(ROOT, 'node_modules', 'protobufjs', 'dist', 'protobuf.min.js'), 'utf8')],
    ['ajv source', readFileSync(join(ROOT, 'node_modules', 'ajv', 'dist', 'compile', 'index.js'), 'utf8')],
  ];
  it.each(corpus)('%s', (_name, text) => {
    expect(corpus.length).toBeGreaterThan(8);
    const r = scanRequest(everything, { url: 'http://h/upload', headers: [['content-type', 'application/json']], body: text });
    expect(r === undefined ? 'passed' : isUndecodable(r) ? `undecodable: ${r.undecodable}` : `${r.detector} via ${r.via.join('→')}: ${r.match.slice(0, 80)}`).toBe('passed');
  });
});

describe('regressions from generated secrets', () => {
  // Each a real format a first version missed (found by test/helpers/secrets.ts).
  it.each([
    ['private-key', `PRIVATE_KEY=MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvuNMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ`],
    ['private-key', '{"key": "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIDGqkUzqN8bWu3NnkS0H3HLGx6E0Cxo1b5Ny1uqjxVqN\\n-----END PRIVATE KEY-----"}'],
    ['payment-card', 'card 4111 1111 1111 1111 12/27'],
    ['payment-card', '4242424242424242|12|2027|123'],
    ['sendgrid', 'SENDGRID_API_KEY=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'],
    ['generic-secret', 'SECRET_KEY=9f8Kq2LmZx7Rt4Vb1Nc6Hs3Jd'],
    ['generic-secret', 'password: MyD0g!sRex2019'],
    ['database-connection-string', 'postgresql+psycopg2://app:Zq8rT2vLk9Xw@db.internal:5432/app'],
    ['basic-auth', 'http://admin:S3cr%40t!pass@jenkins:8080/'],
  ] as const)('%s: %s', (name, text) => {
    expect(BUILTIN[name].find(text)).toBeDefined();
  });
});

describe('from the attack review', () => {
  const everything = compileDetectors({ detectors: expandDetectors(['all']), custom: [] });
  const GH = 'ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6';
  const scan = (body: string) => det(scanRequest(everything, { url: 'http://h/x', headers: [], body }));

  it('base64 of bytes that are not text (a tar of credentials, a stray byte) is still scanned', () => {
    // Attack: `tar cf - ~/.config | base64`; defence: the printable runs of decoded bytes are a view.
    const tar = Buffer.concat([Buffer.from('config/token\x00\x00\x00\x00\x000000644\x00'), Buffer.alloc(100), Buffer.from(`GITHUB_TOKEN=${GH}\n`), Buffer.alloc(300)]);
    expect(scan(JSON.stringify({ f: tar.toString('base64') }))).toBe('github');
    expect(scan(Buffer.concat([Buffer.from(GH), Buffer.from([0xff])]).toString('base64'))).toBe('github');
  });

  it('compression nested deeper than agentbox unwraps, or a gzip bomb, is refused, not passed', () => {
    // Attack: gzip(gzip(gzip(secret))) or a small gzip that inflates past the bound; defence: unscannable.
    const g3 = gzipSync(gzipSync(gzipSync(gzipSync(Buffer.from(GH))))).toString('base64');
    expect(scan(g3)).toBe('undecodable');
    const bomb = gzipSync(Buffer.concat([Buffer.from(`token ${GH} `), Buffer.alloc(6 * 1024 * 1024, 0x20)])).toString('base64');
    expect(scan(bomb)).toBe('undecodable');
  });

  it('invisible tag characters spelling a token ("ASCII smuggling") are read', () => {
    const tags = [...GH].map((c) => String.fromCodePoint(0xe0000 + c.charCodeAt(0))).join('');
    expect(scan(`hello ${tags}`)).toBe('github');
  });

  it('a WebSocket message that ends the deflate stream does not blind the next one', async () => {
    // Attack: message 1 with BFINAL, message 2 with the secret; defence: a new inflater per stream.
    const frame = (p: Buffer) => {
      const head = p.length < 126 ? Buffer.from([0xc1, 0x80 | p.length]) : Buffer.from([0xc1, 0x80 | 126, p.length >> 8, p.length & 0xff]);
      return Buffer.concat([head, Buffer.alloc(4), p]);
    };
    const refused = await new Promise<string | undefined>((resolve) => {
      const s = new FrameScanner({
        deflate: true,
        maxMessage: 1 << 20,
        scan: (p) => scanRequest(everything, { url: '', headers: [], body: p.toString('utf8'), where: 'frame' }),
        forward: () => undefined,
        refuse: (w) => resolve(w.hit && !isUndecodable(w.hit) ? w.hit.detector : w.reason),
      });
      s.push(frame(deflateRawSync(Buffer.from('hello'), { finishFlush: constants.Z_FINISH })));
      s.push(frame(deflateRawSync(Buffer.from(`token ${GH}`))));
      setTimeout(() => resolve(undefined), 1000);
    });
    expect(refused).toBe('github');
  });

  it('seed-phrase checksums agree with bip39 on generated and random word runs', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.array(fc.integer({ min: 0, max: 2047 }), { minLength: 12, maxLength: 12 }), (ent, idx) => {
        const valid = entropyToMnemonic(Buffer.from(ent).toString('hex'));
        expect(BUILTIN['seed-phrase'].find(`my words: ${valid}`)).toBe(valid);
        const random = idx.map((i) => wordlists.english![i]).join(' ');
        expect(BUILTIN['seed-phrase'].find(random) !== undefined).toBe(validateMnemonic(random));
      }),
      { numRuns: 300 },
    );
  });
});

describe('a PuTTY key with its line breaks flattened (as in a header value) is a key', () => {
  // Found by the through-proxy property test: headers cannot hold newlines, so an agent flattens them.
  it('caught', () => {
    const k = 'PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: a@b\nPublic-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIDtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGL\nWdop\nPrivate-Lines: 1\nAAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n';
    expect(BUILTIN['private-key'].find(k.replace(/\n/g, ' '))).toBeDefined();
    expect(BUILTIN['private-key'].find(k)).toBeDefined();
  });
});
