/**
 * `agentbox daemon run` and `agentbox daemon status`: agentboxd, which governs the
 * system-service agents `apply` installed (actions/daemon.ts).
 */
import type { Command } from 'commander';
import { AgentboxError } from '../../errors.js';
import { parseTtl } from '../../model/grammar.js';
import { termSafe } from '../../escape/terminal.js';
import { CONFIG_DIR, daemonHealth, runDaemon, type DaemonHealth } from '../../actions/daemon.js';
import type { Io } from '../io.js';

function show(h: DaemonHealth, io: Io): void {
  if (!h.running) {
    io.out(`${io.style.red('down')}  ${h.problem ?? 'agentboxd is not running'}`);
    return;
  }
  io.out(`${h.problem ? io.style.yellow('degraded') : io.style.green('ok')}  agentboxd pid ${h.pid}, since ${h.since}; organisation policy: ${h.policy ? termSafe(h.policy) : 'none (AGENTBOX_POLICY is not set in its environment)'}`);
  for (const a of h.agents) {
    const what = a.refused ? `refused, no egress: ${a.refused}` : a.listening ? `proxy on ${a.listen}` : `nothing listens on ${a.listen}`;
    io.out(`  ${termSafe(a.agent).padEnd(16)} uid ${String(a.uid).padEnd(6)} ${termSafe(a.unit)}  session ${a.session ?? '-'} (${a.state ?? '-'})  ${termSafe(what)}`);
  }
  for (const n of h.notGoverned) io.out(`  ${termSafe(n).padEnd(16)} applied after agentboxd started: restart it (systemctl restart agentboxd)`);
}

export async function statusCommand(opts: { wait?: string; configDir?: string; ready?: boolean }, io: Io): Promise<number> {
  let waitMs = 0;
  if (opts.wait !== undefined) {
    const t = parseTtl(opts.wait);
    if (!t.ok) throw new AgentboxError('USAGE', `--wait ${termSafe(opts.wait)}: ${t.message}`, { details: ['for example --wait 10s'] });
    waitMs = t.value * 1000;
  }
  const deadline = Date.now() + waitMs;
  const good = (x: DaemonHealth) => (opts.ready ? x.ready : x.running && !x.problem);
  let h = await daemonHealth(opts.configDir ?? CONFIG_DIR);
  while (!good(h) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    h = await daemonHealth(opts.configDir ?? CONFIG_DIR);
  }
  if (io.json) io.data(h);
  else show(h, io);
  return good(h) ? 0 : 1;
}

export function registerDaemon(program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>): void {
  const daemon = program.command('daemon').description('agentboxd: the egress proxy and control sockets of system-service agents');
  daemon
    .command('run')
    .description('run agentboxd in the foreground (its systemd unit, agentboxd.service, runs this)')
    .option('--config-dir <dir>', `where apply installed the agents' daemon configs`, CONFIG_DIR)
    .addHelpText('after', `
For every agent apply installed with network grants (CONFIG_DIR/agentbox-NAME.daemon.json):
an egress proxy on the address its unit names, served only to that agent's uid, with
its allowlist, organisation policy (AGENTBOX_POLICY), consent, DLP and upload limits,
audited; and a control socket, so agentbox ps, quarantine, release and kill work on it.
SIGTERM, SIGINT or SIGHUP stop it, and systemd stops the agents bound to it.

Exit codes: 0 stopped by a signal; 1 a config is invalid (changed on disk: apply again);
4 a proxy address is taken.

Examples:
  systemctl enable --now agentboxd
  agentbox daemon run
  AGENTBOX_POLICY=/etc/agentbox/policy agentbox daemon run --config-dir /etc/agentbox`)
    .action((opts: { configDir: string }) => run((io) => runDaemon({ configDir: opts.configDir, log: (l) => io.info(l) })));
  daemon
    .command('status')
    .description("report agentboxd's health: running, and each agent's proxy listening")
    .option('--wait <duration>', 'wait up to this long for it to be healthy')
    .option('--ready', 'healthy means ready: every agent it governs has its proxy (an agent it refused does not count; its unit uses --ready --wait 10s)')
    .option('--config-dir <dir>', "where apply installed the agents' daemon configs", CONFIG_DIR)
    .addHelpText('after', `
Exit codes: 0 running with every applied agent's proxy listening (with --ready: every
agent it governs); 1 down or degraded.

Examples:
  agentbox daemon status
  agentbox daemon status --wait 10s
  agentbox daemon status --json | jq '.agents[] | {agent, listening}'`)
    .action((opts: { wait?: string; configDir?: string; ready?: boolean }) => run((io) => statusCommand(opts, io)));
}
