/**
 * `agentbox init [--from PATH_OR_PROFILE] [--out FILE]`: a commented manifest to start
 * from, for a CLI as installed here or from a shipped profile; checked by the loader
 * before it is written.
 */
import { existsSync } from 'node:fs';
import { writeFileNoFollow } from '../host/open-exact.js';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { AgentboxError } from '../errors.js';
import { lookupPath } from '../env.js';
import { hostPrograms } from '../host/programs.js';
import { hostResolver } from '../host/resolver.js';
import { listAgents, readManifestArg, readPresets } from '../host/files.js';
import { loadManifest } from '../manifest/load.js';
import { BOX_PATH, resolveProgram } from '../manifest/program.js';
import { agentName, scaffold } from '../manifest/scaffold.js';
import { formatDiagnostic } from '../manifest/diagnostics.js';

export interface InitResult {
  text: string;
  /** Where it was written, or undefined for stdout. */
  out: string | undefined;
}

export function init(from: string, out: string | undefined, force: boolean, home = homedir()): InitResult {
  let text: string;
  // A program first (a path, or a name found on PATH): init is for a CLI as installed.
  const program = resolveProgram(from, home, lookupPath(BOX_PATH), hostPrograms);
  if ((!program.ok || !existsSync(program.program.path)) && listAgents().includes(from)) {
    const src = readManifestArg(from);
    text = `# Copied by agentbox init from the shipped profile ${from}; edit it to suit.\n${src.text}`;
  } else {
    const r = program;
    if (!r.ok) throw new AgentboxError('USAGE', `--from ${from}: ${r.message}`, { details: [`or name a shipped profile: ${listAgents().join(', ')}`] });
    if (!existsSync(r.program.path)) throw new AgentboxError('USAGE', `--from ${from}: ${r.program.path} does not exist; give the program as installed (a path, or a name on PATH)`);
    const name = agentName(r.program.link ?? r.program.asWritten);
    const existingConfig = [`~/.${name}`, `~/.config/${name}`].filter((c) => existsSync(join(home, c.slice(2))));
    text = scaffold({ program: r.program, existingConfig, now: new Date().toISOString() });
  }
  // What init writes must load: a scaffold that does not is agentbox's bug, said as such.
  const check = loadManifest({ file: out ?? '(init)', text }, { presets: readPresets(), home, resolver: hostResolver, programs: hostPrograms, path: lookupPath(BOX_PATH) });
  if (!check.model) throw new AgentboxError('INTERNAL', 'the scaffolded manifest does not load', { details: check.errors.map(formatDiagnostic) });
  if (out !== undefined) {
    const file = resolve(out);
    if (existsSync(file) && !force) throw new AgentboxError('USAGE', `--out ${out}: the file exists; choose another name or add --force`);
    try {
      writeFileNoFollow(file, text, 0o644, force);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new AgentboxError('USAGE', `--out ${out}: the file exists; choose another name or add --force`);
      throw e;
    }
  }
  return { text, out };
}
