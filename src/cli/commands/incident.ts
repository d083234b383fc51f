/**
 * Incident response: `agentbox quarantine`, `agentbox release`, and capability tokens
 * (`agentbox token mint|verify|revoke`).
 */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { AgentboxError, ExitCode } from '../../errors.js';
import { AuditSink, deviceKey } from '../../audit/sink.js';
import { checkToken, mintToken, modelScopes, readRevoked, revoke } from '../../tokens/token.js';
import { parseTtl } from '../../manifest/scope.js';
import { collectEvidence } from '../../session/evidence.js';
import { readSession, signalSession, type Session } from '../../session/records.js';
import { reconcile } from '../../actions/orphans.js';
import { stateDir } from '../../session/state.js';
import { loadModel, manifestOptionsHelp, type ManifestOptions } from '../context.js';
import type { Io } from '../io.js';

function targets(state: string, sessions: Session[], id: string | undefined, opts: { agent?: string; all?: boolean }): Session[] {
  const live = sessions.filter((s) => s.state === 'running' || s.state === 'quarantined');
  if (opts.all) return live;
  if (opts.agent) return live.filter((s) => s.agent === opts.agent);
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

/**
 * Quarantines every target in the order that keeps the kill switch working: each
 * session is asked to cut and freeze at once, then each confirmation awaited, then
 * every token revoked, and only then is evidence taken (streamed to files), one
 * session at a time; one failure never stops the others.
 */
export async function quarantineCommand(id: string | undefined, opts: { agent?: string; all?: boolean; reason?: string }, io: Io): Promise<number> {
  const state = stateDir();
  const list = targets(state, await reconcile(state), id, opts);
  if (list.length === 0) throw new AgentboxError('USAGE', 'no running session matches', { details: ['agentbox ps lists sessions'] });
  const audit = new AuditSink(state);
  const reason = opts.reason ?? 'quarantined by an incident responder';
  const results: { session: string; agent: string; quarantined: boolean; isolatedMs?: number; evidence?: string; files?: { name: string }[]; notTaken?: { part: string; why: string }[]; tokenRevoked?: string | null; problem?: string }[] = [];
  const asked: { s: Session; t0: number }[] = [];
  for (const s of list) {
    if (s.state === 'quarantined') {
      io.info(`${s.id} is already quarantined`);
      continue;
    }
    if (s.state !== 'running') {
      results.push({ session: s.id, agent: s.agent, quarantined: false, problem: `it is ${s.state}` });
      continue;
    }
    audit.append({ session: s.id, agent: s.agent, action: 'quarantine.requested', resource: s.id, decision: 'deny', reason });
    const t0 = performance.now();
    if (signalSession(s, 'quarantine')) asked.push({ s, t0 });
    else results.push({ session: s.id, agent: s.agent, quarantined: false, problem: `its launcher (pid ${s.launcherPid}) is gone; agentbox kill ${s.id} ends it` });
  }
  const confirmed: { q: Session; ms: number }[] = [];
  for (const { s, t0 } of asked) {
    const q = await waitFor(state, s.id, (x) => x.state === 'quarantined', 2000);
    if (q) confirmed.push({ q, ms: performance.now() - t0 });
    else results.push({ session: s.id, agent: s.agent, quarantined: false, problem: 'the launcher did not confirm the quarantine within 2 s' });
  }
  for (const { q } of confirmed) {
    try {
      if (q.jti && revoke(state, q.jti, reason)) audit.append({ session: q.id, agent: q.agent, action: 'token.revoked', resource: q.jti, decision: 'deny', reason });
    } catch (e) {
      audit.append({ session: q.id, agent: q.agent, action: 'token.revoke-failed', resource: q.jti ?? '-', decision: 'info', reason: (e as Error).message });
    }
  }
  for (const { q, ms } of confirmed) {
    const r: (typeof results)[number] = { session: q.id, agent: q.agent, quarantined: true, isolatedMs: Number(ms.toFixed(1)), tokenRevoked: q.jti };
    try {
      const input = q.runtime === 'container' && q.container ? await containerEvidence(q) : q.runtime === 'microvm' ? { connectionsUnavailable: "the micro-VM's sockets live in its own kernel; egress.json is taken only by its launcher" } : {};
      const ev = await collectEvidence(state, q, reason, input);
      audit.append({ session: q.id, agent: q.agent, action: 'quarantine.evidence', resource: ev.dir, decision: 'info', reason: ev.notTaken.length ? `forensic snapshot taken while frozen; ${ev.notTaken.length} part(s) could not be taken` : 'forensic snapshot taken while frozen', details: { files: ev.files, notTaken: ev.notTaken } });
      Object.assign(r, { evidence: ev.dir, files: ev.files, notTaken: ev.notTaken });
    } catch (e) {
      audit.append({ session: q.id, agent: q.agent, action: 'quarantine.evidence-failed', resource: q.id, decision: 'info', reason: (e as Error).message.split('\n')[0] ?? 'failed' });
      r.problem = `evidence could not be taken: ${(e as Error).message.split('\n')[0]}`;
    }
    results.push(r);
  }
  if (io.json) io.data(results);
  else {
    for (const r of results) {
      if (!r.quarantined) {
        io.error(`${r.session}: not quarantined: ${r.problem}`);
        continue;
      }
      io.out(`${io.style.red('quarantined')}  ${r.session}: egress cut and processes frozen in ${r.isolatedMs!.toFixed(0)} ms`);
      if (r.evidence) io.out(`  evidence: ${r.evidence} (${r.files!.map((f) => f.name).join(', ')}; hashes in MANIFEST.sha256)${r.notTaken!.length ? `; not taken: ${r.notTaken!.map((n) => `${n.part} (${n.why})`).join('; ')}` : ''}`);
      else io.out(`  ${r.problem}`);
      io.out(`  token ${r.tokenRevoked} revoked; agentbox release ${r.session} thaws it with egress still cut, agentbox kill ${r.session} ends it`);
    }
  }
  return results.some((r) => !r.quarantined) ? ExitCode.unavailable : ExitCode.ok;
}

async function containerEvidence(s: Session) {
  const { dockerClient, engineProcesses } = await import('../../runtimes/container/runtime.js');
  const docker = await dockerClient();
  return {
    processes: () => engineProcesses(docker, s.container!, s.isolation === 'gvisor' ? 'gvisor' : 'runc'),
    ...(s.isolation === 'gvisor' ? { connectionsUnavailable: "under gVisor the sandbox's sockets live in its own network stack (the Sentry), not in any host table" } : {}),
  };
}

export async function releaseCommand(id: string, io: Io): Promise<number> {
  const state = stateDir();
  const s = readSession(state, id);
  if (!s) throw new AgentboxError('USAGE', `no session ${id}`);
  if (s.state !== 'quarantined') throw new AgentboxError('USAGE', `${id} is ${s.state}, not quarantined`);
  audit(state, s, 'quarantine.release-requested', 'release asked by an incident responder');
  if (!signalSession(s, 'release')) throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: its launcher (pid ${s.launcherPid}) is gone; use agentbox kill`);
  const r = await waitFor(state, id, (x) => x.state === 'running', 2000);
  if (!r) throw new AgentboxError('CONTROL_UNAVAILABLE', `${id}: the launcher did not confirm the release`);
  io.out(`released ${id}: processes thawed; egress stays cut (relaunch with a new grant to restore it)`);
  return 0;
}

function audit(state: string, s: Session, action: string, reason: string): void {
  new AuditSink(state).append({ session: s.id, agent: s.agent, action, resource: s.id, decision: 'info', reason });
}

export async function tokenMintCommand(arg: string, opts: ManifestOptions & { ttl?: string }, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const ttl = opts.ttl ? parseTtl(opts.ttl) : undefined;
  if (ttl && !ttl.ok) throw new AgentboxError('USAGE', `--ttl ${opts.ttl}: ${ttl.message}`);
  const seconds = ttl?.ok ? ttl.value : model.ttlSeconds;
  const state = stateDir();
  const { token, claims } = await mintToken(deviceKey(state).privateKey, { sub: model.name, sid: '-', scopes: modelScopes(model), exp: seconds !== undefined ? Math.floor(Date.now() / 1000) + seconds : null });
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
  const r = await checkToken(readTokenArg(arg), deviceKey(state).publicKey, readRevoked(state));
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
