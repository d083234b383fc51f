/**
 * Audit export for SIEMs: JSON lines, ArcSight CEF, or OCSF (1.x JSON), to stdout or
 * to syslog (RFC 5424 over UDP, or over TCP with one message per line).
 */
import { createConnection } from 'node:net';
import { createSocket } from 'node:dgram';
import { hostname } from 'node:os';
import type { AuditRecord } from './sink.js';

export type ExportFormat = 'json' | 'cef' | 'ocsf';
export const VERSION = '0.1.0';

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

export async function sendSyslog(target: SyslogTarget, records: readonly AuditRecord[], f: ExportFormat): Promise<void> {
  const lines = records.map((r) => syslogLine(r, format(r, f)));
  if (target.proto === 'udp') {
    const sock = createSocket(target.host.includes(':') ? 'udp6' : 'udp4');
    try {
      for (const l of lines) await new Promise<void>((res, rej) => sock.send(Buffer.from(l), target.port, target.host, (e) => (e ? rej(e) : res())));
    } finally {
      sock.close();
    }
    return;
  }
  await new Promise<void>((res, rej) => {
    const s = createConnection({ host: target.host, port: target.port }, () => {
      s.end(lines.map((l) => l + '\n').join(''), () => res());
    });
    s.on('error', rej);
  });
}
