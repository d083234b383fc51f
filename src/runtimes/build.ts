/**
 * What every runtime's build takes and gives: the plan it made (printed by a dry run)
 * and, unless it was a dry run, the `Box` the session drives.
 */
import type { Box } from '../session/box.js';

export interface BuildOptions {
  command: string[];
  state: string;
  dryRun: boolean;
  log: (line: string) => void;
  /** Progress messages even without a terminal. */
  verbose?: boolean;
  /** The Landlock helper, when it is built and the kernel has Landlock (process runtime). */
  landlockHelper?: string | undefined;
  /** Give the agent its own pseudo-terminal, relayed to this one (stdin and stdout are terminals). */
  pty?: boolean;
  /** Container runtime: runc or gVisor (default: runtime.isolation). */
  isolation?: 'runc' | 'gvisor';
}

export interface Built<P> {
  plan: P;
  /** Null for a dry run: nothing was made. */
  box: Box | null;
}
