/**
 * Where agentbox keeps sessions, evidence and the audit log (SPEC §7):
 * AGENTBOX_STATE_DIR, else /var/lib/agentbox as root, else $XDG_STATE_HOME/agentbox
 * (default ~/.local/state/agentbox).
 */
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { EnvVar } from '../env.js';

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env[EnvVar.stateDir] || (process.getuid?.() === 0 ? '/var/lib/agentbox' : join(env[EnvVar.xdgStateHome] || join(homedir(), '.local', 'state'), 'agentbox'));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}
