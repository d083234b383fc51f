/**
 * `agentbox version`: agentbox's version and the commit it was built from, Node's, and
 * the engines found on this host with their own version lines.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VERSION } from '../version.js';
import { packageRoot } from '../host/files.js';
import { probeDocker, version } from '../host/probes.js';

export interface VersionReport {
  version: string;
  commit: string;
  node: string;
  engines: { name: string; found: boolean; version: string }[];
}

/** The commit the build recorded (dist/COMMIT), or "unknown" (built outside git). */
function commit(): string {
  try {
    const c = readFileSync(join(packageRoot(), 'dist', 'COMMIT'), 'utf8').trim();
    return /^[0-9a-f]{7,40}(-dirty)?$/.test(c) ? c : 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function versionReport(): Promise<VersionReport> {
  const tools: [string, string, string[]?][] = [['bubblewrap', 'bwrap'], ['runsc (gVisor)', 'runsc', ['--version']], ['QEMU', 'qemu-system-x86_64']];
  const [docker, ...found] = await Promise.all([probeDocker(), ...tools.map(([, cmd, args]) => version(cmd, args))]);
  const engines = tools.map(([name], i) => ({ name, found: found[i]!.ok, version: found[i]!.ok ? found[i]!.text : 'not found' }));
  const engine = docker.find((p) => p.name === 'dockerd')!;
  engines.splice(1, 0, { name: 'Docker Engine', found: engine.available, version: engine.available ? engine.detail : 'not answering' });
  return { version: VERSION, commit: commit(), node: process.version, engines };
}
