/**
 * What every runtime's build takes and gives: the plan it made (printed by a dry run)
 * and, unless it was a dry run, the `Box` the session drives.
 */
import { mkdirSync } from 'node:fs';
import { writeFileNoFollow } from '../host/open-exact.js';
import { posix } from 'node:path';
import type { Box } from '../session/box.js';
import { CA_BUNDLE_NAME, proxyDir, type BoxEgress, type SessionPaths } from '../box/common.js';

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
  /** The session's CA bundle (PEM text, placed in the session's proxy dir) and the credential placeholders. */
  egress?: { bundle: string | undefined; placeholders: Record<string, string> };
  /**
   * Watch the box through the kernel (file activity, denials): on by default where it can be
   * (root, helpers built); false (`launch --no-observe`) turns it off, which the launch entry records.
   */
  observe?: boolean;
}

/**
 * Writes the session's CA bundle into its proxy dir (root-owned, 0644: public
 * certificates) and returns what the box plan needs. Nothing when there is no egress.
 */
export function placeEgress(paths: SessionPaths, e: BuildOptions['egress'], dryRun: boolean): BoxEgress | undefined {
  if (!e) return undefined;
  let caBundle: string | undefined;
  if (e.bundle !== undefined) {
    const dir = proxyDir(paths);
    caBundle = posix.join(dir, CA_BUNDLE_NAME);
    if (!dryRun) {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      writeFileNoFollow(caBundle, e.bundle, 0o644, false);
    }
  }
  return { caBundle, placeholders: e.placeholders };
}

export interface Built<P> {
  plan: P;
  /** Null for a dry run: nothing was made. */
  box: Box | null;
}
