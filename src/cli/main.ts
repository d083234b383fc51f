/**
 * The CLI shell and its single error boundary: the only place that decides exit
 * codes and prints errors. Commands are `async (args, options, io) => exitCode`.
 */
import { Command, CommanderError } from 'commander';
import { AgentboxError, ExitCode } from '../errors.js';
import { debugEnabled } from '../env.js';
import { createIo, type Io } from './io.js';
import { splitLaunchArgs } from './argv.js';
import { usePrecompiledValidator } from '../manifest/parse.js';

type Register = (program: Command, run: (fn: (io: Io) => Promise<number>) => Promise<void>) => void;

/** Command modules, loaded only when their command runs (start-up time is launch time). */
const COMMANDS: Record<string, () => Promise<Register[]>> = {
  validate: async () => [(await import('./commands/validate.js')).registerValidate],
  describe: async () => [(await import('./commands/describe.js')).registerDescribe],
  explain: async () => [(await import('./commands/explain.js')).registerExplain],
  generate: async () => [(await import('./commands/generate.js')).registerGenerate],
  apply: async () => [(await import('./commands/apply.js')).registerApply],
  launch: async () => [(await import('./commands/launch.js')).registerLaunch],
  ps: async () => [(await import('./commands/sessions.js')).registerSessions],
  kill: async () => [(await import('./commands/sessions.js')).registerSessions],
  __reap: async () => [(await import('./commands/sessions.js')).registerSessions],
  doctor: async () => [(await import('./commands/doctor.js')).registerDoctor],
  schema: async () => [(await import('./commands/schema.js')).registerSchema],
  quarantine: async () => [(await import('./commands/incident.js')).registerIncident],
  release: async () => [(await import('./commands/incident.js')).registerIncident],
  token: async () => [(await import('./commands/incident.js')).registerIncident],
  audit: async () => [(await import('./commands/audit.js')).registerAudit],
  policy: async () => [(await import('./commands/policy.js')).registerPolicy],
  version: async () => [(await import('./commands/version.js')).registerVersion],
  init: async () => [(await import('./commands/init.js')).registerInit],
  exec: async () => [(await import('./commands/exec.js')).registerExec],
  attach: async () => [(await import('./commands/attach.js')).registerAttach],
  completion: async () => [(await import('./commands/completion.js')).registerCompletion],
  man: async () => [(await import('./commands/completion.js')).registerCompletion],
  image: async () => [(await import('./commands/image.js')).registerImage],
  approvals: async () => [(await import('./commands/consent.js')).registerConsent],
  approve: async () => [(await import('./commands/consent.js')).registerConsent],
  deny: async () => [(await import('./commands/consent.js')).registerConsent],
  'userns-profile': async () => [(await import('./commands/userns.js')).registerUserns],
  daemon: async () => [(await import('./commands/daemon.js')).registerDaemon],
  report: async () => [(await import('./commands/report.js')).registerReport],
  learn: async () => [(await import('./commands/learn.js')).registerLearn],
};

async function registrations(argv: string[]): Promise<Register[]> {
  const name = argv.slice(2).find((a) => !a.startsWith('-'));
  // Completion and the man page describe every command: they load them all.
  if (name !== undefined && COMMANDS[name] && name !== 'completion' && name !== 'man') return COMMANDS[name]!();
  const seen = new Set<Register>();
  for (const load of Object.values(COMMANDS)) for (const r of await load()) seen.add(r);
  return [...seen];
}

export { VERSION } from '../version.js';
import { VERSION } from '../version.js';

/** The build's precompiled schema validator, when present (start-up time). */
async function precompiledValidator(): Promise<void> {
  try {
    const mod = (await import(new URL('../manifest/schema-validator.js', import.meta.url).href)) as { default: Parameters<typeof usePrecompiledValidator>[0] };
    usePrecompiledValidator(mod.default);
  } catch {
    // not built: parse.ts compiles the schema itself
  }
}

export async function main(argv: string[]): Promise<number> {
  // `agentbox ... | head`: a reader that stops early is not an error. A running session
  // listens too and ends itself the normal way (stop, revert, audit) before exiting.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' && process.stdout.listenerCount('error') === 1) process.exit(0);
  });
  // A person's terminal that went away (stderr EPIPE) changes nothing: messages are dropped, the exit code stands.
  process.stderr.on('error', () => undefined);
  // Outside a session (which records failures and goes on, session/events.ts), an error no
  // code path caught is still one line and exit 125, never a stack trace without --debug.
  const lastResort = (e: unknown) => {
    if (process.listenerCount('uncaughtException') > 1 || process.listenerCount('unhandledRejection') > 1) return;
    process.exit(report(e, createIo({ json: false }), Boolean(argv.includes('--debug')) || debugEnabled()));
  };
  process.on('uncaughtException', lastResort);
  process.on('unhandledRejection', lastResort);
  await precompiledValidator();
  let exitCode: number = ExitCode.ok;
  const program = new Command('agentbox');
  const ioFor = () => {
    const o = program.opts<{ json?: boolean; color?: boolean }>();
    return createIo({ json: Boolean(o.json), ...(o.color === false ? { color: false } : {}) });
  };
  const debug = () => Boolean(program.opts<{ debug?: boolean }>().debug) || debugEnabled();

  const run = async (fn: (io: Io) => Promise<number>) => {
    const io = ioFor();
    try {
      exitCode = await fn(io);
    } catch (e) {
      exitCode = report(e, io, debug());
    }
  };

  program
    .description('Run autonomous AI agents inside a box IT controls: manifests in, OS controls out.')
    .version(VERSION, '-V, --version')
    .option('--json', 'machine-readable output on stdout')
    .option('--no-color', 'no colour (NO_COLOR is respected too)')
    .option('--debug', 'stack traces for internal errors')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', `
Exit codes: 0 ok; 1 a check failed; 2 usage or manifest error; 3 denied by policy;
4 required enforcement unavailable on this host (fail closed).

Examples:
  agentbox describe cowork                       what cowork may do, in plain words
  agentbox validate my-agent.yaml                check a manifest
  agentbox explain cowork fs:read:~/.ssh/id_rsa   which rule decides a request
  agentbox generate cowork --out dist/           systemd, AppArmor, iptables, nft
  agentbox doctor                                what this host can enforce`);

  for (const register of await registrations(argv)) register(program, run);

  const launchCmd = program.commands.find((c) => c.name() === 'launch');
  const split = launchCmd ? splitLaunchArgs(argv, launchCmd) : { args: argv, shadowed: [] };
  if (split.shadowed.length > 0) {
    const io = createIo({ json: false });
    io.error(`${split.shadowed.join(', ')} after the command would be the command's own argument${split.shadowed.length > 1 ? 's' : ''}, not agentbox's; nothing was started`);
    io.info('  put agentbox\'s options before the command (launch AGENT --token T CMD ...), or write -- before the command to pass them to it');
    return ExitCode.usage;
  }
  try {
    await program.parseAsync(split.args);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return ExitCode.ok;
      return ExitCode.usage;
    }
    return report(e, createIo({ json: false }), debug());
  }
  return exitCode;
}

function report(e: unknown, io: Io, debug: boolean): number {
  if (e instanceof AgentboxError) {
    io.error(e.message);
    for (const d of e.details) io.info(`  ${d}`);
    if (debug && e.cause) io.info(String((e.cause as Error).stack ?? e.cause));
    return e.exitCode;
  }
  io.error(`internal error: ${(e as Error)?.message ?? String(e)}`);
  if (debug) io.info(String((e as Error)?.stack ?? ''));
  else io.info('  run again with --debug for the stack trace, and report it');
  return ExitCode.internal;
}
