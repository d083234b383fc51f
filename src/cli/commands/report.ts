/**
 * `agentbox report [AUDIT...] [--since D] [--out FILE]`: the audit trail as one
 * self-contained HTML file (actions/audit.writeReport, audit/report.ts).
 */
import type { Command } from 'commander';
import { AgentboxError } from '../../errors.js';
import { termSafe } from '../../escape/terminal.js';
import { sinceOf } from './audit.js';
import { writeReport } from '../../actions/audit.js';
import type { Io } from '../io.js';

export async function reportCommand(files: string[], opts: { since?: string; out: string; key?: string }, io: Io): Promise<number> {
  if (!opts.out) throw new AgentboxError('USAGE', '--out needs a file name, such as report.html');
  const since = sinceOf(opts.since);
  const r = writeReport(files, { ...(since !== undefined ? { since } : {}), out: opts.out, ...(opts.key ? { key: opts.key } : {}) });
  const bad = r.logs.filter((l) => l.verify.firstBad || l.verify.tornLine !== null);
  if (io.json) io.data({ out: r.out, bytes: r.bytes, entries: r.entries, skipped: r.skipped, logs: r.logs.map((l) => ({ file: l.file, ok: l.verify.ok, firstBad: l.verify.firstBad, tornLine: l.verify.tornLine, spooled: l.spooled })) });
  else {
    io.out(`wrote ${termSafe(r.out)} (${r.entries} entries, ${Math.round(r.bytes / 1024)} KiB; open it in any browser, offline)`);
    for (const l of bad) io.warn(`${termSafe(l.file)} does not verify: the report says so first (agentbox audit verify ${termSafe(l.file)})`);
    if (r.skipped > 0) io.warn(`${r.skipped} lines were not entries and are not in the report`);
  }
  return bad.length > 0 ? 1 : 0;
}

export function registerReport(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('report')
    .description('write the audit trail as one self-contained HTML report: verification, KPIs, each session\'s timeline')
    .argument('[audit...]', 'audit logs (default: STATE/audit.jsonl)')
    .option('--since <time>', 'only entries at or after this ISO time, or this long ago (30m, 24h, 168h)')
    .option('--out <file>', 'where to write it', 'report.html')
    .option('--key <pem>', 'device public key to verify with (default: STATE/keys/device-ed25519.pub.pem)')
    .addHelpText('after', `
The file has no script and loads nothing (Content-Security-Policy default-src 'none'):
it opens offline, in any browser, and nothing in a log can run in it.
Exit codes: 0 written; 1 written, but a log does not verify (shown first in the report).

Examples:
  agentbox report
  agentbox report --since 168h --out week.html
  agentbox report /evidence/a/audit.jsonl /evidence/b/audit.jsonl --key device.pub.pem --out incident.html`)
    .action((files: string[], opts: { since?: string; out: string; key?: string }) => run((io) => reportCommand(files, opts, io)));
}
