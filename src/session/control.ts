/**
 * How a running session is told what to do. The launcher listens on its own signals
 * (what `agentbox quarantine`, `release` and `kill` send, see records.ts); a test or a
 * control socket hands the session another channel with the same requests.
 */
export type ControlRequest = { kind: 'quarantine'; why: string } | { kind: 'release' } | { kind: 'end'; reason: string } | { kind: 'forward'; signal: NodeJS.Signals };

export interface SessionControl {
  /** Delivers requests to `handler` until the returned function is called. */
  listen(handler: (request: ControlRequest) => void): () => void;
}

/**
 * SIGUSR1 quarantines, SIGUSR2 releases, SIGTERM/SIGHUP end the session. SIGINT (a Ctrl-C
 * on a terminal the agent shares the foreground of) goes to the agent, as `docker run`
 * proxies it: a Ctrl-C never ends the session or reverts its work by itself; the agent
 * exiting does. (With a terminal of its own the agent gets Ctrl-C from its pty instead.)
 */
export const launcherSignals: SessionControl = {
  listen(handler) {
    const table: [NodeJS.Signals, ControlRequest][] = [
      ['SIGUSR1', { kind: 'quarantine', why: 'agentbox quarantine' }],
      ['SIGUSR2', { kind: 'release' }],
      ['SIGTERM', { kind: 'end', reason: 'killed' }],
      ['SIGINT', { kind: 'forward', signal: 'SIGINT' }],
      ['SIGHUP', { kind: 'end', reason: 'signal SIGHUP' }],
    ];
    const offs = table.map(([sig, request]) => {
      const fn = () => handler(request);
      process.on(sig, fn);
      return () => process.off(sig, fn);
    });
    return () => offs.forEach((off) => off());
  },
};
