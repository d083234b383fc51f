/**
 * Audit export for SIEMs: JSON lines, ArcSight CEF, or OCSF (1.x JSON), to stdout or
 * to syslog (RFC 5424 over UDP, or over TCP with RFC 6587 octet counting).
 *
 * Every syslog message is at most SYSLOG_MAX_BYTES: an entry that would be longer has
 * its `details` replaced by their size and hash (the entry stays valid JSON and still
 * verifiable against the log), and if it is still too long it is cut with a marker. No
 * value of an entry can start a new message or supply a header field: the header is
 * agentbox's own, framing is by byte count, and one entry that cannot be sent never
 * stops the ones after it.
 */
import { createConnection } from 'node:net';
import { createSocket } from 'node:dgram';
import { hostname } from 'node:os';
import type { AuditRecord } from './sink.js';
import { sha256Hex } from '../hash.js';

export type ExportFormat = 'json' | 'cef' | 'ocsf';
import { VERSION } from '../version.js';

export { VERSION };
/** The largest syslog message agentbox sends (rsyslog's default maximum). */
export const SYSLOG_MAX_BYTES = 8192;

const cefHeader = (s: string) => s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ');
const cefValue = (s: string) => s.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\r?\n/g, '\\n').replace(/\r/g, '\\r');

function severity(r: AuditRecord): number {
  if (r.decision === 'deny') return r.action.startsWith('limit.') || r.action === 'ttl.expired' ? 5 : 6;
  return r.action === 'audit.torn-tail' ? 7 : 3;
}

export function toCef(r: AuditRecord): string {
  const ext = [
    `rt=${Date.parse(r.time)}`,
    `suser=${cefValue(r.agent)}`,
    `act=${cefValue(r.decision)}`,
    `request=${cefValue(r.resource)}`,
    `reason=${cefValue(r.reason)}`,
    `cs1Label=session`,
    `cs1=${cefValue(r.session)}`,
    `cn1Label=seq`,
    `cn1=${r.seq}`,
    `cs2Label=prev`,
    `cs2=${r.prev}`,
  ];
  return `CEF:0|agentbox|agentbox|${VERSION}|${cefHeader(r.action)}|${cefHeader(`${r.action} ${r.decision}`)}|${severity(r)}|${ext.join(' ')}`;
}

export function toOcsf(r: AuditRecord): Record<string, unknown> {
  const network = r.action.startsWith('egress.');
  const [host, port] = network ? [r.resource.slice(0, r.resource.lastIndexOf(':')), Number(r.resource.slice(r.resource.lastIndexOf(':') + 1))] : [undefined, undefined];
  return {
    class_uid: network ? 4001 : 1007,
    class_name: network ? 'Network Activity' : 'Process Activity',
    category_uid: network ? 4 : 1,
    activity_id: network ? 1 : r.action === 'launch' ? 1 : r.action === 'exit' ? 2 : 99,
    type_uid: (network ? 4001 : 1007) * 100 + (network ? 1 : r.action === 'launch' ? 1 : r.action === 'exit' ? 2 : 99),
    time: Date.parse(r.time),
    severity_id: severity(r) >= 6 ? 3 : severity(r) >= 5 ? 2 : 1,
    status: r.decision === 'deny' ? 'Failure' : 'Success',
    status_id: r.decision === 'deny' ? 2 : 1,
    message: `${r.action} ${r.resource}: ${r.decision} (${r.reason})`,
    metadata: { product: { name: 'agentbox', vendor_name: 'agentbox', version: VERSION }, version: '1.1.0', uid: `${r.seq}`, log_name: 'audit.jsonl' },
    actor: { process: { name: r.agent }, session: { uid: r.session } },
    ...(network ? { dst_endpoint: { hostname: host, port } } : {}),
    unmapped: { action: r.action, seq: r.seq, prev: r.prev, sig: r.sig, ...(r.details ? { details: r.details } : {}) },
  };
}

export function format(r: AuditRecord, f: ExportFormat): string {
  return f === 'cef' ? toCef(r) : f === 'ocsf' ? JSON.stringify(toOcsf(r)) : JSON.stringify(r);
}

/** RFC 5424 message (facility authpriv=10). */
function syslogLine(r: AuditRecord, msg: string): string {
  const pri = 10 * 8 + (r.decision === 'deny' ? 4 : 6);
  return `<${pri}>1 ${r.time} ${hostname()} agentbox ${process.pid} ${r.action.replace(/[^\x21-\x7e]/g, '_').slice(0, 32)} - ${msg}`;
}

/** Cuts text to at most `max` UTF-8 bytes, on a character boundary, with a marker saying how much went. */
export function cutToBytes(text: string, max: number): string {
  const bytes = Buffer.byteLength(text);
  if (bytes <= max) return text;
  const marker = ` [agentbox: ${bytes} bytes, cut]`;
  let keep = Buffer.from(text).subarray(0, Math.max(0, max - Buffer.byteLength(marker))).toString('utf8');
  // A multi-byte character cut in half decodes to U+FFFD: drop it.
  if (keep.endsWith('\ufffd')) keep = keep.slice(0, -1);
  while (Buffer.byteLength(keep + marker) > max) keep = keep.slice(0, -1);
  return keep + marker;
}

/** One syslog message for an entry, within `max` bytes. */
export function syslogMessage(r: AuditRecord, f: ExportFormat, max = SYSLOG_MAX_BYTES): string {
  let line = syslogLine(r, format(r, f));
  if (Buffer.byteLength(line) > max && r.details !== undefined) {
    const d = JSON.stringify(r.details);
    line = syslogLine(r, format({ ...r, details: { truncated: { bytes: Buffer.byteLength(d), sha256: sha256Hex(d) } } }, f));
  }
  return cutToBytes(line, max);
}

export interface SyslogTarget {
  proto: 'udp' | 'tcp';
  host: string;
  port: number;
}

export function parseSyslogUrl(url: string): SyslogTarget | undefined {
  const m = /^syslog(\+tcp|\+udp)?:\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?\/?$/.exec(url);
  if (!m) return undefined;
  const port = m[3] ? Number(m[3]) : 514;
  if (port < 1 || port > 65535) return undefined;
  return { proto: m[1] === '+tcp' ? 'tcp' : 'udp', host: m[2]!.replace(/^\[|\]$/g, ''), port };
}

export interface SendReport {
  sent: number;
  failed: { seq: number; error: string }[];
}

export async function sendSyslog(target: SyslogTarget, records: readonly AuditRecord[], f: ExportFormat): Promise<SendReport> {
  const report: SendReport = { sent: 0, failed: [] };
  const messages: { seq: number; text: string }[] = [];
  for (const r of records) {
    try {
      messages.push({ seq: r.seq, text: syslogMessage(r, f) });
    } catch (e) {
      report.failed.push({ seq: r.seq, error: (e as Error).message });
    }
  }
  if (target.proto === 'udp') {
    const sock = createSocket(target.host.includes(':') ? 'udp6' : 'udp4');
    try {
      for (const m of messages) {
        try {
          await new Promise<void>((res, rej) => sock.send(Buffer.from(m.text), target.port, target.host, (e) => (e ? rej(e) : res())));
          report.sent++;
        } catch (e) {
          report.failed.push({ seq: m.seq, error: (e as Error).message });
        }
      }
    } finally {
      sock.close();
    }
    return report;
  }
  // RFC 6587 octet counting: each frame is its length, a space, then the message, so no
  // byte inside a message can end it or start another.
  const frames = messages.map((m) => `${Buffer.byteLength(m.text)} ${m.text}`).join('');
  await new Promise<void>((res, rej) => {
    const s = createConnection({ host: target.host, port: target.port }, () => {
      s.end(frames, () => res());
    });
    s.on('error', rej);
  });
  report.sent += messages.length;
  return report;
}
