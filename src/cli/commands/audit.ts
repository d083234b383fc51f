/**
 * `agentbox audit verify` and `agentbox audit export`.
 */
import type { Command } from 'commander';
import { termSafe } from '../../escape/terminal.js';
import { parseTtl } from '../../model/grammar.js';
import { AgentboxError } from '../../errors.js';
import { auditRecords, EXPORT_FORMATS, followLine, formatRecords, sendRecords, showLines, verifyAudit, type ExportFormat } from '../../actions/audit.js';
import type { Io } from '../io.js';

export async function verifyCommand(file: string | undefined, opts: { full?: boolean; key?: string }, io: Io): Promise<number> {
  const { ms, ...r } = verifyAudit(file, opts);
  const path = r.file;
  if (io.json) io.data({ ...r, ms: Math.round(ms) });
  else if (r.firstBad) io.out(`${io.style.red('BAD')}  ${path}: entry at line ${r.firstBad.line}${r.firstBad.seq !== null ? ` (seq ${r.firstBad.seq})` : ''}: ${r.firstBad.problem}`);
  else if (r.tornLine !== null) io.out(`${io.style.yellow('TORN')}  ${path}: entries 1-${r.entries} intact; line ${r.tornLine} is torn (an append interrupted by a crash, or the log cut short); the next append moves it aside`);
  else io.out(`${io.style.green('ok')}  ${path}: ${r.entries} entries, chain intact, ${r.checkedSignatures} signature${r.checkedSignatures === 1 ? '' : 's'} checked (${ms.toFixed(0)} ms)`);
  if (!io.json && r.spooled > 0) io.out(`${r.spooled} spooled write${r.spooled === 1 ? '' : 's'} in audit.spool/ wait${r.spooled === 1 ? 's' : ''} for the lock (its holder is stopped or wedged); the next append adds them to the chain`);
  return r.ok ? 0 : 1;
}

/** An ISO time, or a duration back from now (30m, 1h, 1h30m), as `journalctl --since` and `docker logs --since` take. */
export function sinceOf(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const rel = parseTtl(text);
  const since = rel.ok ? Date.now() - rel.value * 1000 : /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(since)) throw new AgentboxError('USAGE', `--since ${termSafe(text)}: give an ISO time such as 2026-11-23T08:00:00Z, or a duration back from now such as 30m, 1h or 1h30m`);
  return since;
}

export async function showCommand(opts: { since?: string; session?: string; follow?: boolean; file?: string }, io: Io): Promise<number> {
  const since = sinceOf(opts.since);
  const { records, skipped } = auditRecords(opts.file, since);
  for (const line of showLines(records, opts.session)) io.out(termSafe(line));
  if (skipped.length > 0) io.warn(`${skipped.length} lines are not entries (agentbox audit verify checks the whole log)`);
  if (!opts.follow) return 0;
  // New entries as they are written, until interrupted.
  let seen = records.length === 0 ? 0 : records[records.length - 1]!.seq;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      for (const r of auditRecords(opts.file, undefined).records) {
        if (r.seq <= seen) continue;
        seen = r.seq;
        if (!opts.session || r.session === opts.session) io.out(termSafe(followLine(r)));
      }
    }, 500);
    const stop = () => {
      clearInterval(timer);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

export async function exportCommand(opts: { format: string; since?: string; to?: string; file?: string }, io: Io): Promise<number> {
  if (!(EXPORT_FORMATS as readonly string[]).includes(opts.format)) throw new AgentboxError('USAGE', `--format ${opts.format}: use json, cef or ocsf`);
  const since = sinceOf(opts.since);
  const f = opts.format as ExportFormat;
  const { records, skipped } = auditRecords(opts.file, since);
  for (const x of skipped.slice(0, 20)) io.warn(`line ${x.line} is not exported: ${x.problem} (agentbox audit verify checks the whole log)`);
  if (skipped.length > 20) io.warn(`${skipped.length - 20} more lines are not exported`);
  if (opts.to) {
    const sent = await sendRecords(opts.to, records, f);
    io.info(`sent ${sent.sent} entries to ${opts.to} as ${f}`);
    for (const x of sent.failed) io.warn(`entry seq ${x.seq} was not sent: ${x.error}`);
    if (sent.failed.length > 0) return 1;
  } else for (const line of formatRecords(records, f)) io.out(line);
  return skipped.length > 0 ? 1 : 0;
}

export function registerAudit(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  const audit = program.command('audit').description('verify and export the tamper-evident audit log');
  audit
    .command('verify')
    .description('check the hash chain and signatures; exit 0 intact, 1 naming the first bad entry')
    .argument('[file]', 'audit log (default: STATE/audit.jsonl)')
    .option('--full', 'check every signature, not only where the chain needs it')
    .option('--key <pem>', 'device public key (default: STATE/keys/device-ed25519.pub.pem)')
    .addHelpText('after', `
Examples:
  agentbox audit verify
  agentbox audit verify /evidence/audit.jsonl --key device.pub.pem --full --json`)
    .action((file: string | undefined, opts: { full?: boolean; key?: string }) => run((io) => verifyCommand(file, opts, io)));
  audit
    .command('show')
    .description("each session's timeline as text: launch, egress allowed and denied, consent, violations, quarantine, exit")
    .option('--session <id>', 'only this session')
    .option('--since <time>', 'only entries at or after this ISO time, or this long ago (30m, 1h)')
    .option('-f, --follow', 'then print new entries as they are written, until Ctrl-C')
    .option('--file <path>', 'audit log (default: STATE/audit.jsonl)')
    .addHelpText('after', `
agentbox report draws the same timeline, with the KPIs, as an HTML file.

Examples:
  agentbox audit show
  agentbox audit show --session cowork-3f9a12c0
  agentbox audit show --since 1h --follow`)
    .action((opts: { since?: string; session?: string; follow?: boolean; file?: string }) => run((io) => showCommand(opts, io)));
  audit
    .command('export')
    .description('print or ship entries as JSON lines, CEF or OCSF')
    .requiredOption('--format <format>', 'json, cef or ocsf')
    .option('--since <time>', 'only entries at or after this ISO time, or this long ago (30m, 1h, 1h30m)')
    .option('--to <url>', 'syslog://HOST:PORT (UDP) or syslog+tcp://HOST:PORT')
    .option('--file <path>', 'audit log (default: STATE/audit.jsonl)')
    .addHelpText('after', `
Examples:
  agentbox audit export --format cef --to syslog://127.0.0.1:514
  agentbox audit export --format ocsf --since 2026-11-23T00:00:00Z > today.ocsf.jsonl
  agentbox audit export --format cef --since 1h`)
    .action((opts: { format: string; since?: string; to?: string; file?: string }) => run((io) => exportCommand(opts, io)));
}
