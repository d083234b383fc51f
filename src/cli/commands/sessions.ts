/**
 * `agentbox ps` and `agentbox kill`, and the reaper's hidden command.
 */
import type { Command } from 'commander';
import { AgentboxError, ExitCode } from '../../errors.js';
import { parseTtl } from '../../model/grammar.js';
import { kill, listSessions, prune, reap, REAPER_COMMAND, type Session } from '../../actions/sessions.js';
import { termSafe } from '../../escape/terminal.js';
import type { Io } from '../io.js';

/** The state as a person reads it: a released session's egress stays cut. */
const shownState = (s: Session) => (s.state === 'running' && s.egressCut ? 'egress-cut' : s.state);

const FILTER_KEYS = ['agent', 'state', 'runtime', 'id'] as const;

/** `--filter KEY=VALUE` (repeatable, all must hold; a value may end in * for a prefix). */
function filterOf(filters: readonly string[]): (s: Session) => boolean {
  const tests = filters.map((f) => {
    const eq = f.indexOf('=');
    const key = f.slice(0, eq) as (typeof FILTER_KEYS)[number];
    const value = f.slice(eq + 1);
    if (eq < 0 || !FILTER_KEYS.includes(key)) throw new AgentboxError('USAGE', `--filter ${termSafe(f)}: write KEY=VALUE with KEY one of ${FILTER_KEYS.join(', ')}`);
    const field = (s: Session) => (key === 'state' ? shownState(s) : key === 'id' ? s.id : key === 'agent' ? s.agent : s.runtime);
    return (s: Session) => (value.endsWith('*') ? field(s).startsWith(value.slice(0, -1)) : field(s) === value);
  });
  return (s) => tests.every((t) => t(s));
}

export async function psCommand(opts: { all?: boolean; filter?: string[]; quiet?: boolean }, io: Io): Promise<number> {
  const keep = filterOf(opts.filter ?? []);
  // A filter on state=exited (or any state) looks at ended sessions too.
  const all = Boolean(opts.all) || (opts.filter ?? []).some((f) => f.startsWith('state='));
  const sessions = (await listSessions(all)).filter(keep);
  if (opts.quiet) {
    for (const s of sessions) io.out(s.id);
    return 0;
  }
  if (io.json) {
    io.data(sessions.map((s) => ({ ...s, shownState: shownState(s) })));
    return 0;
  }
  if (sessions.length === 0) {
    io.out(opts.all ? 'no sessions' : 'no running sessions (--all lists ended ones)');
    return 0;
  }
  const rows = [['SESSION', 'AGENT', 'RUNTIME', 'STATE', 'PID', 'EXIT', 'STARTED', 'EXPIRES']];
  for (const s of sessions) rows.push([s.id, termSafe(s.agent), s.unit ? 'service' : s.runtime + (s.isolation && s.isolation !== 'runc' ? `/${s.isolation}` : ''), shownState(s), String(s.pid), s.exitCode === null ? '-' : String(s.exitCode), s.startedAt, s.expiresAt ?? '-']);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  return 0;
}

export async function pruneCommand(opts: { olderThan?: string }, io: Io): Promise<number> {
  let seconds: number | undefined;
  if (opts.olderThan !== undefined) {
    const t = parseTtl(opts.olderThan);
    if (!t.ok) throw new AgentboxError('USAGE', `--older-than ${termSafe(opts.olderThan)}: ${t.message}`);
    seconds = t.value;
  }
  const r = await prune(seconds);
  if (io.json) io.data(r);
  else {
    io.out(r.removed.length === 0 ? 'no ended sessions to forget' : `forgot ${r.removed.length} ended session${r.removed.length === 1 ? '' : 's'} (the audit log and evidence stay)`);
    for (const k of r.kept) io.info(`kept ${k.id}: ${k.why}`);
  }
  return 0;
}

export async function killCommand(id: string | undefined, opts: { agent?: string }, io: Io): Promise<number> {
  const r = await kill({ ...(id ? { id } : {}), ...(opts.agent ? { agent: opts.agent } : {}) }, io);
  for (const s of r.alreadyEnded) io.info(`${s.id} has already ended (${s.endReason ?? 'exited'}${s.exitCode === null ? '' : `, exit code ${s.exitCode}`}); nothing to kill`);
  if (io.json) io.data(r.ended);
  return r.alreadyEnded.length > 0 ? ExitCode.checkFailed : ExitCode.ok;
}

export function registerSessions(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  const ps = program
    .command('ps')
    .description('list agent sessions')
    .option('--all', 'include sessions that have ended')
    .option('--filter <KEY=VALUE>', `only sessions where KEY (${FILTER_KEYS.join(', ')}) is VALUE (repeatable; VALUE* for a prefix)`, (v: string, prev: string[] = []) => [...prev, v])
    .option('-q, --quiet', 'only the session ids, one per line')
    .addHelpText('after', `
RUNTIME is "service" for an agent apply installed, governed by agentboxd (PID: its
oldest process; kill stops its unit).
States: running; egress-cut (released after a quarantine: egress stays cut);
quarantined; orphaned (its launcher died: the box was ended, its changes are kept
until agentbox kill decides); exited.

Examples:
  agentbox ps
  agentbox ps --all --filter agent=cowork --filter state=exited
  agentbox ps -q --filter state=running --filter runtime=container
  agentbox ps prune --older-than 168h
  agentbox ps --json | jq '.[] | select(.state == "running") | .id'`)
    .action((opts: { all?: boolean; filter?: string[]; quiet?: boolean }) => run((io) => psCommand(opts, io)));
  ps
    .command('prune')
    .description('forget ended sessions: their records, tokens and session folders (the audit log and evidence stay)')
    .option('--older-than <duration>', 'only sessions that ended at least this long ago (30m, 12h, 168h)')
    .addHelpText('after', `
Examples:
  agentbox ps prune
  agentbox ps prune --older-than 168h`)
    .action((opts: { olderThan?: string }) => run((io) => pruneCommand(opts, io)));
  program
    .command('kill')
    .description('end a session (its changes are reverted unless it persists them)')
    .argument('[session]', 'session id from agentbox ps')
    .option('--agent <name>', 'every running session of this agent')
    .addHelpText('after', `
Exit codes: 0 ended; 1 the session had already ended; 2 no such session.

Examples:
  agentbox kill cowork-3f9a12c0
  agentbox kill --agent cowork`)
    .action((id: string | undefined, opts: { agent?: string }) => run((io) => killCommand(id, opts, io)));
  program
    .command(REAPER_COMMAND, { hidden: true })
    .argument('<session>')
    .action((id: string) => run(async () => (await reap(id), 0)));
}
