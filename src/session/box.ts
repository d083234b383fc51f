/**
 * What a runtime hands the session: a `Box` starts the agent, signals, freezes and
 * thaws it, and removes what the runtime made. The session (lifecycle.ts) drives any
 * box the same way; runtimes/ build them, and a test can hand it a fake one.
 */
import type { RuntimeKind } from '../model/types.js';
import type { SessionPaths } from '../box/common.js';
import type { ProcessIdentity } from '../host/proc.js';
import type { SessionLayers } from './layers.js';
import type { EvidenceInput } from './evidence.js';

/** What a runtime provides to the session. */
export interface Box {
  runtime: RuntimeKind;
  isolation: 'runc' | 'gvisor' | null;
  id: string;
  paths: SessionPaths;
  /** The writable layers (null when nothing is granted for writing). */
  layers: SessionLayers | null;
  /** Where the session's egress proxy listens, if the agent has network. */
  proxySocket: string | undefined;
  /** The agent's uid and gid (owner of the proxy socket; the commit runs as them). */
  uid: number;
  gid: number;
  cgroupDirs: string[];
  /** The controls this box applies (for the launch audit entry). */
  controls: string[];
  /** Facts for the launch audit entry (image and its digest, accelerator). */
  facts?: Record<string, unknown>;
  /** The container runtime: a reaper process finishes the session if the launcher dies. */
  needsReaper?: boolean;
  /** Set by the session before start: who attached to the agent's terminal and left (audited). */
  terminalEvents?: { attached(by: string): void; detached(by: string): void };
  /** How `agentbox exec` joins this box (written to the session dir when the box starts). */
  execSpec?: ExecSpec;
  /** Starts the agent; `exited` resolves with its exit code (127/125 for not found / failed to start). */
  start(): Promise<BoxStarted>;
  signal(sig: NodeJS.Signals): void | Promise<void>;
  /** Freezes every process of the agent; returns how, in words. */
  freeze(): string | Promise<string>;
  thaw(): void | Promise<void>;
  limitHits(): { pids: number; memory: number };
  /** Ends what is left of the box and removes what the runtime made (cgroups, container, host mounts); the layers stay. */
  cleanup(): void | Promise<void>;
  /** Runtime-specific evidence (the engine's process list, what cannot be read). */
  evidence?(): EvidenceInput;
  /**
   * Kernel observation. `observed`: what the runtime watches, or why it cannot (for the
   * launch entry). The session sets `kernel` before start; a runtime that observes starts
   * its watchers in start(), sends their lines there, holds the agent until they are ready
   * (or fails the start, exit 4), and sets `owns` once it knows the box's processes.
   */
  observed?: { files: boolean; denials: boolean; why?: string };
  kernel?: { fileLine(line: string): void; auditLine(line: string): void };
  owns?(pid: number): boolean;
}

export interface BoxStarted {
  pid: number;
  identity: ProcessIdentity | null;
  container?: string;
  exited: Promise<number>;
}

/**
 * What `agentbox exec` needs to run a command the way the agent runs: the environment,
 * the working directory and (process runtime) the Landlock rules, helper first.
 */
export interface ExecSpec {
  env: [string, string][];
  cwd: string;
  landlock: string[];
}

/** The file in the session dir that holds the ExecSpec. */
export const EXEC_SPEC = 'exec.json';

/** The attach socket of a session whose agent has a terminal of its own (root only, never in the box). */
export const attachSocket = (paths: SessionPaths) => `${paths.run}/attach.sock`;
