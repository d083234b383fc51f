/**
 * Incident response: `agentbox quarantine`, `agentbox release`, and capability tokens
 * (`agentbox token mint|verify|revoke`).
 */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { AgentboxError } from '../../errors.js';
import { AuditSink, deviceKey } from '../../audit/sink.js';
import { checkToken, mintToken, modelScopes, readRevoked, revoke } from '../../audit/token.js';
import { parseTtl } from '../../manifest/scope.js';
import { collectEvidence } from '../../session/evidence.js';
import { listSessions, readSession, signalSession, type Session } from '../../session/records.js';
import { stateDir } from '../../session/state.js';
import { loadModel, manifestOptionsHelp, type ManifestOptions } from '../context.js';
import type { Io } from '../io.js';

function targets(state: string, id: string | undefined, opts: { agent?: string; all?: boolean }): Session[] {
  const running = listSessions(state).filter((s) => s.state !== 'exited');
  if (opts.all) return running;
  if (opts.agent) return running.filter((s) => s.agent === opts.agent);
  if (!id) throw new AgentboxError('USAGE', 'name a session, --agent NAME or --all');
  const s = readSession(state, id);
  if (!s) throw new AgentboxError('USAGE', `no session ${id}`, { details: ['agentbox ps lists sessions'] });
  return [s];
}

async function waitFor(state: string, id: string, pred: (s: Session) => boolean, ms: number): Promise<Session | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const s = readSession(state, id);
    if (s && pred(s)) return s;
    if (Date.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, 2));
  }
}

export async function quarantineCommand(id: string | undefined, opts: { agent?: string; all?: boolean; reason?: string }, io: Io): Promise<number> {
  const state = stateDir();
  const list = targets(state, id, opts);
  if (list.length === 0) throw new AgentboxError('USAGE', 'no running session matches', { details: ['agentbox ps lists sessions'] });
  const audit = new AuditSink(state);
  const reason = opts.reason ?? 'quarantined by an incident responder';
  const results = [];
  for (const s of list) {
    if (s.state === 'quarantined') {
      io.info(`${s.id} is already quarantined`);
      continue;
    }
    audit.append({ session: s.id, agent: s.agent, action: 'quarantine.requested', resource: s.id, decision: 'deny', reason });
    const t0 = performance.now();
    if (!signalSession(s, 'quarantine')) throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id}: its launcher (pid ${s.launcherPid}) is gone; use agentbox kill`);
    const q = await waitFor(state, s.id, (x) => x.state === 'quarantined', 2000);
    const isolatedMs = performance.now() - t0;
    if (!q) throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id}: the launcher did not confirm the quarantine within 2 s`);
    const evidence = collectEvidence(state, q, reason);
    audit.append({ session: s.id, agent: s.agent, action: 'quarantine.evidence', resource: evidence.dir, decision: 'info', reason: 'forensic snapshot taken while frozen', details: { files: evidence.files } });
    if (q.jti && revoke(state, q.jti, reason)) audit.append({ session: s.id, agent: s.agent, action: 'token.revoked', resource: q.jti, decision: 'deny', reason });
    results.push({ session: s.id, agent: s.agent, isolatedMs: Number(isolatedMs.toFixed(1)), evidence: evidence.dir, files: evidence.files, tokenRevoked: q.jti });
    if (!io.json) {
      io.out(`${io.style.red('quarantined')}  ${s.id}: egress cut and processes frozen in ${isolatedMs.toFixed(0)} ms`);
      io.out(`  evidence: ${evidence.dir} (${evidence.files.map((f) => f.name).join(', ')}; hashes in MANIFEST.sha256)`);
      io.out(`  token ${q.jti} revoked; agentbox release ${s.id} thaws it with egress still cut, agentbox kill ${s.id} ends it`);
    }
  }
  if (io.json) io.data(results);
  return 0;
}

export async function releaseCommand(id: string, io: Io): Promise<number> {
  const state = stateDir();
  const s = readSession(state, id);
  if (!s) throw new AgentboxError('USAGE', `no session ${id}`);
  if (s.state !== 'quarantined') throw new AgentboxError('USAGE', `${id} is ${s.state}, not quarantined`);
  if (!signalSession(s, 'release')) throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: its launcher (pid ${s.launcherPid}) is gone; use agentbox kill`);
  const r = await waitFor(state, id, (x) => x.state === 'running', 2000);
  if (!r) throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: the launcher did not confirm the release`);
  io.out(`released ${id}: processes thawed; egress stays cut (relaunch with a new grant to restore it)`);
  return 0;
}

export async function tokenMintCommand(arg: string, opts: ManifestOptions & { ttl?: string }, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const ttl = opts.ttl ? parseTtl(opts.ttl) : undefined;
  if (ttl && !ttl.ok) throw new AgentboxError('USAGE', `--ttl ${opts.ttl}: ${ttl.message}`);
  const seconds = ttl?.ok ? ttl.value : model.ttlSeconds;
  const state = stateDir();
  const { token, claims } = mintToken(deviceKey(state).privateKey, { sub: model.name, sid: '-', scopes: modelScopes(model), exp: seconds !== undefined ? Math.floor(Date.now() / 1000) + seconds : null });
  new AuditSink(state).append({ session: '-', agent: model.name, action: 'token.minted', resource: claims.jti, decision: 'info', reason: 'minted for a later launch', details: { scopes: claims.scopes, exp: claims.exp } });
  if (io.json) io.data({ token, claims });
  else io.out(token);
  return 0;
}

/** Reads a token given inline or as @FILE (or a path to a file holding it). */
export function readTokenArg(arg: string): string {
  if (arg.startsWith('@')) return readFileSync(arg.slice(1), 'utf8').trim();
  if (arg.split('.').length === 3 && !arg.includes('/')) return arg.trim();
  return readFileSync(arg, 'utf8').trim();
}

export async function tokenVerifyCommand(arg: string, io: Io): Promise<number> {
  const state = stateDir();
  const r = checkToken(readTokenArg(arg), deviceKey(state).publicKey, readRevoked(state));
  if (io.json) io.data(r);
  else if (r.ok) io.out(`${io.style.green('valid')}  ${r.claims.jti}: ${r.claims.sub}, ${r.claims.scopes.length} scopes, ${r.claims.exp === null ? 'no expiry' : `expires ${new Date(r.claims.exp * 1000).toISOString()}`}`);
  else io.out(`${io.style.red('refused')}  ${r.reason}`);
  return r.ok ? 0 : 3;
}

export async function tokenRevokeCommand(jti: string, opts: { reason?: string }, io: Io): Promise<number> {
  if (!/^[0-9a-f-]{36}$/.test(jti)) throw new AgentboxError('USAGE', `${jti} is not a token id (a UUID)`);
  const state = stateDir();
  const reason = opts.reason ?? 'revoked by an administrator';
  const added = revoke(state, jti, reason);
  if (added) new AuditSink(state).append({ session: '-', agent: '-', action: 'token.revoked', resource: jti, decision: 'deny', reason });
  io.out(added ? `revoked ${jti}; any session running under it ends within a second` : `${jti} was already revoked`);
  return 0;
}

export function registerIncident(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('quarantine')
    .description('cut egress, freeze every process, take a forensic snapshot and revoke the token of running sessions')
    .argument('[session]', 'session id from agentbox ps')
    .option('--agent <name>', 'every running session of this agent')
    .option('--all', 'every running session')
    .option('--reason <text>', 'why (recorded in the audit log and the evidence)')
    .addHelpText('after', `
Examples:
  agentbox quarantine cowork-3f9a12c0 --reason "exfiltration alert INC-1234"
  agentbox quarantine --agent cowork
  agentbox quarantine --all --json`)
    .action((id: string | undefined, opts: { agent?: string; all?: boolean; reason?: string }) => run((io) => quarantineCommand(id, opts, io)));
  program
    .command('release')
    .description('thaw a quarantined session; its egress stays cut')
    .argument('<session>', 'session id')
    .addHelpText('after', `
Examples:
  agentbox release cowork-3f9a12c0`)
    .action((id: string) => run((io) => releaseCommand(id, io)));
  const token = program.command('token').description('capability tokens: mint, verify, revoke');
  token
    .command('mint')
    .description('mint a token with an agent\'s effective grants as scopes')
    .argument('<agent|file>', 'shipped agent profile or manifest')
    .option('--ttl <duration>', 'lifetime such as 10m (default: the manifest ttl)')
    .option('--profile <presets>', manifestOptionsHelp.profile)
    .option('--home <dir>', manifestOptionsHelp.home)
    .addHelpText('after', `
Examples:
  agentbox token mint cowork --ttl 10m > cowork.token
  agentbox launch cowork --token cowork.token`)
    .action((arg: string, opts: ManifestOptions & { ttl?: string }) => run((io) => tokenMintCommand(arg, opts, io)));
  token
    .command('verify')
    .description('check a token: signature, expiry, revocation (exit 0 valid, 3 refused)')
    .argument('<token>', 'the token, @FILE, or a file path')
    .addHelpText('after', `
Examples:
  agentbox token verify @cowork.token --json`)
    .action((arg: string) => run((io) => tokenVerifyCommand(arg, io)));
  token
    .command('revoke')
    .description('revoke a token by its id; sessions running under it end')
    .argument('<jti>', 'token id')
    .option('--reason <text>', 'why')
    .addHelpText('after', `
Examples:
  agentbox token revoke 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --reason "laptop lost"`)
    .action((jti: string, opts: { reason?: string }) => run((io) => tokenRevokeCommand(jti, opts, io)));
}
