/**
 * `launch AGENT [options] CMD ARGS...`: agentbox's own options stop at the first argument
 * after the agent name, as `docker run`'s do at the image: `launch shell ls -la` runs
 * `ls -la`. Options between the agent name and the command (`launch x --verbose -- cmd`)
 * are still agentbox's. Pure: argv in, argv out (a `--` inserted before the command).
 */
import type { Command } from 'commander';

/**
 * agentbox options that change what the box is (or whether one starts): written after the
 * command without a `--`, they would silently become the command's arguments, so they are
 * refused instead (`launch x cmd --token T` must not launch without the token).
 */
export const GUARDED = ['--token', '--policy', '--dry-run', '--runtime', '--isolation', '--profile', '--env', '--env-file', '--home'];

/** The flags of `cmd` that take a value (`--home DIR`), long and short. */
function valueFlags(cmd: Command): Set<string> {
  const out = new Set<string>();
  for (const o of cmd.options) {
    if (!o.required && !o.optional) continue;
    if (o.long) out.add(o.long);
    if (o.short) out.add(o.short);
  }
  return out;
}

export interface Split {
  /** argv for commander, with `--` before the command when agentbox inserted it. */
  args: string[];
  /** Guarded agentbox options that appear among the command's arguments without an explicit `--`. */
  shadowed: string[];
}

/** argv as given to commander (node, script, ...). */
export function splitLaunchArgs(argv: readonly string[], sub: Command, globalValueFlags: ReadonlySet<string> = new Set()): Split {
  const args = [...argv];
  let i = 2;
  // Global options, then the sub-command's name.
  while (i < args.length && args[i]!.startsWith('-') && args[i] !== '--') i += globalValueFlags.has(args[i]!) ? 2 : 1;
  if (args[i] !== sub.name()) return { args, shadowed: [] };
  const takes = valueFlags(sub);
  let positional = 0;
  for (i++; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return { args, shadowed: [] };
    if (a.startsWith('-') && a !== '-') {
      if (!a.includes('=') && takes.has(a)) i++;
      continue;
    }
    positional++;
    if (positional === 2) {
      const shadowed = args.slice(i + 1).filter((x) => GUARDED.includes(x.split('=')[0]!));
      args.splice(i, 0, '--');
      return { args, shadowed };
    }
  }
  return { args, shadowed: [] };
}

export const stopOptionsAtCommand = (argv: readonly string[], sub: Command, globalValueFlags?: ReadonlySet<string>): string[] => splitLaunchArgs(argv, sub, globalValueFlags).args;
