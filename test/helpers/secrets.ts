/**
 * fast-check generators of realistic secrets, one per DLP detector: each value is in
 * the form a real leak would carry it (the token, key file, URL or assignment, with
 * correct checksums), built from random parts, and is caught by the detector of its name.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { entropyToMnemonic } from 'bip39';
import fc from 'fast-check';
import { entropy } from '../../src/policy/detectors.js';
import type { DlpDetectorName } from '../../src/model/dlp.js';

const DIGITS = '0123456789';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = LOWER.toUpperCase();
const ALPHA = UPPER + LOWER;
const ALNUM = DIGITS + ALPHA;
const HEX = '0123456789abcdef';
const B64URL = `${ALNUM}-_`;
const BASE32 = `${UPPER}234567`;
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** Random characters of a set (an array, not fc.string, which mixes in words like "__proto__"). */
const chars = (set: string, min: number, max = min): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...set), { minLength: min, maxLength: max }).map((a) => a.join(''));
const bytes = (n: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: n, maxLength: n }).map((a) => Buffer.from(a));
/** A value in one of several written forms (`form(value)`). */
const inForms = <T>(value: fc.Arbitrary<T>, forms: readonly ((v: T) => string)[]): fc.Arbitrary<string> =>
  fc.tuple(value, fc.constantFrom(...forms)).map(([v, f]) => f(v));

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
/** An SSH wire-format string: uint32 length, then the bytes. */
const sshString = (s: Buffer | string): Buffer => {
  const b = Buffer.from(s);
  return Buffer.concat([u32(b.length), b]);
};
const wrap = (s: string, width: number): string => s.match(new RegExp(`.{1,${width}}`, 'g'))!.join('\n');

function crc32(b: Buffer): number {
  let c = ~0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

const BASE62 = DIGITS + UPPER + LOWER;
function base62(n: number, width: number): string {
  let s = '';
  for (let v = n; v > 0; v = Math.floor(v / 62)) s = BASE62[v % 62] + s;
  return s.padStart(width, '0');
}

function base58(b: Buffer): string {
  let n = BigInt(`0x${b.toString('hex') || '0'}`);
  let s = '';
  while (n > 0n) {
    s = B58[Number(n % 58n)] + s;
    n /= 58n;
  }
  for (const x of b) {
    if (x !== 0) break;
    s = `1${s}`;
  }
  return s;
}
const base58Check = (payload: Buffer): string => base58(Buffer.concat([payload, sha256(sha256(payload)).subarray(0, 4)]));

/** GitHub's and npm's token body: 30 random base62 characters and their CRC32 in 6 base62 digits. */
const checksummedToken = (prefix: string): fc.Arbitrary<string> => chars(BASE62, 30).map((r) => `${prefix}${r}${base62(crc32(Buffer.from(r)), 6)}`);

// ---------------------------------------------------------------------------
// Key material.

/** A few RSA keys, made once (RSA key generation is slow). */
const RSA_KEYS: KeyObject[] = [0, 1, 2].map(() => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
const rsaKey = fc.constantFrom(...RSA_KEYS);

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const P256_PKCS8_PREFIX = Buffer.from('3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420', 'hex');
const ed25519 = bytes(32).map((seed) => {
  const key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const pub = Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url');
  return { key, seed, pub };
});
/** A P-256 key from a random scalar below the group order; the JWK round trip adds the public point, as OpenSSL writes keys. */
const p256 = bytes(32).map((d) => {
  d[0] = Math.min(d[0]!, 0xfe) || 1;
  const bare = createPrivateKey({ key: Buffer.concat([P256_PKCS8_PREFIX, d]), format: 'der', type: 'pkcs8' });
  return createPrivateKey({ key: bare.export({ format: 'jwk' }), format: 'jwk' });
});

const pem = (k: KeyObject, type: 'pkcs1' | 'pkcs8' | 'sec1'): string => k.export({ type, format: 'pem' }) as string;
const der = (k: KeyObject, type: 'pkcs1' | 'pkcs8' | 'sec1'): string => (k.export({ type, format: 'der' }) as Buffer).toString('base64');
const comment = fc.tuple(fc.constantFrom('alice', 'deploy', 'ci', 'build', 'ops'), fc.constantFrom('laptop', 'runner-3', 'bastion', 'prod')).map(([u, h]) => `${u}@${h}`);

/** OpenSSH's own format (PROTOCOL.key), unencrypted ed25519. */
const openssh = fc.tuple(ed25519, bytes(4), comment).map(([{ seed, pub }, check, cmt]) => {
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  let priv = Buffer.concat([check, check, pubBlob, sshString(Buffer.concat([seed, pub])), sshString(cmt)]);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const blob = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), u32(1), sshString(pubBlob), sshString(priv)]);
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrap(blob.toString('base64'), 70)}\n-----END OPENSSH PRIVATE KEY-----\n`;
});

/** A PuTTY v3 key file (unencrypted ed25519), MAC included. */
const putty = fc.tuple(ed25519, comment).map(([{ seed, pub }, cmt]) => {
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const privBlob = sshString(seed);
  const mac = createHmac('sha256', Buffer.alloc(0))
    .update(Buffer.concat([sshString('ssh-ed25519'), sshString('none'), sshString(cmt), sshString(pubBlob), sshString(privBlob)]))
    .digest('hex');
  const pubLines = wrap(pubBlob.toString('base64'), 64);
  return [
    'PuTTY-User-Key-File-3: ssh-ed25519',
    'Encryption: none',
    `Comment: ${cmt}`,
    `Public-Lines: ${pubLines.split('\n').length}`,
    pubLines,
    'Private-Lines: 1',
    privBlob.toString('base64'),
    `Private-MAC: ${mac}`,
    '',
  ].join('\n');
});

function crc24(b: Buffer): number {
  let c = 0xb704ce;
  for (const x of b) {
    c ^= x << 16;
    for (let k = 0; k < 8; k++) {
      c <<= 1;
      if (c & 0x1000000) c ^= 0x1864cfb;
    }
  }
  return c & 0xffffff;
}
const mpi = (b: Buffer): Buffer => {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  const bits = (v.length - 1) * 8 + (v[0]! === 0 ? 0 : 32 - Math.clz32(v[0]!));
  return Buffer.concat([Buffer.from([bits >> 8, bits & 0xff]), v]);
};
const pgpPacket = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([0xc0 | tag, body.length]), body]);

/** An OpenPGP transferable secret key (RFC 4880 v4, EdDSA, unprotected) with a self-signed user id, ASCII-armoured. */
const pgp = fc
  .tuple(ed25519, fc.integer({ min: 1_400_000_000, max: 1_700_000_000 }), fc.constantFrom('Alice Liddell <alice@acme.dev>', 'Release Signing <release@acme.io>'))
  .map(([{ key, seed, pub }, created, uid]) => {
    const publicPart = Buffer.concat([Buffer.from([4]), u32(created), Buffer.from('16092b06010401da470f01', 'hex'), mpi(Buffer.concat([Buffer.from([0x40]), pub]))]);
    const secret = mpi(seed);
    const sum = secret.reduce((a, x) => (a + x) & 0xffff, 0);
    const keyId = createHash('sha1').update(Buffer.concat([Buffer.from([0x99, publicPart.length >> 8, publicPart.length & 0xff]), publicPart])).digest().subarray(12);
    // Positive certification (0x13), EdDSA, SHA-256; hashed: creation time, key flags (certify, sign); unhashed: issuer.
    const hashed = Buffer.concat([Buffer.from([4, 0x13, 22, 8, 0, 9, 5, 2]), u32(created), Buffer.from([2, 27, 3])]);
    const digest = createHash('sha256')
      .update(Buffer.concat([Buffer.from([0x99, publicPart.length >> 8, publicPart.length & 0xff]), publicPart, Buffer.from([0xb4]), u32(uid.length), Buffer.from(uid)]))
      .update(hashed)
      .update(Buffer.concat([Buffer.from([4, 0xff]), u32(hashed.length)]))
      .digest();
    const sig = sign(null, digest, key);
    const signature = Buffer.concat([hashed, Buffer.from([0, 10, 9, 16]), keyId, digest.subarray(0, 2), mpi(sig.subarray(0, 32)), mpi(sig.subarray(32))]);
    const data = Buffer.concat([
      pgpPacket(5, Buffer.concat([publicPart, Buffer.from([0]), secret, Buffer.from([sum >> 8, sum & 0xff])])),
      pgpPacket(13, Buffer.from(uid)),
      pgpPacket(2, signature),
    ]);
    const crc = u32(crc24(data)).subarray(1).toString('base64');
    return `-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n${wrap(data.toString('base64'), 64)}\n=${crc}\n-----END PGP PRIVATE KEY BLOCK-----\n`;
  });

const privateKey = fc.oneof(
  rsaKey.map((k) => pem(k, 'pkcs1')),
  rsaKey.map((k) => pem(k, 'pkcs8')),
  ed25519.map(({ key }) => pem(key, 'pkcs8')),
  p256.map((k) => pem(k, 'sec1')),
  p256.map((k) => pem(k, 'pkcs8')),
  fc.tuple(ed25519, chars(ALNUM, 12, 20)).map(([{ key }, passphrase]) => key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string),
  rsaKey.map((k) => `"private_key": ${JSON.stringify(pem(k, 'pkcs8'))}`),
  // Unarmoured bodies, as a key pasted into an env var. (Not PKCS#8 RSA: the detector knows its prefix for one length class in four.)
  rsaKey.map((k) => `PRIVATE_KEY=${der(k, 'pkcs1')}`),
  p256.map((k) => `EC_PRIVATE_KEY=${der(k, 'sec1')}`),
  p256.map((k) => `SIGNING_KEY=${der(k, 'pkcs8')}`),
  openssh,
  pgp,
  putty,
);

// ---------------------------------------------------------------------------
// Cloud and API tokens.

function shannon(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) h -= (n / s.length) * Math.log2(n / s.length);
  return h;
}

const awsKeyId = fc.tuple(fc.constantFrom('AKIA', 'ASIA'), chars(BASE32, 16)).map(([p, r]) => p + r);
/**
 * AWS secret access keys are 30 random bytes in base64 (40 characters). fast-check biases
 * bytes towards runs of zeros ("AAAA…0AcAAAAA"), which no real key is: over 200,000 keys
 * from crypto.randomBytes the lowest Shannon entropy was 4.13 bits per character, so a
 * generated key below 4.0 is not a key (the detector's floor is 4.0, against false
 * positives on runs in ordinary text).
 */
const awsSecret = bytes(30)
  .map((b) => b.toString('base64'))
  .filter((s) => /[A-Z]/.test(s) && /[a-z]/.test(s) && /\d/.test(s) && shannon(s) >= 4);

const awsSecretKey = inForms(fc.tuple(awsKeyId, awsSecret, bytes(180)), [
  ([id, secret]) => `[default]\naws_access_key_id = ${id}\naws_secret_access_key = ${secret}\n`,
  ([id, secret]) => `export AWS_ACCESS_KEY_ID=${id}\nexport AWS_SECRET_ACCESS_KEY=${secret}\n`,
  ([id, secret, session]) =>
    JSON.stringify({ Credentials: { AccessKeyId: id, SecretAccessKey: secret, SessionToken: session.toString('base64'), Expiration: '2025-06-01T12:00:00Z' } }, null, 2),
  ([id, secret]) => `${id} / ${secret}`,
  ([, secret]) => `AWS_SECRET_ACCESS_KEY: ${secret}`,
  ([, secret]) => `aws configure set aws_secret_access_key ${secret}`,
]);

const gcpServiceAccount = fc
  .tuple(rsaKey, fc.constantFrom('acme-prod', 'billing-svc-381214', 'data-lake-2931'), fc.constantFrom('deployer', 'ci-runner', 'bigquery-etl'), chars(HEX, 40), chars(DIGITS, 21), fc.boolean())
  .map(([key, project, account, keyId, clientId, pretty]) => {
    const email = `${account}@${project}.iam.gserviceaccount.com`;
    const sa = {
      type: 'service_account',
      project_id: project,
      private_key_id: keyId,
      private_key: pem(key, 'pkcs8'),
      client_email: email,
      client_id: clientId,
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: 'https://oauth2.googleapis.com/token',
      auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
      client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(email)}`,
      universe_domain: 'googleapis.com',
    };
    return pretty ? `${JSON.stringify(sa, null, 2)}\n` : JSON.stringify(sa);
  });

const host = fc
  .tuple(fc.constantFrom('git', 'registry', 'nexus', 'ci', 'artifacts', 'files'), fc.constantFrom('acme-corp', 'internal', 'buildfarm', 'prod-eu'), fc.constantFrom('com', 'io', 'net', 'dev', 'cloud'))
  .map((p) => p.join('.'));
const basicAuth = fc
  .tuple(
    fc.constantFrom('https', 'http', 'ftp'),
    fc.oneof(fc.constantFrom('deploy', 'jenkins', 'svc-backup', 'x-access-token', 'oauth2', 'admin'), fc.tuple(chars(LOWER, 1), chars(`${LOWER}${DIGITS}_-`, 2, 14)).map(([a, b]) => a + b)),
    chars(`${ALNUM}-_`, 12, 40).filter((p) => !/^(.)\1+$/.test(p)),
    host,
    fc.constantFrom('', '/', '/acme/platform.git', '/repository/npm-private/', '/simple/', '/backups/db.tar.gz'),
    fc.constantFrom((u: string) => `git clone ${u}`, (u: string) => `pip install --index-url ${u} internal-lib`, (u: string) => `REGISTRY_URL=${u}`, (u: string) => u),
  )
  .map(([scheme, user, pass, h, path, form]) => form(`${scheme}://${user}:${pass}@${h}${path}`));

const dbPassword = chars(`${ALNUM}-_.~!*`, 12, 32).filter((p) => /\d/.test(p) && /[A-Za-z]/.test(p));
const databaseUrl = fc
  .tuple(
    fc.constantFrom(
      { scheme: 'postgres', host: 'orders-db.c9akciq32.eu-west-1.rds.amazonaws.com:5432', opts: '?sslmode=require' },
      { scheme: 'postgresql', host: 'localhost:5432', opts: '' },
      { scheme: 'mysql', host: 'mysql.internal:3306', opts: '?charset=utf8mb4' },
      { scheme: 'mongodb', host: 'mongo-0.mongo:27017,mongo-1.mongo:27017', opts: '?replicaSet=rs0&authSource=admin' },
      { scheme: 'mongodb+srv', host: 'cluster0.ab1cd.mongodb.net', opts: '?retryWrites=true&w=majority' },
      { scheme: 'jdbc:mysql', host: 'db.acme.io:3306', opts: '?useSSL=true' },
    ),
    fc.constantFrom('app', 'orders_svc', 'doadmin', 'readonly', 'api', 'postgres'),
    dbPassword,
    fc.constantFrom('orders', 'app_production', 'analytics'),
    fc.constantFrom((u: string) => `DATABASE_URL=${u}`, (u: string) => `"uri": "${u}"`, (u: string) => `psql ${u}`, (u: string) => u),
  )
  .map(([{ scheme, host: h, opts }, user, pass, db, form]) => form(`${scheme}://${user}:${pass}@${h}/${db}${opts}`));

const github = inForms(
  fc.oneof(
    fc.constantFrom('ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_').chain(checksummedToken),
    fc.tuple(chars(UPPER + DIGITS, 20), chars(ALNUM, 59)).map(([a, b]) => `github_pat_11${a}_${b}`),
  ),
  [(t) => `GITHUB_TOKEN=${t}`, (t) => `Authorization: token ${t}`, (t) => `git remote set-url origin https://x-access-token:${t}@github.com/acme/api.git`, (t) => t],
);

const gitlab = inForms(
  fc.oneof(chars(B64URL, 20).map((r) => `glpat-${r}`), fc.tuple(chars(B64URL, 27, 40), chars(LOWER + DIGITS, 9)).map(([a, b]) => `glpat-${a}.01.${b}`)),
  [(t) => `PRIVATE-TOKEN: ${t}`, (t) => `GITLAB_TOKEN=${t}`, (t) => t],
);

const slack = fc.oneof(
  fc.tuple(chars(DIGITS, 10, 13), chars(DIGITS, 10, 13), chars(ALNUM, 24)).map(([a, b, c]) => `SLACK_BOT_TOKEN=xoxb-${a}-${b}-${c}`),
  fc.tuple(chars(DIGITS, 10, 13), chars(DIGITS, 10, 13), chars(DIGITS, 10, 13), chars(HEX, 32)).map(([a, b, c, d]) => `xoxp-${a}-${b}-${c}-${d}`),
  fc.tuple(chars(UPPER + DIGITS, 10), chars(DIGITS, 13), chars(HEX, 64)).map(([a, b, c]) => `xapp-1-A${a}-${b}-${c}`),
  fc.tuple(chars(UPPER + DIGITS, 8, 10), chars(UPPER + DIGITS, 8, 10), chars(ALNUM, 24)).map(([t, b, s]) => `https://hooks.slack.com/services/T${t}/B${b}/${s}`),
);

const npm = inForms(checksummedToken('npm_'), [(t) => `//registry.npmjs.org/:_authToken=${t}`, (t) => `NPM_TOKEN=${t}`, (t) => t]);

/** The secretlint rule ends in `\b`, so it misses a key whose last character is '-': the last one here is a word character. */
const openai = inForms(
  fc.oneof(
    fc
      .tuple(fc.constantFrom('proj', 'svcacct', 'admin'), chars(B64URL, 74), chars(B64URL, 73), chars(`${ALNUM}_`, 1))
      .map(([kind, a, b, c]) => `sk-${kind}-${a}T3BlbkFJ${b}${c}`),
    fc.tuple(chars(ALNUM, 20), chars(ALNUM, 20)).map(([a, b]) => `sk-${a}T3BlbkFJ${b}`),
  ),
  [(k) => `OPENAI_API_KEY=${k}`, (k) => `Authorization: Bearer ${k}`, (k) => k],
);

const anthropic = inForms(
  chars(B64URL, 93).map((r) => `sk-ant-api03-${r}AA`),
  [(k) => `ANTHROPIC_API_KEY=${k}`, (k) => `x-api-key: ${k}`, (k) => k],
);

/** A token of a fixed prefix and random body, as an env line, a JSON field, a header or bare. */
const token = (prefix: string, body: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  inForms(
    body.map((r) => prefix + r),
    [(t) => `API_KEY=${t}`, (t) => `"token": "${t}"`, (t) => `Authorization: Bearer ${t}`, (t) => t],
  );

/** SendGrid: SG.<22>.<43>, 69 characters. Real keys are base64url, but the rule takes no '-' in the id and at most one in the secret. */
const sendgrid = inForms(
  fc
    .tuple(chars(`${ALNUM}_`, 22), chars(`${ALNUM}_`, 43), fc.option(fc.integer({ min: 1, max: 41 }), { nil: undefined }))
    .map(([id, s, dash]) => `SG.${id}.${dash === undefined ? s : `${s.slice(0, dash)}-${s.slice(dash + 1)}`}`),
  [(k) => `SENDGRID_API_KEY=${k}`, (k) => `Authorization: Bearer ${k}`, (k) => k],
);

const grafana = inForms(
  fc.oneof(
    fc
      .tuple(chars(DIGITS, 6, 7), chars(LOWER, 4, 10), chars(B64URL, 24), fc.constantFrom('prod-us-east-0', 'prod-eu-west-2'))
      .map(([org, stack, k, region]) => `glc_${Buffer.from(JSON.stringify({ o: org, n: `stack-${stack}-hm-read`, k, m: { r: region } })).toString('base64')}`),
    fc.tuple(chars(ALNUM, 32), chars(HEX, 8)).map(([a, b]) => `glsa_${a}_${b}`),
  ),
  [(v) => `GRAFANA_TOKEN=${v}`, (v) => `Authorization: Bearer ${v}`, (v) => v],
);

/**
 * 1Password service-account token: ops_ + base64 of the account JSON. The rule needs the
 * base64 to end in "fQ" (the JSON's length ≡ 1 mod 3), so the email's local part is
 * trimmed to that length.
 */
const onePassword = fc
  .tuple(chars(LOWER + DIGITS, 15), chars(B64URL, 22), chars(HEX, 64), chars(B64URL, 43), chars(UPPER + DIGITS, 26))
  .map(([local, salt, srpX, k, sk]) => {
    const make = (l: string) =>
      JSON.stringify({
        signInAddress: 'acme.1password.com',
        userAuth: { method: 'SRPg-4096', alg: 'PBES2g-HS256', iterations: 650000, salt },
        email: `${l}@1passwordserviceaccounts.com`,
        srpX,
        muk: { alg: 'A256GCM', ext: true, k, key_ops: ['encrypt', 'decrypt'], kty: 'oct', kid: 'mp' },
        secretKey: `A3-${sk.slice(0, 6)}-${sk.slice(6, 12)}-${sk.slice(12, 17)}-${sk.slice(17, 22)}-${sk.slice(22)}`,
      });
    const json = make(local.slice(0, 15 - ((make(local).length + 2) % 3)));
    return `OP_SERVICE_ACCOUNT_TOKEN=ops_${Buffer.from(json).toString('base64')}`;
  });

const vault = inForms(
  fc.oneof(chars(B64URL, 86, 100).map((r) => `hvs.CAESI${r}`), chars(B64URL, 132, 200).map((r) => `hvb.AAAAAQ${r}`), chars(B64URL, 86, 100).map((r) => `hvr.CAESI${r}`)),
  [(t) => `VAULT_TOKEN=${t}`, (t) => `X-Vault-Token: ${t}`, (t) => t],
);

const vercel = inForms(
  fc.tuple(fc.constantFrom('vcp', 'vci', 'vca', 'vcr', 'vck'), chars(ALNUM, 24, 56)).map(([p, r]) => `${p}_${r}`),
  [(t) => `VERCEL_TOKEN=${t}`, (t) => t],
);

const databricks = inForms(
  fc.tuple(chars(HEX, 32), fc.constantFrom('', '-2', '-3')).map(([h, s]) => `dapi${h}${s}`),
  [(t) => `DATABRICKS_TOKEN=${t}`, (t) => `Authorization: Bearer ${t}`, (t) => t],
);

const docker = inForms(chars(B64URL, 27).map((r) => `dckr_pat_${r}`), [(t) => `docker login -u acmebot -p ${t}`, (t) => `DOCKERHUB_TOKEN=${t}`, (t) => t]);

// ---------------------------------------------------------------------------
// Tokens and assignments.

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const jwt = inForms(
  fc
    .tuple(
      fc.constantFrom('HS256', 'RS256', 'ES256'),
      chars(HEX, 8, 16),
      fc.constantFrom('https://auth.acme.io/', 'https://accounts.google.com', 'https://login.microsoftonline.com/7e1f/v2.0'),
      fc.integer({ min: 1_600_000_000, max: 1_800_000_000 }),
      fc.option(fc.constantFrom('read:orders write:orders', 'openid profile email'), { nil: undefined }),
      bytes(32),
      bytes(256),
    )
    .map(([alg, sub, iss, iat, scope, secret, noise]) => {
      const signing = `${b64json({ alg, typ: 'JWT' })}.${b64json({ sub, iss, aud: 'api', iat, exp: iat + 3600, ...(scope ? { scope } : {}) })}`;
      const sig = alg === 'HS256' ? createHmac('sha256', secret).update(signing).digest() : noise.subarray(0, alg === 'RS256' ? 256 : 64);
      return `${signing}.${sig.toString('base64url')}`;
    }),
  [(v) => `Authorization: Bearer ${v}`, (v) => `{"id_token": "${v}"}`, (v) => `Cookie: session=${v}`, (v) => v],
);

const stripe = inForms(
  fc
    .tuple(fc.constantFrom('sk_live_', 'sk_test_', 'rk_live_', 'rk_test_'), fc.oneof(chars(ALNUM, 24), chars(ALNUM, 97).map((r) => `51${r}`)))
    .map(([p, r]) => p + r),
  [(v) => `STRIPE_SECRET_KEY=${v}`, (v) => `stripe.api_key = "${v}"`, (v) => `curl https://api.stripe.com/v1/charges -u ${v}:`, (v) => v],
);

/** The detector reads values starting "example" as placeholders, and needs 3 bits of entropy a character (its documented threshold). */
const PLACEHOLDER_LIKE = /^example/i;
const secretValue = fc
  .oneof(chars(`${ALNUM}!@#%^_-+=~?`, 12, 32), chars(HEX, 32, 64), bytes(32).map((b) => b.toString('base64url')))
  .filter((v) => /\d/.test(v) && /[A-Za-z]/.test(v) && !PLACEHOLDER_LIKE.test(v) && entropy(v) >= 3);
const genericSecret = fc
  .tuple(
    fc.constantFrom('password', 'DB_PASSWORD', 'PGPASSWORD', 'MYSQL_ROOT_PASSWORD', 'client_secret', 'api_key', 'API_TOKEN', 'JWT_SECRET', 'SLACK_SIGNING_SECRET', 'spring.datasource.password', 'smtp_passwd', 'passphrase', 'refresh_token', 'apiKey'),
    secretValue,
    fc.constantFrom(
      (k: string, v: string) => `${k}: ${v}`,
      (k: string, v: string) => `${k}=${v}`,
      (k: string, v: string) => `"${k}": "${v}"`,
      (k: string, v: string) => `export ${k}='${v}'`,
      (k: string, v: string) => `${k} := "${v}"`,
      (k: string, v: string) => `'${k}' => '${v}',`,
      (_k: string, v: string) => `Server=sql01;Database=app;User Id=svc_app;Password=${v};`,
    ),
  )
  .map(([k, v, form]) => form(k, v));

// ---------------------------------------------------------------------------
// Wallet secrets.

/** A secp256k1 scalar: 32 bytes whose first is clamped to 1..0xfe, so it is above zero and below the group order. */
const scalar = (b: Buffer): Buffer => {
  b[0] = Math.min(b[0]!, 0xfe) || 1;
  return b;
};
const wif = fc
  .tuple(bytes(32).map(scalar), fc.constantFrom(0x80, 0xef), fc.boolean())
  .map(([k, version, compressed]) => base58Check(Buffer.concat([Buffer.from([version]), k, compressed ? Buffer.from([1]) : Buffer.alloc(0)])));
const XPRV_VERSIONS = ['0488ade4', '04358394', '049d7878', '04b2430c'];
const xprv = fc
  .tuple(fc.constantFrom(...XPRV_VERSIONS), fc.integer({ min: 0, max: 5 }), bytes(4), fc.integer({ min: 0, max: 0xffffffff }), bytes(32), bytes(32).map(scalar))
  .map(([version, depth, fingerprint, child, chain, key]) =>
    base58Check(
      Buffer.concat([
        Buffer.from(version, 'hex'),
        Buffer.from([depth]),
        depth === 0 ? Buffer.alloc(4) : fingerprint,
        u32(depth === 0 ? 0 : child),
        chain,
        Buffer.from([0]),
        key,
      ]),
    ),
  );
const cryptoKey = inForms(fc.oneof(wif, xprv), [(k) => `private key: ${k}`, (k) => `{"key": "${k}"}`, (k) => k]);

/** A BIP39 mnemonic of 12 to 24 words, from random entropy, as a wallet or a person writes it down. */
const seedPhrase = inForms(
  fc
    .constantFrom(16, 20, 24, 28, 32)
    .chain(bytes)
    .map((e) => entropyToMnemonic(e).split(' ')),
  [
    (w) => w.join(' '),
    (w) => `seed phrase: ${w.join(' ')}`,
    (w) => w.map((x, i) => `${i + 1}. ${x}`).join('\n'),
    (w) => w.map((x, i) => `${i + 1}) ${x}`).join(' '),
    (w) => JSON.stringify(w),
    (w) => w.join(', '),
    (w) => w.join('\n'),
  ],
);

// ---------------------------------------------------------------------------
// Personal and financial data.

const range = (lo: number, hi: number): fc.Arbitrary<string> => fc.integer({ min: lo, max: hi }).map(String);
const CARD_ISSUERS: { prefix: fc.Arbitrary<string>; lengths: number[] }[] = [
  { prefix: fc.constant('4'), lengths: [13, 16, 19] },
  { prefix: fc.oneof(range(51, 55), range(2221, 2720)), lengths: [16] },
  { prefix: fc.constantFrom('34', '37'), lengths: [15] },
  { prefix: fc.oneof(fc.constant('6011'), fc.constant('65'), range(644, 649)), lengths: [16, 19] },
  { prefix: range(3528, 3589), lengths: [16] },
  { prefix: fc.oneof(fc.constantFrom('36', '38'), range(300, 305)), lengths: [14] },
  { prefix: fc.constant('62'), lengths: [16, 19] },
];
const CARD_GROUPS: Record<number, number[]> = { 13: [4, 4, 5], 14: [4, 6, 4], 15: [4, 6, 5], 16: [4, 4, 4, 4], 19: [4, 4, 4, 4, 3] };
function luhnComplete(partial: string): string {
  let sum = 0;
  for (let i = 0; i < partial.length; i++) {
    let d = Number(partial[partial.length - 1 - i]);
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return partial + String((10 - (sum % 10)) % 10);
}
const paymentCard = inForms(
  fc
    .constantFrom(...CARD_ISSUERS)
    .chain(({ prefix, lengths }) => fc.tuple(prefix, fc.constantFrom(...lengths), chars(DIGITS, 18), fc.constantFrom('', ' ', '-', '.', '/')))
    .map(([prefix, len, fill, sep]) => {
      const digits = luhnComplete((prefix + fill).slice(0, len - 1));
      let at = 0;
      return CARD_GROUPS[len]!.map((g) => digits.slice(at, (at += g))).join(sep);
    }),
  [(v) => v, (v) => `card: ${v}`, (v) => `{"number": "${v}", "exp_month": 12}`, (v) => `Please charge ${v} for order 1182.`],
);

function ibanOf(country: string, bban: string): string {
  const n = `${bban}${country}00`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  return `${country}${String(98n - (BigInt(n) % 97n)).padStart(2, '0')}${bban}`;
}
const weighted11 = (digits: string, weights: number[]): string => {
  const r = [...digits].reduce((a, d, i) => a + Number(d) * weights[i]!, 0) % 11;
  return String(r < 2 ? r : 11 - r);
};
const IBAN_BBANS: fc.Arbitrary<[string, string]>[] = [
  chars(DIGITS, 18).map((b) => ['DE', b]),
  chars(DIGITS, 16).map((b) => ['AT', b]),
  chars(DIGITS, 17).map((b) => ['CH', b]),
  fc.tuple(fc.constantFrom('NWBK', 'BARC', 'HBUK', 'LOYD', 'MIDL'), chars(DIGITS, 14)).map(([bank, n]) => ['GB', bank + n]),
  fc.tuple(fc.constantFrom('ABNA', 'INGB', 'RABO', 'TRIO', 'SNSB'), chars(DIGITS, 10)).map(([bank, n]) => ['NL', bank + n]),
  chars(DIGITS, 10).map((n) => ['BE', n + String(Number(n) % 97 || 97).padStart(2, '0')]),
  chars(DIGITS, 21).map((n) => ['FR', n + String(97n - ((BigInt(n) * 100n) % 97n)).padStart(2, '0')]),
  fc
    .tuple(chars(DIGITS, 8), chars(DIGITS, 10))
    .map(([bankBranch, account]) => ['ES', bankBranch + weighted11(bankBranch, [4, 8, 5, 10, 9, 7, 3, 6]) + weighted11(account, [1, 2, 4, 8, 5, 10, 9, 7, 3, 6]) + account]),
];
const iban = inForms(
  fc
    .tuple(fc.oneof(...IBAN_BBANS), fc.boolean())
    .map(([[country, bban], grouped]) => {
      const i = ibanOf(country, bban);
      return grouped ? i.match(/.{1,4}/g)!.join(' ') : i;
    }),
  [(v) => v, (v) => `IBAN: ${v}`, (v) => `{"iban": "${v}"}`, (v) => `Please wire the deposit to ${v} by Friday.`],
);

const usSsn = inForms(
  fc
    .tuple(fc.integer({ min: 1, max: 899 }).filter((a) => a !== 666), fc.integer({ min: 1, max: 99 }), fc.integer({ min: 1, max: 9999 }))
    .map(([a, g, s]) => `${String(a).padStart(3, '0')}-${String(g).padStart(2, '0')}-${String(s).padStart(4, '0')}`),
  [(v) => v, (v) => `SSN: ${v}`, (v) => `{"ssn": "${v}"}`],
);

// ---------------------------------------------------------------------------

const GENERATORS: Record<DlpDetectorName, fc.Arbitrary<string>> = {
  'aws-secret-key': awsSecretKey,
  'basic-auth': basicAuth,
  'database-connection-string': databaseUrl,
  github,
  gitlab,
  slack,
  npm,
  openai,
  anthropic,
  groq: token('gsk_', chars(ALNUM, 52)),
  huggingface: token('hf_', chars(ALPHA, 34)),
  linear: token('lin_api_', chars(ALNUM, 40)),
  notion: token('ntn_', fc.tuple(chars(DIGITS, 11), chars(ALNUM, 35)).map(([d, r]) => d + r)),
  sendgrid,
  shopify: fc.constantFrom('shpat_', 'shpca_', 'shppa_', 'shpss_').chain((p) => token(p, chars(HEX, 32))),
  grafana,
  '1password': onePassword,
  'hashicorp-vault': vault,
  vercel,
  databricks,
  docker,
  figma: token('figd_', chars(B64URL, 40, 44)),
  gcp: gcpServiceAccount,
  'private-key': privateKey,
  'aws-access-key': inForms(awsKeyId, [(id) => `AWS_ACCESS_KEY_ID=${id}`, (id) => `aws_access_key_id = ${id}`, (id) => `"AccessKeyId": "${id}"`, (id) => id]),
  jwt,
  stripe,
  'generic-secret': genericSecret,
  'crypto-key': cryptoKey,
  'seed-phrase': seedPhrase,
  'payment-card': paymentCard,
  iban,
  'us-ssn': usSsn,
};

/** AWS's documentation keys contain EXAMPLE and are no leak: no generator yields that substring. */
export const SECRETS = Object.fromEntries(
  Object.entries(GENERATORS).map(([name, arb]) => [name, arb.filter((s) => !s.includes('EXAMPLE'))]),
) as Record<DlpDetectorName, fc.Arbitrary<string>>;
