/**
 * Incident response: `agentbox quarantine`, `agentbox release`, and capability tokens
 * (`agentbox token mint|verify|revoke`).
 */
import type { Command } from 'commander';
import { AgentboxError, ExitCode } from '../../errors.js';
import { parseTtl } from '../../model/grammar.js';
import { quarantine, release } from '../../actions/incident.js';
import { mintFor, revokeId, verifyToken } from '../../actions/tokens.js';
import { loadModel } from '../../actions/load.js';
import { manifestOptionsHelp, type ManifestOptions } from '../context.js';
import type { Io } from '../io.js';

export async function quarantineCommand(id: string | undefined, opts: { agent?: string; all?: boolean; reason?: string }, io: Io): Promise<number> {
  const results = await quarantine({ ...(id ? { id } : {}), ...opts }, opts.reason ?? 'quarantined by an incident responder', io);
  if (io.json) io.data(results);
  else {
    for (const r of results) {
      if (!r.quarantined) {
        io.error(`${r.session}: not quarantined: ${r.problem}`);
        continue;
      }
      if (r.isolatedMs !== undefined) io.out(`${io.style.red('quarantined')}  ${r.session}: egress cut and processes frozen in ${r.isolatedMs.toFixed(0)} ms`);
      else io.out(`${io.style.red('quarantined')}  ${r.session}: ${r.frozenBy}`);
      if (r.isolatedMs !== undefined) io.out(`  frozen by ${r.frozenBy}; ${r.severed!.length} open egress connection${r.severed!.length === 1 ? '' : 's'} shut down from outside`);
      if (!r.launcherAnswered) io.out('  the launcher did not answer on its control socket: the token was revoked and the evidence taken by this command');
      if (r.evidence) io.out(`  evidence: ${r.evidence} (${r.files!.map((f) => f.name).join(', ')}; hashes in MANIFEST.sha256)${r.notTaken!.length ? `; not taken: ${r.notTaken!.map((n) => `${n.part} (${n.why})`).join('; ')}` : ''}`);
      else io.out(`  ${r.problem}`);
      io.out(`  ${r.tokenRevoked ? `token ${r.tokenRevoked} revoked` : 'no capability token to revoke (a system-service agent has none)'}; agentbox release ${r.session} thaws it with egress still cut, agentbox kill ${r.session} ends it`);
    }
  }
  return results.some((r) => !r.quarantined) ? ExitCode.unavailable : ExitCode.ok;
}

export async function releaseCommand(id: string, io: Io): Promise<number> {
  const s = await release(id);
  io.out(`released ${id}: processes thawed; egress stays cut (${s.unit ? `agentbox kill ${id} ends this session; the next start of ${s.unit} has a new proxy` : 'relaunch with a new grant to restore it'})`);
  return 0;
}

export async function tokenMintCommand(arg: string, opts: ManifestOptions & { ttl?: string }, io: Io): Promise<number> {
  const { model } = loadModel(arg, opts, io);
  const ttl = opts.ttl ? parseTtl(opts.ttl) : undefined;
  if (ttl && !ttl.ok) throw new AgentboxError('USAGE', `--ttl ${opts.ttl}: ${ttl.message}`);
  const { token, claims } = await mintFor(model, ttl?.ok ? ttl.value : model.ttlSeconds);
  if (io.json) io.data({ token, claims });
  else io.out(token);
  return 0;
}

export async function tokenVerifyCommand(arg: string, io: Io): Promise<number> {
  const r = await verifyToken(arg);
  if (io.json) io.data(r);
  else if (r.ok) io.out(`${io.style.green('valid')}  ${r.claims.jti}: ${r.claims.sub}, ${r.claims.scopes.length} scopes, ${r.claims.exp === null ? 'no expiry' : `expires ${new Date(r.claims.exp * 1000).toISOString()}`}`);
  else io.out(`${io.style.red('refused')}  ${r.reason}`);
  return r.ok ? 0 : 3;
}

export async function tokenRevokeCommand(jti: string, opts: { reason?: string }, io: Io): Promise<number> {
  const added = revokeId(jti, opts.reason ?? 'revoked by an administrator');
  io.out(added ? `revoked ${jti}; any session running under it ends within a second` : `${jti} was already revoked`);
  return 0;
}

export function registerIncident(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('quarantine')
    .description('cut egress, freeze every process, take a forensic snapshot and revoke the token of running sessions (acts through the kernel: it does not wait for the launcher)')
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
