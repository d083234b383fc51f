/**
 * The audit log as a reviewer uses it: verify its chain and signatures, and export its
 * entries (to stdout, or to syslog over UDP or TCP) as JSON, CEF or OCSF.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFileNoFollow } from '../host/open-exact.js';
import { join, resolve } from 'node:path';
import { AgentboxError } from '../errors.js';
import { format, parseSyslogUrl, sendSyslog, type ExportFormat, type SendReport } from '../audit/export.js';
import { parseLine, type AuditRecord } from '../audit/record.js';
import { spooledFiles } from '../audit/sink.js';
import { verifyLog, type VerifyReport } from '../audit/verify.js';
import { renderReport, type ReportLog } from '../audit/report.js';
import { describe, timelines } from '../audit/timeline.js';
import { VERSION } from '../version.js';
import { stateDir } from '../session/state.js';

export type { ExportFormat };

export const EXPORT_FORMATS: readonly ExportFormat[] = ['json', 'cef', 'ocsf'];

function logPath(file: string | undefined): string {
  const path = file ?? join(stateDir(), 'audit.jsonl');
  if (!existsSync(path)) throw new AgentboxError('USAGE', `${path}: no audit log`);
  return path;
}

export function verifyAudit(file: string | undefined, opts: { full?: boolean; key?: string }): VerifyReport & { file: string; ms: number; spooled: number } {
  const path = logPath(file);
  const keyPath = opts.key ?? join(stateDir(), 'keys', 'device-ed25519.pub.pem');
  if (!existsSync(keyPath)) throw new AgentboxError('USAGE', `no public key at ${keyPath}`, { details: ['give the device public key with --key PEM'] });
  const key = createPublicKey(readFileSync(keyPath));
  const t0 = performance.now();
  const r = verifyLog(readFileSync(path, 'utf8'), key, Boolean(opts.full));
  // Entries written while the lock holder was stopped: on disk and signed, appended by the next writer.
  const spooled = file === undefined || resolve(path) === resolve(stateDir(), 'audit.jsonl') ? spooledFiles(stateDir()).length : 0;
  return { file: path, ...r, ms: performance.now() - t0, spooled };
}

/**
 * The entries of the log since a time. A line that is not a well-formed entry (torn,
 * altered) is not exported: it is listed in `skipped` with why, for the caller to say so.
 */
export function auditRecords(file: string | undefined, since: number | undefined): { records: AuditRecord[]; skipped: { line: number; problem: string }[] } {
  return recordsOf(readFileSync(logPath(file), 'utf8'), since);
}

/** The entries of a log's text since a time; a line that is not an entry is listed in `skipped` with why. */
function recordsOf(text: string, since: number | undefined): { records: AuditRecord[]; skipped: { line: number; problem: string }[] } {
  const records: AuditRecord[] = [];
  const skipped: { line: number; problem: string }[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line) return;
    const p = parseLine(line);
    if (!p.ok) skipped.push({ line: i + 1, problem: p.problem });
    else if (since === undefined || Date.parse(p.record.time) >= since) records.push(p.record);
  });
  return { records, skipped };
}

export function formatRecords(records: readonly AuditRecord[], f: ExportFormat): string[] {
  return records.map((r) => format(r, f));
}

/**
 * `agentbox report`: verifies each log with the device key (or --key), gathers its
 * entries since a time, and writes the self-contained HTML (audit/report.ts).
 */
export function writeReport(files: readonly string[], opts: { since?: number; out: string; key?: string }): { out: string; logs: ReportLog[]; entries: number; skipped: number; bytes: number } {
  const paths = files.length > 0 ? [...files] : [logPath(undefined)];
  const keyPath = opts.key ?? join(stateDir(), 'keys', 'device-ed25519.pub.pem');
  if (!existsSync(keyPath)) throw new AgentboxError('USAGE', `no public key at ${keyPath}`, { details: ['give the device public key with --key PEM'] });
  const key = createPublicKey(readFileSync(keyPath));
  const logs: ReportLog[] = [];
  const records: AuditRecord[] = [];
  let skipped = 0;
  for (const f of paths) {
    const path = logPath(f);
    const text = readFileSync(path, 'utf8');
    const spooled = resolve(path) === resolve(stateDir(), 'audit.jsonl') ? spooledFiles(stateDir()).length : 0;
    logs.push({ file: path, verify: verifyLog(text, key, true), spooled });
    const r = recordsOf(text, opts.since);
    records.push(...r.records);
    skipped += r.skipped.length;
  }
  records.sort((a, b) => Date.parse(a.time) - Date.parse(b.time) || a.seq - b.seq);
  const html = renderReport({ logs, records, since: opts.since === undefined ? null : new Date(opts.since).toISOString(), generatedAt: new Date().toISOString(), version: VERSION });
  // Often run as root in a folder others can write: never through a link planted at the name.
  writeFileNoFollow(resolve(opts.out), html, 0o600, true);
  return { out: opts.out, logs, entries: records.length, skipped, bytes: Buffer.byteLength(html) };
}

/** The session timelines of a log as text lines (the caller makes them terminal-safe). */
export function showLines(records: readonly AuditRecord[], session: string | undefined): string[] {
  const out: string[] = [];
  for (const t of timelines(records)) {
    if (session && t.session !== session) continue;
    out.push(`${t.session}  ${t.agent}  ${t.start}${t.quarantined ? '  QUARANTINED' : ''}${t.end ? `  ended ${t.end}` : ''}`);
    for (const ev of t.events) out.push(`  ${ev.time}  ${ev.decision.padEnd(5)}  ${ev.text}`);
  }
  return out;
}

/** One entry as a `show --follow` line. */
export function followLine(r: AuditRecord): string {
  return `${r.time}  ${r.session}  ${r.decision.padEnd(5)}  ${describe(r)}`;
}

export async function sendRecords(to: string, records: readonly AuditRecord[], f: ExportFormat): Promise<SendReport> {
  const target = parseSyslogUrl(to);
  if (!target) throw new AgentboxError('USAGE', `--to ${to}: use syslog://HOST:PORT (UDP) or syslog+tcp://HOST:PORT`);
  return sendSyslog(target, records, f);
}
