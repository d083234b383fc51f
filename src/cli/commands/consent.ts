/**
 * Just-in-time consent from another terminal:
 *   agentbox approvals                      what agents are waiting for
 *   agentbox approve ID --once|--session    let the held connection through
 *   agentbox deny ID                        refuse it
 * The waiting session audits each answer with who gave it.
 */
import type { Command } from 'commander';
import { AgentboxError } from '../../errors.js';
import { answer, pending, type ConsentDecision } from '../../actions/consent.js';
import type { Io } from '../io.js';

export async function approvalsCommand(io: Io): Promise<number> {
  const { state, requests } = pending();
  if (io.json) {
    io.data(requests);
    return 0;
  }
  if (requests.length === 0) {
    io.info(`no agent is waiting for an answer in ${state} (a session started by another account keeps its requests in that account's state dir: sudo agentbox approvals for root's)`);
    return 0;
  }
  for (const r of requests) {
    io.out(`${io.style.bold(r.id)}  ${r.question}`);
    io.out(`          session ${r.session}; denied in ${r.secondsLeft}s without an answer`);
    io.out(`          agentbox approve ${r.id} --once | agentbox approve ${r.id} --session | agentbox deny ${r.id}`);
  }
  return 0;
}

function answerCommand(id: string, decision: ConsentDecision, io: Io): number {
  const req = answer(id, decision);
  const what = decision === 'deny' ? 'denied' : decision === 'once' ? 'allowed once' : 'allowed for the rest of the session';
  if (io.json) io.data({ id, answer: decision, agent: req.agent, session: req.session, host: req.host, port: req.port });
  else io.out(`${req.agent} → ${req.host}:${req.port}: ${what}`);
  return 0;
}

export function registerConsent(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  program
    .command('approvals')
    .description('list connections held until a person answers (egress.consent: ask)')
    .addHelpText('after', `
Examples:
  agentbox approvals
  agentbox approvals --json | jq -r '.[].id'`)
    .action(() => run((io) => approvalsCommand(io)));
  program
    .command('approve')
    .description('allow a held connection: --once (this connection) or --session (this host:port until the session ends)')
    .argument('<id>', 'request id from agentbox approvals')
    .option('--once', 'allow this one connection')
    .option('--session', 'allow this host:port for the rest of the session')
    .addHelpText('after', `
Examples:
  agentbox approve 3f9a01c2 --once
  agentbox approve 3f9a01c2 --session`)
    .action((id: string, opts: { once?: boolean; session?: boolean }) =>
      run(async (io) => {
        if (Boolean(opts.once) === Boolean(opts.session)) throw new AgentboxError('USAGE', 'say how long: --once (this connection) or --session (until the session ends)');
        return answerCommand(id, opts.once ? 'once' : 'session', io);
      }),
    );
  program
    .command('deny')
    .description('refuse a held connection (remembered for the rest of the session)')
    .argument('<id>', 'request id from agentbox approvals')
    .addHelpText('after', `
Examples:
  agentbox deny 3f9a01c2`)
    .action((id: string) => run(async (io) => answerCommand(id, 'deny', io)));
}
