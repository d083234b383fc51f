/**
 * The tamper-evident audit log (SPEC §6): append-only JSON lines in STATE/audit.jsonl.
 * Every entry carries seq, time, session, agent, action, resource, decision, reason,
 * `prev` (sha256 of the previous line's bytes) and `sig` (ed25519 over the entry
 * without `sig`, by the device key in STATE/keys, created 0600 on first use).
 *
 * Appends are crash-safe: an entry is acknowledged (returned) only after write and
 * fsync. Several agentbox processes may append at once; a lock file serialises them so
 * the chain never forks.
 *
 * A lock holder that is stopped (SIGSTOP, a debugger) or wedged must not silence every
 * other writer: in an incident the responder's `quarantine` has to be recorded even
 * while the launcher is stopped mid-append. A writer that cannot take the lock (the
 * holder is stopped, or has held it for 10 s) writes its entries, signed, to
 * STATE/audit.spool/ with write, fsync and rename, and returns. The next writer that
 * holds the lock appends spooled entries first, in the order they were spooled, each
 * chained and signed like any other, with its original time and `details.deferred`
 * saying who spooled it and why. The lock is never taken from a live holder: it would
 * go on writing after its own view of the tail and fork the chain. A spool file whose
 * signature does not verify is not appended as if it were genuine: it is moved aside
 * and an `audit.spool-invalid` entry records its hash. A crash between the append and
 * the removal of a spool file appends it again on the next write (at least once; the
 * two copies carry the same `deferred.spool` name). A torn last line (a crash mid-write: it was never
 * acknowledged) is moved aside to audit.torn-TIME.partial and an `audit.torn-tail`
 * entry records its size and hash, so nothing is dropped silently.
 * Payloads (file contents, bodies) are never passed here; callers hash them.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, linkSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, fstatSync, ftruncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import canonicalize from 'canonicalize';
import { sha256Hex } from '../hash.js';
import { isStopped, processStart } from '../host/proc.js';

import { GENESIS, legacySignedBytes, lineOf, parseLine, signedBytes, type AuditEntry, type AuditRecord } from './record.js';

export { GENESIS, signedBytes, type AuditEntry, type AuditRecord };

export { sha256Hex };

/** The device key pair, created on first use (private key 0600 in a 0700 directory). */
export function deviceKey(state: string): { privateKey: KeyObject; publicKey: KeyObject; publicPem: string } {
  const dir = join(state, 'keys');
  const priv = join(dir, 'device-ed25519.pem');
  const pub = join(dir, 'device-ed25519.pub.pem');
  if (!existsSync(priv)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const tmp = `${priv}.${process.pid}`;
    writeFileSync(tmp, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
    try {
      // Two processes racing on first use: the first key wins (link fails if the file
      // exists, where rename would replace it), the other is discarded.
      linkSync(tmp, priv);
    } catch {
      // the other process's key is in place
    }
    unlinkSync(tmp);
  }
  const privateKey = createPrivateKey(readFileSync(priv));
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/**
 * The key DLP digests are keyed with: derived from the device key, so a short secret
 * (an SSN, a card number) cannot be recovered from the audit log by trying every value,
 * while a responder on this device can confirm a suspected value.
 */
export function dlpDigest(state: string): (match: string) => string {
  const der = deviceKey(state).privateKey.export({ type: 'pkcs8', format: 'der' });
  const key = createHash('sha256').update('agentbox-dlp-digest-v1\0').update(der).digest();
  return (match) => `hmac-sha256:${createHmac('sha256', key).update(match, 'utf8').digest('hex')}`;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** How long a writer waits for a lock whose holder is running, and for one whose holder is stopped. */
const LOCK_WAIT_MS = 10_000;
const STOPPED_WAIT_MS = 50;

/** The spool files waiting for the lock (STATE/audit.spool/*.json), oldest first. */
export function spooledFiles(state: string): string[] {
  try {
    return readdirSync(join(state, 'audit.spool'))
      .filter((n) => n.endsWith('.json'))
      .sort()
      .map((n) => join(state, 'audit.spool', n));
  } catch {
    return [];
  }
}

interface SpoolFile {
  v: 1;
  by: number;
  lockHolder: number;
  why: string;
  spooledAt: string;
  entries: (AuditEntry & { time: string })[];
  sig?: string;
}

const spoolBytes = (f: SpoolFile): string => {
  const { sig: _sig, ...rest } = f;
  return canonicalize(rest) ?? '';
};

export class AuditSink {
  readonly file: string;
  private readonly lockFile: string;
  private readonly key: KeyObject;
  private readonly publicKey: KeyObject;

  constructor(private readonly state: string) {
    mkdirSync(state, { recursive: true });
    this.file = join(state, 'audit.jsonl');
    this.lockFile = join(state, 'audit.jsonl.lock');
    const k = deviceKey(state);
    this.key = k.privateKey;
    this.publicKey = k.publicKey;
  }

  /**
   * Appends one entry; returns it once it is on disk, or undefined when it was spooled
   * (on disk, signed, and appended by the next writer that holds the lock).
   */
  append(entry: AuditEntry): AuditRecord | undefined {
    return this.appendMany([entry])[0];
  }

  /**
   * Appends entries with one write and one fsync (group commit); returns them once on
   * disk. Returns [] when the lock could not be taken and the entries were spooled.
   */
  appendMany(entries: readonly AuditEntry[]): AuditRecord[] {
    const got = this.lock();
    if (!got.ok) {
      this.spool(entries, got.holder, got.why);
      return [];
    }
    try {
      const fd = openSync(this.file, 'a+', 0o600);
      let drained: string[] = [];
      try {
        let { seq, prev } = this.tail(fd);
        const out: AuditRecord[] = [];
        let text = '';
        const add = (e: AuditEntry, time: string): AuditRecord => {
          const unsigned = { seq: ++seq, time, session: e.session, agent: e.agent, action: e.action, resource: e.resource, decision: e.decision, reason: e.reason, ...(e.details !== undefined ? { details: e.details } : {}), prev };
          // JSON has no undefined: a value that would vanish or change on the way to disk is made explicit first.
          const clean = JSON.parse(JSON.stringify(unsigned)) as Omit<AuditRecord, 'sig'>;
          const sig = sign(null, Buffer.from(signedBytes(clean)), this.key).toString('base64');
          const record = { ...clean, sig };
          const line = lineOf(record);
          prev = sha256Hex(line);
          text += line + '\n';
          return record;
        };
        drained = this.drain(add);
        for (const e of entries) out.push(add(e, new Date().toISOString()));
        writeSync(fd, text);
        fsyncSync(fd);
        for (const f of drained) {
          try {
            unlinkSync(f);
          } catch {
            // already gone
          }
        }
        return out;
      } finally {
        closeSync(fd);
      }
    } finally {
      this.unlock();
    }
  }

  /** Writes entries that could not wait for the lock to the spool, durably. */
  private spool(entries: readonly AuditEntry[], holder: number, why: string): void {
    const dir = join(this.state, 'audit.spool');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const now = new Date().toISOString();
    const body: SpoolFile = { v: 1, by: process.pid, lockHolder: holder, why, spooledAt: now, entries: JSON.parse(JSON.stringify(entries.map((e) => ({ ...e, time: now })))) as SpoolFile['entries'] };
    body.sig = sign(null, Buffer.from(spoolBytes(body)), this.key).toString('base64');
    const name = `${String(Date.now()).padStart(15, '0')}-${String(process.pid).padStart(8, '0')}-${randomBytes(4).toString('hex')}`;
    const tmp = join(dir, `${name}.tmp`);
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, JSON.stringify(body));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(dir, `${name}.json`));
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }

  /** Adds the spooled entries (under the lock) through `add`; returns the files to remove once written. */
  private drain(add: (e: AuditEntry, time: string) => void): string[] {
    const dir = join(this.state, 'audit.spool');
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
    } catch {
      return [];
    }
    const done: string[] = [];
    const now = new Date().toISOString();
    for (const name of names) {
      const path = join(dir, name);
      let raw: Buffer;
      try {
        raw = readFileSync(path);
      } catch {
        continue;
      }
      let f: SpoolFile | undefined;
      try {
        f = JSON.parse(raw.toString('utf8')) as SpoolFile;
        if (f.v !== 1 || !Array.isArray(f.entries) || typeof f.sig !== 'string' || !verify(null, Buffer.from(spoolBytes(f)), this.publicKey, Buffer.from(f.sig, 'base64'))) f = undefined;
      } catch {
        f = undefined;
      }
      if (!f) {
        const aside = join(this.state, `audit.spool-invalid-${name}`);
        try {
          renameSync(path, aside);
        } catch {
          continue;
        }
        add({ session: '-', agent: '-', action: 'audit.spool-invalid', resource: name, decision: 'deny', reason: 'a spooled audit file does not verify against the device key; it was moved aside, not appended', details: { sha256: sha256Hex(raw), bytes: raw.length, savedAs: aside } }, now);
        continue;
      }
      for (const e of f.entries) {
        const details = { ...(e.details ?? {}), deferred: { spool: name, spooledBy: f.by, lockHolder: f.lockHolder, why: f.why, spooledAt: f.spooledAt, appendedAt: now } };
        add({ session: e.session, agent: e.agent, action: e.action, resource: e.resource, decision: e.decision, reason: e.reason, details }, e.time);
      }
      done.push(path);
    }
    return done;
  }

  /** The last complete entry's seq and line hash; moves a torn tail aside and records it. */
  private tail(fd: number): { seq: number; prev: string } {
    const size = fstatSync(fd).size;
    if (size === 0) return { seq: 0, prev: GENESIS };
    let start = Math.max(0, size - 65536);
    let buf = Buffer.alloc(0);
    // Read back until the chunk holds a complete previous line.
    for (;;) {
      const chunk = Buffer.alloc(size - start);
      readSync(fd, chunk, 0, chunk.length, start);
      buf = chunk;
      const body = buf.subarray(0, buf.length - 1);
      if (start === 0 || body.includes(0x0a)) break;
      start = Math.max(0, start - 65536);
    }
    if (buf[buf.length - 1] !== 0x0a) {
      const cut = buf.lastIndexOf(0x0a);
      const torn = buf.subarray(cut + 1);
      const saved = join(this.state, `audit.torn-${new Date().toISOString().replace(/[:.]/g, '-')}.partial`);
      writeFileSync(saved, torn, { mode: 0o600 });
      ftruncateSync(fd, start + cut + 1);
      fsyncSync(fd);
      const before = this.tail(fd);
      const note = { seq: before.seq + 1, time: new Date().toISOString(), session: '-', agent: '-', action: 'audit.torn-tail', resource: 'audit.jsonl', decision: 'info' as const, reason: 'an append was interrupted before it was acknowledged; its bytes were moved aside', details: { bytes: torn.length, sha256: sha256Hex(torn), savedAs: saved }, prev: before.prev };
      const line = lineOf({ ...note, sig: sign(null, Buffer.from(signedBytes(note)), this.key).toString('base64') });
      writeSync(fd, line + '\n');
      fsyncSync(fd);
      return { seq: note.seq, prev: sha256Hex(line) };
    }
    const lines = buf.subarray(0, buf.length - 1).toString('utf8').split('\n');
    const last = lines[lines.length - 1]!;
    const parsed = parseLine(last);
    // The entry this one chains to must be one agentbox wrote: an altered last line is
    // recorded (chained to it, so the break is dated) rather than silently vouched for.
    const valid = parsed.ok && verify(null, Buffer.from(parsed.format === 'jcs' ? signedBytes(parsed.record) : legacySignedBytes(parsed.record)), this.publicKey, Buffer.from(parsed.record.sig, 'base64'));
    const seq = parsed.ok ? parsed.record.seq : (() => {
      const m = /"seq":(\d+)/.exec(last);
      return m ? Number(m[1]) : lines.length;
    })();
    if (!valid) {
      const note = { seq: seq + 1, time: new Date().toISOString(), session: '-', agent: '-', action: 'audit.tail-invalid', resource: 'audit.jsonl', decision: 'info' as const, reason: `the last entry does not verify (${parsed.ok ? 'its signature does not match' : parsed.problem}); agentbox appended after it and recorded this`, details: { sha256: sha256Hex(last), bytes: Buffer.byteLength(last) }, prev: sha256Hex(last) };
      const sig = sign(null, Buffer.from(signedBytes(note)), this.key).toString('base64');
      const line = lineOf({ ...note, sig });
      writeSync(fd, line + '\n');
      fsyncSync(fd);
      return { seq: note.seq, prev: sha256Hex(line) };
    }
    return { seq, prev: sha256Hex(last) };
  }

  /** Takes the lock, or says why not: the holder is stopped, or has held it too long. */
  private lock(): { ok: true } | { ok: false; holder: number; why: string } {
    const t0 = Date.now();
    for (;;) {
      try {
        const fd = openSync(this.lockFile, 'wx', 0o600);
        writeSync(fd, `${process.pid} ${processStart(process.pid) ?? ''}`);
        closeSync(fd);
        return { ok: true };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const text = readFileSyncSafe(this.lockFile);
        const [pidText, start] = text.split(' ');
        const holder = Number(pidText);
        const alive = holder > 0 && processStart(holder) !== undefined && (!start || processStart(holder) === start);
        // A lock that names nobody (its writer died between create and write) is stale once it is a second old.
        const nameless = !(holder > 0) && Date.now() - mtimeMs(this.lockFile) > 1000;
        if ((holder > 0 && !alive) || nameless) {
          // The holder died mid-append (or its pid now names another process): the lock is stale.
          try {
            unlinkSync(this.lockFile);
          } catch {
            // another process removed it first
          }
          continue;
        }
        const waited = Date.now() - t0;
        if (waited > STOPPED_WAIT_MS && isStopped(holder)) return { ok: false, holder, why: `the lock holder (pid ${holder}) is stopped` };
        if (waited > LOCK_WAIT_MS) return { ok: false, holder, why: `the lock holder (pid ${holder}) held it for over ${LOCK_WAIT_MS / 1000} s` };
        Atomics.wait(sleeper, 0, 0, 1);
      }
    }
  }

  private unlock(): void {
    try {
      unlinkSync(this.lockFile);
    } catch {
      // already gone
    }
  }
}

function mtimeMs(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return Date.now();
  }
}

function readFileSyncSafe(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}


/** Reads every complete entry (summaries and tests). */
export function readAudit(dir: string): AuditRecord[] {
  const file = join(dir, 'audit.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}
