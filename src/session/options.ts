/** What a session is given (beyond its model and box), and what it reports at its end. */
import type { Labels } from '../policy/entities.js';
import type { Authorizer } from '../policy/verdict.js';
import type { ProcessIdentity } from '../host/proc.js';
import type { Change } from './layers.js';
import type { SessionControl } from './control.js';
import type { SessionCa } from '../egress/ca.js';
import type { Brokered } from '../egress/credentials.js';
import type { ObservationSummary } from './observe.js';

export interface SessionOptions {
  /** The command the agent runs (for the launch audit entry). */
  command: readonly string[];
  state: string;
  verbose: boolean;
  log: (line: string) => void;
  /** For tests: resolve names without DNS. */
  resolve?: (host: string) => Promise<string[]>;
  /** A verified token the session runs under (its scopes were already intersected). */
  tokenExp?: number | null;
  /** Organisation policy the egress proxy consults per connection (the launch check already passed). */
  policy?: { engine: Authorizer; labels: Labels; dir: string };
  /** Names of variables added on the command line (--env, --env-file), for the launch audit entry; never their values. */
  envAdded?: string[];
  /** Ask for consent on the launching terminal too (it is a TTY). */
  tty?: boolean;
  /** Starts the reaper for a box that needs one (the CLI knows how to run agentbox). */
  spawnReaper?: (state: string, session: string) => ProcessIdentity | null;
  /** Where quarantine, release and end requests come from (default: the launcher's signals). */
  control?: SessionControl;
  /** The session CA and upstream trust (when anything is decrypted), and the brokered credentials. */
  egress?: { tls: { ca: SessionCa; trust: string[] } | undefined; brokered: Brokered[] };
}

export interface LaunchResult {
  session: string;
  exitCode: number;
  endReason: string;
  changes: Change[];
  egress: { allowed: number; denied: Record<string, number> };
  /** Persist: whether the commit applied (null for revert or no layers). */
  committed: boolean | null;
  /** What the kernel saw (undefined when the box was not observed). */
  observed?: ObservationSummary;
  /** A behaviour rule that tripped, and what it did. */
  monitorTrips?: { rule: string; action: string }[];
}

