/**
 * The session's audit events and its guard against failures nobody awaited.
 *
 * An event that cannot be written is reported on the operator's terminal, never
 * thrown: the session goes on. A failure after the box started is recorded once per
 * kind, at most 20 in all, and never through the channel that failed: a launcher whose
 * terminal went away (EPIPE) keeps supervising in silence.
 */
import { AuditSink } from '../audit/sink.js';

export type Decision = 'allow' | 'deny' | 'info';
export type EventFn = (action: string, resource: string, decision: Decision, reason: string, details?: Record<string, unknown>) => void;

export function sessionEvents(state: string, session: string, agent: string, log: (line: string) => void): EventFn {
  const audit = new AuditSink(state);
  return (action, resource, decision, reason, details) => {
    try {
      audit.append({ session, agent, action, resource, decision, reason, ...(details ? { details } : {}) });
    } catch (e) {
      log(`agentbox: could not write the audit log: ${(e as Error).message}`);
    }
  };
}

const QUIET = new Set(['EPIPE', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END']);

export interface Guard {
  /** Records a failure (the session goes on). */
  report(e: unknown): void;
  /** Stops listening for unhandled errors. */
  remove(): void;
}

/** Catches unhandled rejections and exceptions while a session runs, and a closed stderr. */
export function installGuard(session: string, event: EventFn, log: (line: string) => void): Guard {
  let count = 0;
  let reporting = false;
  const report = (e: unknown) => {
    if (reporting) return;
    reporting = true;
    try {
      if (QUIET.has((e as NodeJS.ErrnoException)?.code ?? '')) return;
      const msg = ((e as Error)?.message ?? String(e)).split('\n')[0] ?? 'error';
      if (++count > 20) return;
      event('session.internal-error', session, 'info', msg);
      if (count <= 3) log(`agentbox: internal error in session ${session} (recorded; the session goes on): ${msg}`);
    } catch {
      // nothing more can be done about it here
    } finally {
      reporting = false;
    }
  };
  // The operator's terminal closing is not the session's end: messages are dropped.
  const quietStderr = () => undefined;
  process.stderr.on('error', quietStderr);
  process.on('unhandledRejection', report);
  process.on('uncaughtException', report);
  return {
    report,
    remove: () => {
      process.off('unhandledRejection', report);
      process.off('uncaughtException', report);
      process.stderr.off('error', quietStderr);
    },
  };
}
