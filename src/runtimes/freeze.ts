/**
 * Freezing and thawing a session from outside its launcher, through the kernel or engine
 * object that holds the box: the session's freezer cgroup (process runtime, and a
 * system-service agent's unit), `docker pause` (container runtime, runc or gVisor), QMP
 * `stop` on the micro-VM's monitor socket. None of them needs the launcher to run, so a
 * stopped, starved or dead launcher never holds up a quarantine.
 */
import { join } from 'node:path';
import type { Session } from '../session/records.js';
import { signalIdentity } from '../host/proc.js';
import { AgentboxError } from '../errors.js';
import { freezeCgroup, freezerOf, thawCgroup } from './process/cgroups.js';

/** QMP's monitor socket of a micro-VM session (box/microvm.ts puts it there). */
const qmpSocketOf = (s: Pick<Session, 'run'>) => join(s.run, 'qmp.sock');

/** Freezes the session's box; returns how, in words. Throws (CONTROL_UNAVAILABLE) when it cannot. */
export async function freezeRecorded(s: Session): Promise<string> {
  if (s.runtime === 'container') {
    if (!s.container) throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id} has no container recorded to pause`);
    const { dockerClient } = await import('./container/engine.js');
    const c = (await dockerClient()).getContainer(s.container);
    try {
      await c.pause();
    } catch (e) {
      // Paused already (a second responder, or the launcher's own violation path).
      if (!/already paused/i.test((e as Error).message)) throw new AgentboxError('CONTROL_UNAVAILABLE', `docker pause ${s.container.slice(0, 12)}: ${(e as Error).message.split('\n')[0]}`);
    }
    return `docker pause${s.isolation === 'gvisor' ? ' (gVisor sandbox)' : ''}: every process of the container is frozen`;
  }
  if (s.runtime === 'microvm') {
    const { qmp } = await import('./microvm/runtime.js');
    await qmp(qmpSocketOf(s), 'stop', 1000);
    // The guest's forwarders (socat, one per connection) are QEMU's children in the session's cgroup.
    const f = freezerOf(s.cgroups ?? []);
    if (f) freezeCgroup(f);
    return "QMP stop: the micro-VM's vCPUs are halted (the whole guest is frozen)";
  }
  const f = freezerOf(s.cgroups ?? []);
  if (f) {
    if (!freezeCgroup(f)) throw new AgentboxError('CONTROL_UNAVAILABLE', `${f}: the kernel did not report every process frozen within 2 s`);
    return `cgroup freezer (${f}): every process of the session is frozen`;
  }
  if (signalIdentity(s.box, 'SIGSTOP', true)) return 'SIGSTOP sent to the session (no cgroup freezer)';
  throw new AgentboxError('CONTROL_UNAVAILABLE', `${s.id}: no freezer cgroup is recorded and its box process is gone`);
}

/** Thaws what freezeRecorded froze (egress stays cut). */
export async function thawRecorded(s: Session): Promise<void> {
  if (s.runtime === 'container' && s.container) {
    const { dockerClient } = await import('./container/engine.js');
    const c = (await dockerClient()).getContainer(s.container);
    if ((await c.inspect()).State.Paused) await c.unpause();
    return;
  }
  const f = freezerOf(s.cgroups ?? []);
  if (f) thawCgroup(f);
  if (s.runtime === 'microvm') {
    const { qmp } = await import('./microvm/runtime.js');
    await qmp(qmpSocketOf(s), 'cont', 1000);
  } else if (!f) signalIdentity(s.box, 'SIGCONT', true);
}
