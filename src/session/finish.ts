/**
 * The end of a session, every step of it, whatever failed before: the box thawed and
 * ended, the proxy closed, limit hits audited, the runtime's objects removed, the
 * writable layers listed and reverted or committed (a failed commit keeps them for an
 * administrator), the directories removed and the record closed. Each step's failure is
 * caught, audited and reported; none stops the steps after it.
 */
import type { Model } from '../model/types.js';
import type { SessionProxy } from '../egress/session-proxy.js';
import type { Box } from './box.js';
import type { EventFn } from './events.js';
import type { LaunchResult, SessionOptions } from './options.js';
import { writeSession, type Session } from './records.js';
import { commitLayers, dropLayers, layerChanges, removeSessionDir, type Change, type SessionLayers } from './layers.js';
import { listSummary } from './summary.js';
import type { SessionObserver } from './observe.js';

export interface FinishState {
  endReason: string;
  exitCode: number;
  startedBox: boolean;
  sp: SessionProxy | undefined;
  event: EventFn;
  observer?: SessionObserver;
}

/** The end of a session, every step of it, each failure caught and audited. */
export async function finish(model: Model, opts: SessionOptions, box: Box, session: Session, f: FinishState): Promise<LaunchResult> {
  const { event } = f;
  const step = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (e) {
      event('session.cleanup-error', session.id, 'info', `${what}: ${(e as Error).message.split('\n')[0]}`);
      opts.log(`agentbox: ${what} failed: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  await step('thawing the box', () => box.thaw());
  await step('ending the box', () => box.signal('SIGKILL'));
  await step('closing the egress proxy', () => f.sp?.close());
  const hits = (() => {
    try {
      return box.limitHits();
    } catch {
      return { pids: 0, memory: 0 };
    }
  })();
  if (hits.pids > 0) event('limit.pids', session.id, 'deny', `${hits.pids} process creations refused at pids=${model.limits.pids}`);
  if (hits.memory > 0) event('limit.memory', session.id, 'deny', `memory limit reached ${hits.memory} times`);
  await step('removing the box', () => box.cleanup());
  // The watchers stopped with the box: what they saw is written before the exit entry.
  let observed: ReturnType<SessionObserver['finish']> | undefined;
  await step('writing what the kernel saw', () => {
    if (f.observer && f.startedBox) observed = f.observer.finish();
  });
  if (f.startedBox) event('exit', session.id, 'info', f.endReason, { exitCode: f.exitCode });

  let changes: Change[] = [];
  let committed: boolean | null = null;
  if (box.layers) {
    const layers = box.layers;
    await step('listing the changes', () => {
      changes = layerChanges(layers.layers);
    });
    if (f.startedBox && model.runtime.snapshot === 'persist') {
      await step('committing the changes', () => {
        const r = commitLayers(layers.layers, box.uid, box.gid);
        committed = r.ok;
        for (const p of r.skipped) opts.log(`agentbox: not committed (not a regular file, directory or symlink): ${p}`);
        if (r.ok) event('persist', session.id, 'info', `${changes.length - r.skipped.length} changes committed`, { changes: listSummary(changes.map((c) => `${c.kind} ${c.path}`)), notCommitted: listSummary(r.skipped) });
        else {
          event('persist.failed', session.id, 'deny', r.partial ? 'the commit failed and could not be fully undone' : 'the commit failed; nothing was changed', { failures: listSummary(r.failures), changes: listSummary(changes.map((c) => `${c.kind} ${c.path}`)) });
          for (const x of r.failures) opts.log(`agentbox: ${x}`);
        }
      });
    } else event('revert', session.id, 'info', `${changes.length} changes discarded`, { changes: listSummary(changes.map((c) => `${c.kind} ${c.path}`)) });
    // A failed commit keeps the layers for an administrator: they are the agent's work.
    if (committed === false) {
      opts.log(`agentbox: the agent's changes are kept in ${layers.image ?? layers.mount} (not applied)`);
      await step('unmounting the kept layers', () => dropLayersKeepImage(layers));
    } else await step('dropping the layers', () => dropLayers(layers));
  }
  const kept = committed === false;
  await step('removing the session directories', () => {
    removeSessionDir(session.run);
    if (!kept) removeSessionDir(session.dir);
  });
  await step('closing the session record', () => writeSession(opts.state, { ...session, state: 'exited', exitCode: f.exitCode, endedAt: new Date().toISOString(), endReason: f.endReason, layers: kept ? session.layers : null, egressCut: session.egressCut }));
  return { session: session.id, exitCode: f.exitCode, endReason: f.endReason, changes, egress: f.sp?.egress ?? { allowed: 0, denied: {} }, committed, ...(observed ? { observed } : {}) };
}

function dropLayersKeepImage(layers: SessionLayers): void {
  dropLayers({ ...layers, image: null });
}
