// The loopback servers bench/egress measures against: HTTPS (a test CA written to DIR/ca.pem) and plain HTTP.
// /big streams SIZE zero bytes, POST/PUT bodies are read and dropped, anything else answers "ok".
// Usage: node bench/egress-server.mjs DIR SIZE  (writes "TLSPORT PLAINPORT" to DIR/ports)
const SIZE = Number(process.argv[3]);
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer as https } from 'node:https';
import { createServer as http } from 'node:http';
x509.cryptoProvider.set(webcrypto);
const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const caKeys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
const ca = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: '01', name: 'CN=bench internet', notBefore: new Date(Date.now() - 864e5), notAfter: new Date(Date.now() + 864e5), keys: caKeys, signingAlgorithm: alg, extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)] });
const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
const leaf = await x509.X509CertificateGenerator.create({ serialNumber: '02', subject: 'CN=127.0.0.1', issuer: ca.subject, notBefore: new Date(Date.now() - 864e5), notAfter: new Date(Date.now() + 864e5), publicKey: keys.publicKey, signingKey: caKeys.privateKey, signingAlgorithm: alg, extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }])] });
writeFileSync(process.argv[2] + '/ca.pem', ca.toString('pem'), { mode: 0o644 });
const zero = Buffer.alloc(1 << 20);
const handler = (req, res) => {
  if (req.method === 'POST' || req.method === 'PUT') { let n = 0; req.on('data', (c) => (n += c.length)); req.on('end', () => res.end(String(n))); return; }
  if (req.url === '/big') {
    res.writeHead(200, { 'content-length': String(SIZE) });
    let left = SIZE;
    const more = () => { while (left > 0) { const n = Math.min(left, zero.length); left -= n; if (!res.write(n === zero.length ? zero : zero.subarray(0, n))) return void res.once('drain', more); } res.end(); };
    return more();
  }
  res.end('ok');
};
const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
const s1 = https({ key, cert: leaf.toString('pem') }, handler).listen(0, '127.0.0.1');
const s2 = http(handler).listen(0, '127.0.0.1');
await Promise.all([s1, s2].map((s) => new Promise((r) => s.on('listening', r))));
writeFileSync(process.argv[2] + '/ports', s1.address().port + ' ' + s2.address().port);
setInterval(() => {}, 1 << 30);
