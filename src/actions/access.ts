/**
 * `validate --host` and `doctor AGENT`: the pre-launch access check, for a manifest, as
 * the uid the agent will run as.
 */
import { AgentboxError } from '../errors.js';
import { checkAccess, type AccessReport } from '../host/access.js';
import { loadModel, type ManifestOptions } from './load.js';
import type { Notify } from './notify.js';

export interface HostCheck extends AccessReport {
  file: string;
  agent: string;
  /** Where the uid came from. */
  as: string;
}

/**
 * `deployed`: as the generated systemd unit runs it (agent.uid on the host's own paths,
 * so every folder above a grant must be enterable too); otherwise as `launch` would here.
 */
export function hostCheck(arg: string, opts: ManifestOptions, deployed: boolean, notify: Notify): HostCheck {
  const { model } = loadModel(arg, opts, notify);
  const self = process.getuid?.() ?? model.agent.uid;
  const uid = deployed || self === 0 ? model.agent.uid : self;
  if (uid !== self && self !== 0) {
    throw new AgentboxError('CONTROL_UNAVAILABLE', `checking ${model.name}'s grants as uid ${uid} needs root (access is checked by a process running as that uid); run it with sudo`);
  }
  const report = checkAccess(model, model.agent.command, uid, { parents: deployed });
  const as = deployed ? `agent.uid ${uid}, as the generated systemd unit runs it` : self === 0 ? `agent.uid ${uid}, as launch runs it` : `your uid ${uid}, as launch runs it without root`;
  return { ...report, file: model.origin.file, agent: model.name, as };
}
