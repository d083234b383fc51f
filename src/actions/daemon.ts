/**
 * agentboxd (`agentbox daemon run`): governs the system-service agents `apply` installed,
 * the way `launch` governs a session.
 *
 * For each /etc/agentbox/agentbox-NAME.daemon.json (the model as applied, 0600):
 * - an egress proxy with the session's layers (allowlist, Cedar policy from
 *   AGENTBOX_POLICY, consent answered by `agentbox approvals`, DLP, upload meter, audit),
 *   served on the address the agent's unit names (127.0.0.1:PORT). A connection is
 *   handed to an agent's proxy only when the kernel says the connecting socket belongs
 *   to that agent's uid (/proc/net/tcp); any other local process is refused and audited,
 *   so no other account rides an agent's egress. Agents sharing a port are told apart
 *   by that uid.
 * - a session record and control socket (STATE/sessions/ID.sock), so `agentbox ps`,
 *   `quarantine`, `release` and `kill` work on the agent. Its processes (those of its uid
 *   in its unit's cgroup; without systemd, every process of its uid) are frozen through
 *   the unit's own v2 cgroup, or moved into a v1 freezer cgroup of their own, which
 *   `quarantine` freezes through the kernel; `kill` stops the unit (systemctl stop) and
 *   the agent's next start is a new session.
 * - two agents under one uid cannot be told apart by the kernel: neither is governed
 *   (`apply` refuses to install the second).
 *
 * What it refuses, failing closed: a manifest that brokers credentials (a unit's static
 * environment cannot carry per-session placeholders) or that organisation policy forbids
 * gets no proxy, so it reaches nothing (the reason is in `daemon status` and the audit
 * log). HTTPS is not decrypted (there is no per-session CA in a unit's trust store): a
 * tunnel to a host the manifest inspects (DLP, HTTP rules) is refused, never passed
 * uninspected; plain HTTP through the proxy is inspected in full.
 *
 * SIGTERM, SIGINT or SIGHUP stop it; its unit's dependants (BindsTo=) stop with it.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { AgentboxError } from '../errors.js';
import type { Model } from '../model/types.js';
import { NAME_PATTERN } from '../manifest/schema.js';
import { identify, isRunning, signalIdentity, type ProcessIdentity } from '../host/proc.js';
import { tcpListening, tcpOwnerUid } from '../host/sockets.js';
import { readFileNoFollow, writeFileNoFollow } from '../host/open-exact.js';
import { policyDir as envPolicyDir } from '../env.js';
import { nftTable } from '../escape/netfilter.js';
import { startSessionProxy, type SessionProxy } from '../egress/session-proxy.js';
import { sessionEvents, type EventFn } from '../session/events.js';
import { socketControl, type ControlHandler } from '../session/control.js';
import { cutMarker, listSessions, newSessionId, readSession, sessionsDir, writeSession, type Session } from '../session/records.js';
import { stateDir } from '../session/state.js';
import { freezeCgroup, freezerOf, thawCgroup, writable, writeControl } from '../runtimes/process/cgroups.js';

export const CONFIG_DIR = '/etc/agentbox';
const POLL_MS = 250;

export interface DaemonConfig {
  schema: 'agentbox.daemon/v1';
  agent: string;
  uid: number;
  user: string;
  unit: string;
  listen: { host: string; port: number };
  model: Model;
}

export interface DaemonAgentStatus {
  agent: string;
  uid: number;
  unit: string;
  listen: string;
  session: string | null;
  /** null when governed; why not, when the daemon refused it (fail closed). */
  refused: string | null;
}

export interface DaemonRecord {
  daemon: ProcessIdentity;
  startedAt: string;
  configDir: string;
  policy?: string | null;
  agents: DaemonAgentStatus[];
}

const recordFile = (state: string) => join(state, 'daemon.json');

/** Reads and checks every agent config; a bad one is an error naming the file (exit 2). */
export function readDaemonConfigs(dir: string): DaemonConfig[] {
  if (!existsSync(dir)) return [];
  const out: DaemonConfig[] = [];
  for (const f of readdirSync(dir).filter((n) => /^agentbox-.+\.daemon\.json$/.test(n)).sort()) {
    const path = join(dir, f);
    // Read as root without following a link anywhere on the path; the checks below are of what was read.
    let read: ReturnType<typeof readFileNoFollow>;
    let c: DaemonConfig;
    try {
      read = readFileNoFollow(path);
      if (!read) continue;
      c = JSON.parse(read.content.toString('utf8')) as DaemonConfig;
    } catch (e) {
      throw new AgentboxError('CHECK_FAILED', `${path}: not a readable config (${(e as Error).message.split('\n')[0]})`, { details: ['apply the agent again: agentbox apply MANIFEST'] });
    }
    // Data from disk: every value that reaches a path, a socket or a uid check is re-checked.
    const bad = (what: string) => new AgentboxError('CHECK_FAILED', `${path}: ${what}`, { details: ['apply the agent again: agentbox apply MANIFEST'] });
    if (c.schema !== 'agentbox.daemon/v1') throw bad(`schema ${JSON.stringify(c.schema)} is not agentbox.daemon/v1`);
    if (typeof c.agent !== 'string' || !new RegExp(NAME_PATTERN).test(c.agent) || f !== `agentbox-${c.agent}.daemon.json`) throw bad(`agent ${JSON.stringify(c.agent)} is not a valid agent name matching the file name`);
    if (!Number.isInteger(c.uid) || c.uid < 1000 || c.uid > 2147483646) throw bad(`uid ${JSON.stringify(c.uid)} is not an agent account's uid (1000-2147483646)`);
    if (c.unit !== `agentbox-${c.agent}.service`) throw bad(`unit ${JSON.stringify(c.unit)} is not agentbox-${c.agent}.service`);
    if (!c.listen || c.listen.host !== '127.0.0.1' || !Number.isInteger(c.listen.port) || c.listen.port < 1 || c.listen.port > 65535) throw bad(`listen ${JSON.stringify(c.listen)} is not 127.0.0.1 and a port`);
    if (!c.model || c.model.name !== c.agent || c.model.agent?.uid !== c.uid || c.model.egress?.proxyPort !== c.listen.port) throw bad('its model does not match its agent, uid and port');
    const st = read.stat;
    if (st.mode & 0o022) throw bad('is writable by group or others; it must be 0600 and root-owned');
    if (process.getuid?.() === 0 && st.uid !== 0) throw bad(`is owned by uid ${st.uid}; it must be root-owned (0600)`);
    out.push(c);
  }
  return out;
}

/** Agents sharing a uid, by uid: the kernel cannot tell their sockets or processes apart. */
export function sharedUids(configs: readonly DaemonConfig[]): Map<number, string[]> {
  const by = new Map<number, string[]>();
  for (const c of configs) by.set(c.uid, [...(by.get(c.uid) ?? []), c.agent]);
  return new Map([...by].filter(([, agents]) => agents.length > 1));
}

/** A connection the daemon does not hand to any proxy: a 403 saying why (validated names only). */
function refuse(socket: Socket, why: string): void {
  socket.on('error', () => undefined);
  socket.end(`HTTP/1.1 403 Forbidden (agentbox: ${why})\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** systemd runs here (it is PID 1 of this pid namespace): units have cgroups of their own. */
const systemdRuns = (): boolean => existsSync('/run/systemd/system');

/** True when the process is in the system unit's cgroup: /system.slice/UNIT or below it. */
function inUnit(pid: number, unit: string): boolean {
  const mine = `/system.slice/${unit}`;
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .some((l) => {
        const path = l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1);
        return path === mine || path.startsWith(`${mine}/`);
      });
  } catch {
    return false;
  }
}

/**
 * The agent's processes, oldest first: those of its uid, and, where systemd runs, only
 * those in its unit's cgroup (a session `launch`ed under the same uid is not the unit's).
 * Without systemd (the daemon run by hand), every process of the uid.
 */
function uidProcesses(uid: number, unit?: string): ProcessIdentity[] {
  const scoped = unit !== undefined && systemdRuns();
  const out: ProcessIdentity[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    // The identity before and after the status read must agree: a pid that exited and was
    // reused meanwhile is not taken for a process of the agent's uid.
    const before = identify(Number(n));
    if (!before) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${n}/status`, 'utf8');
    } catch {
      continue;
    }
    const m = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
    if (!m || Number(m[1]) !== uid || /^State:\s+Z/m.test(status)) continue;
    if (scoped && !inUnit(Number(n), unit)) continue;
    if (identify(Number(n))?.start === before.start) out.push(before);
  }
  return out.sort((a, b) => Number(a.start) - Number(b.start) || a.pid - b.pid);
}

/**
 * The freezer cgroup for an agent's processes. Where systemd runs: the unit's own v2
 * cgroup, which has cgroup.freeze (on a hybrid host under /sys/fs/cgroup/unified). Else
 * a child of the daemon's own v1 freezer cgroup, made here, into which the agent's
 * processes are moved (systemd on cgroup v1 gives units none). Undefined when neither is
 * writable (a container's read-only view of the hierarchies); `quarantine` then stops
 * the box with SIGSTOP.
 */
function freezerFor(agent: string, pid: number): string | undefined {
  const lines = (() => {
    try {
      return readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    } catch {
      return [];
    }
  })();
  const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3);
  if (systemdRuns() && v2 !== undefined && v2 !== '/') {
    for (const base of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
      if (writable(join(base, v2, 'cgroup.freeze'))) return join(base, v2);
    }
  }
  if (existsSync('/sys/fs/cgroup/freezer/freezer.state') || existsSync('/sys/fs/cgroup/freezer/cgroup.procs')) {
    const own = (readFileSync('/proc/self/cgroup', 'utf8').split('\n').map((l) => l.split(':')).find((f) => f[1]?.split(',').includes('freezer'))?.[2] ?? '/').replace(/\/$/, '');
    const dir = join('/sys/fs/cgroup/freezer', own, `agentbox-${agent}`);
    try {
      // One level, in the daemon's own freezer cgroup (which exists); an existing entry must be a real folder.
      try {
        mkdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !lstatSync(dir).isDirectory()) throw e;
      }
      if (writable(join(dir, 'freezer.state')) && writable(join(dir, 'cgroup.procs'))) return dir;
    } catch {
      // not ours to make here
    }
  }
  return undefined;
}

function readProcs(dir: string): Set<number> {
  try {
    return new Set(readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
  } catch {
    return new Set();
  }
}

/** One governed agent: its proxy, its record and its control socket. */
class Governed {
  session: Session;
  sp: SessionProxy | undefined;
  refused: string | null = null;
  private event: EventFn;
  private stopControl: (() => void) | undefined;
  private freezer: string | undefined;

  constructor(
    readonly config: DaemonConfig,
    private readonly state: string,
    private readonly log: (line: string) => void,
    private readonly daemon: ProcessIdentity,
    private readonly onEnd: (reason: string) => void,
  ) {
    this.session = this.newSession();
    this.event = sessionEvents(state, this.session.id, config.agent, log);
  }

  /** A session for the agent: one per daemon start, and a new one after `agentbox kill`. */
  private newSession(): Session {
    const id = newSessionId(this.config.agent);
    return {
      id,
      agent: this.config.agent,
      runtime: 'process',
      isolation: null,
      state: 'running',
      pid: 0,
      box: null,
      launcherPid: this.daemon.pid,
      launcher: this.daemon,
      reaper: null,
      container: null,
      startedAt: new Date().toISOString(),
      expiresAt: null,
      exitCode: null,
      endedAt: null,
      endReason: null,
      dir: join(sessionsDir(this.state), id),
      run: join(sessionsDir(this.state), id),
      jti: null,
      cgroups: [],
      layers: null,
      snapshot: 'persist',
      uid: this.config.uid,
      gid: this.config.uid,
      egressCut: false,
      quarantinedAt: null,
      unit: this.config.unit,
    };
  }

  /** Refuses what cannot be governed from a unit's static environment; checks organisation policy. */
  /** Other applied agents under the same uid (set before start). */
  sharedWith: string[] = [];
  /** Where the configs are, for the nft rules file beside them. */
  configDir = CONFIG_DIR;
  private ending = false;

  private async refusal(): Promise<string | null> {
    const m = this.config.model;
    if (this.sharedWith.length > 0) return `uid ${this.config.uid} is also the account of ${this.sharedWith.join(', ')}: the kernel cannot tell their connections and processes apart; give each agent an account of its own (agent.user, agent.uid) and apply again`;
    if (m.egress.credentials.length > 0) return 'the manifest brokers credentials (egress.credentials), which needs per-session placeholders in the agent\'s environment; a system-service agent has none';
    return null;
  }

  async start(): Promise<void> {
    mkdirSync(this.session.dir, { recursive: true, mode: 0o700 });
    writeSession(this.state, this.session);
    this.refused = await this.refusal();
    let policy: { engine: import('../policy/verdict.js').Authorizer; labels: import('../policy/entities.js').Labels } | undefined;
    const dir = envPolicyDir();
    if (!this.refused && dir) {
      const { checkAgainst, forbiddenLines } = await import('./policy.js');
      const { check, engine, policy: p } = checkAgainst(this.config.model, dir);
      if (check.forbidden.length > 0) this.refused = `organisation policy (${p.dir}) forbids ${forbiddenLines(check).join('; ')}`;
      else policy = { engine, labels: p.labels };
    }
    if (this.refused) {
      this.event('daemon.agent-refused', this.config.unit, 'deny', this.refused);
      this.log(`agentboxd: ${this.config.agent}: not governed, no egress: ${this.refused}`);
    } else await this.openProxy(policy);
    this.event('daemon.governing', this.config.unit, this.refused ? 'deny' : 'info', this.refused ? 'no proxy: the agent reaches nothing' : `egress proxy on ${this.config.listen.host}:${this.config.listen.port} for uid ${this.config.uid}`, { daemon: this.daemon.pid, listen: this.config.listen });
    this.stopControl = await socketControl(this.state, this.session.id, (request, caller, served, detail) =>
      this.event(served ? `control.${request}` : 'control.refused', this.session.id, served ? 'info' : 'deny', served ? `${request} asked by ${caller.text}${detail ? `: ${detail}` : ''}` : detail, { uid: caller.uid, pid: caller.pid }),
    ).listen(this.handle, (r) => this.onEnd(r.kind === 'end' ? r.reason : `signal ${r.signal}`));
  }

  private policy: { engine: import('../policy/verdict.js').Authorizer; labels: import('../policy/entities.js').Labels } | undefined;

  private async openProxy(policy = this.policy): Promise<void> {
    this.policy = policy;
    this.sp = await startSessionProxy(this.config.model, {
      state: this.state,
      session: this.session.id,
      uid: this.config.uid,
      gid: this.config.uid,
      verbose: false,
      tty: false,
      log: this.log,
      event: this.event,
      policy,
      cutFile: cutMarker(this.state, this.session.id),
      noTls: 'agentboxd cannot decrypt HTTPS for a system-service agent (its unit carries no per-session CA)',
      onViolation: () => {
        if (this.config.model.egress.onViolation === 'quarantine') void this.isolate('violation under onViolation: quarantine').catch(() => undefined);
      },
    });
  }

  /** The connection of a process of this agent's uid. */
  accept(socket: Socket): void {
    if (!this.sp || this.ending || this.session.state !== 'running') {
      const why = this.refused ? 'not governed' : this.session.egressCut ? 'quarantined: its egress is cut' : this.session.state;
      refuse(socket, `${this.config.agent} is ${why}; no egress`);
      return;
    }
    this.sp.proxy.accept(socket);
  }

  /** Follows the agent's processes: records the oldest as the box, moves new ones into its freezer. */
  track(): void {
    if (this.session.state !== 'running') return;
    const procs = uidProcesses(this.config.uid, this.config.unit);
    const lead = procs[0];
    let changed = false;
    if (!lead) {
      if (this.session.box) {
        this.session.box = null;
        this.session.pid = 0;
        changed = true;
      }
    } else {
      if (!this.session.box || !isRunning(this.session.box)) {
        this.session.box = lead;
        this.session.pid = lead.pid;
        changed = true;
      }
      this.freezer ??= freezerFor(this.config.agent, lead.pid);
      if (this.freezer) {
        if (this.session.cgroups[0] !== this.freezer) {
          this.session.cgroups = [this.freezer];
          changed = true;
        }
        if (this.freezer.startsWith('/sys/fs/cgroup/freezer/')) {
          const inside = readProcs(this.freezer);
          for (const p of procs) {
            if (inside.has(p.pid)) continue;
            try {
              writeControl(join(this.freezer, 'cgroup.procs'), String(p.pid));
            } catch {
              // it exited meanwhile
            }
          }
        }
      }
    }
    if (changed) writeSession(this.state, this.session);
  }

  /** Cuts this agent's egress (the quarantine command froze it already, or this is a violation). */
  private async isolate(why: string, by?: string): Promise<unknown[]> {
    const tunnels = this.sp?.proxy.openTunnels() ?? [];
    this.session.egressCut = true;
    await this.sp?.close();
    this.sp = undefined;
    this.session.state = 'quarantined';
    this.session.quarantinedAt = new Date().toISOString();
    writeSession(this.state, this.session);
    // Literal-address grants go around the proxy: the agent's own nft table rejects everything from now on.
    const direct = await nftCut(this.config.agent);
    this.event('quarantine.proxy-closed', this.session.id, 'deny', by ? `agentboxd closed ${this.config.agent}'s proxy after ${by} froze and cut it` : `agentboxd closed ${this.config.agent}'s proxy: ${why}`, { tunnels: tunnels.length, direct });
    if (!by) {
      // A violation: the daemon freezes the agent itself, as the launcher does.
      if (this.freezer) freezeCgroup(this.freezer);
    }
    return tunnels;
  }

  private readonly handle: ControlHandler = async (r, caller) => {
    const status = () => ({ ok: true as const, state: this.session.state, agent: this.config.agent, unit: this.config.unit, listen: `${this.config.listen.host}:${this.config.listen.port}` });
    switch (r.kind) {
      case 'status':
        return status();
      case 'quarantine':
        return { ...status(), egress: await this.isolate(r.why, r.frozenBy ? caller.text : undefined), state: 'quarantined', tokenRevoked: null };
      case 'release': {
        if (this.session.state !== 'quarantined') return { ok: false, error: `${this.session.id} is ${this.session.state}, not quarantined` };
        const f = freezerOf(this.session.cgroups);
        if (f) thawCgroup(f);
        else for (const p of uidProcesses(this.config.uid, this.config.unit)) signalIdentity(p, 'SIGCONT');
        // As for a launched session, egress stays cut: agentbox kill ends this session, and
        // the unit's next start is a new session with a new proxy.
        this.session.state = 'running';
        writeSession(this.state, this.session);
        this.event('quarantine.released', this.session.id, 'info', `released by ${caller.text}: thawed; egress stays cut until agentbox kill and a restart of ${this.config.unit}`);
        return status();
      }
      case 'end': {
        if (this.ending) return { ...status(), ending: r.reason };
        this.ending = true;
        // After the answer is sent: the unit is stopped and its processes gone, then this
        // session ends and the agent's next start is a new one with a new proxy.
        setImmediate(() => void this.endSession(r.reason, caller.text).catch((e: Error) => this.log(`agentboxd: ${this.config.agent}: ${e.message}`)));
        return { ...status(), ending: r.reason };
      }
      case 'attach':
      case 'exec':
        return { ok: false, error: `${this.session.id} is the system-service agent ${this.config.unit}: it has no terminal to attach to or run in; its output is in journalctl -u ${this.config.unit}` };
    }
  };

  /**
   * `agentbox kill`: no egress from here on; the unit stopped and every process of it
   * gone (a quarantined one is frozen and takes only SIGKILL, so it is killed and
   * thawed); only then the next session, so nothing of the old run rides the new proxy.
   */
  private async endSession(reason: string, by: string): Promise<void> {
    await this.sp?.close();
    this.sp = undefined;
    const procs = () => uidProcesses(this.config.uid, this.config.unit);
    const f = freezerOf(this.session.cgroups);
    const frozen = this.session.state === 'quarantined';
    const signal = (sig: NodeJS.Signals) => procs().forEach((p) => signalIdentity(p, sig));
    if (frozen) signal('SIGKILL');
    if (f) thawCgroup(f);
    const how = await stopUnit(this.config.unit, this.config.uid);
    let left = procs();
    for (let i = 0; i < 150 && left.length > 0; i++) {
      if (i === 50) signal('SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      left = procs();
    }
    this.event('daemon.unit-stopped', this.config.unit, left.length ? 'deny' : 'info', left.length ? `${reason}: ${how}; ${left.length} processes did not end, no new session is started` : `${reason}: ${how}`, { by, left: left.map((p) => p.pid) });
    if (left.length > 0) return;
    await this.renew(`${reason} by ${by}`);
  }

  /** Ends this session and starts the agent's next one (after `agentbox kill`). */
  private async renew(reason: string): Promise<void> {
    await this.stop(reason, true);
    this.freezer = undefined;
    this.ending = false;
    await nftRestore(this.config.agent, this.configDir);
    this.session = this.newSession();
    this.event = sessionEvents(this.state, this.session.id, this.config.agent, this.log);
    await this.start();
    this.onRenew?.();
  }

  /** Called when the session id changed (the daemon record names it). */
  onRenew: (() => void) | undefined;

  async stop(reason: string, ended = false): Promise<void> {
    this.stopControl?.();
    this.stopControl = undefined;
    await this.sp?.close();
    this.sp = undefined;
    const s = readSession(this.state, this.session.id) ?? this.session;
    // A quarantined agent stays recorded as quarantined (its evidence and the responder's
    // decision remain), unless the responder ended it.
    if (s.state === 'running' || (ended && s.state === 'quarantined')) {
      s.state = 'exited';
      s.endedAt = new Date().toISOString();
      s.endReason = reason;
      s.box = null;
      writeSession(this.state, s);
    }
    // The v1 freezer cgroup made for the agent goes once it is empty (a frozen or live one stays).
    if (this.freezer?.startsWith('/sys/fs/cgroup/freezer/') && readProcs(this.freezer).size === 0) {
      try {
        rmdirSync(this.freezer);
      } catch {
        // processes moved in meanwhile
      }
    }
    this.event('daemon.stopped-governing', this.config.unit, 'info', reason);
  }
}

/** Stops an agent's unit through systemd, or (no systemd here) its processes. */
async function stopUnit(unit: string, uid: number): Promise<string> {
  const r = systemdRuns() ? await execa('systemctl', ['stop', unit], { reject: false, timeout: 30_000 }) : { exitCode: 1, stderr: 'systemd is not PID 1', message: '' };
  if (r.exitCode === 0) return `systemctl stop ${unit}`;
  for (const p of uidProcesses(uid, unit)) signalIdentity(p, 'SIGTERM');
  return `systemd is not running here (${(r.stderr || r.message || '').split('\n')[0]}); SIGTERM sent to uid ${uid}'s processes`;
}

/**
 * Cuts the agent's direct egress too: two reject rules at the head of its own nft table
 * (`agentbox-NAME.nft`, loaded by its firewall unit). Only where systemd runs (the
 * deployment): the daemon run by hand never touches the host's tables. Says what it did.
 */
async function nftCut(agent: string): Promise<string> {
  if (!systemdRuns()) return 'not cut: systemd does not run here (no firewall unit loaded the agent\'s table)';
  const table = nftTable(agent);
  const a = await execa('nft', ['insert', 'rule', 'inet', table, 'agent', 'reject'], { reject: false });
  const b = await execa('nft', ['insert', 'rule', 'inet', table, 'agent', 'meta', 'l4proto', 'tcp', 'reject', 'with', 'tcp', 'reset'], { reject: false });
  return a.exitCode === 0 && b.exitCode === 0 ? `every packet of the agent's uid rejected (nft table inet ${table})` : `NOT cut: nft failed (${String(a.stderr || b.stderr).split('\n')[0]})`;
}

/** Loads the agent's rules again whole (the cut rules go with the old table). */
async function nftRestore(agent: string, configDir: string): Promise<void> {
  if (!systemdRuns()) return;
  await execa('nft', ['-f', join(configDir, `agentbox-${agent}.nft`)], { reject: false });
}

/** Runs the daemon until a signal; resolves with its exit code. */
export async function runDaemon(opts: { configDir?: string; log: (line: string) => void }): Promise<number> {
  const state = stateDir();
  const configDir = opts.configDir ?? CONFIG_DIR;
  const configs = readDaemonConfigs(configDir);
  const me = identify(process.pid)!;
  const other = readDaemonRecord(state);
  if (other && other.daemon.pid !== me.pid && isRunning(other.daemon)) throw new AgentboxError('USAGE', `agentboxd is already running (pid ${other.daemon.pid}) for ${state}`, { details: ['agentbox daemon status shows it'] });
  let ending: ((reason: string) => void) | undefined;
  const ended = new Promise<string>((resolve) => (ending = resolve));
  const end = (reason: string) => ending?.(reason);
  const governed: Governed[] = [];
  const servers: Server[] = [];
  let ticker: NodeJS.Timeout | undefined;
  const onSignal = (sig: NodeJS.Signals) => end(`signal ${sig}`);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, onSignal);
  try {
    closeStale(state, configs, opts.log);
    const shared = sharedUids(configs);
    for (const c of configs) {
      const g = new Governed(c, state, opts.log, me, end);
      g.sharedWith = (shared.get(c.uid) ?? []).filter((a) => a !== c.agent);
      g.configDir = configDir;
      await g.start();
      governed.push(g);
    }
    // One listener per address; the peer's uid picks the agent.
    const byAddress = new Map<string, Governed[]>();
    for (const g of governed) {
      const k = `${g.config.listen.host}:${g.config.listen.port}`;
      byAddress.set(k, [...(byAddress.get(k) ?? []), g]);
    }
    const refusedPeer = rateLimited(sessionEvents(state, '-', 'agentboxd', opts.log));
    for (const [address, list] of byAddress) {
      const { port } = list[0]!.config.listen;
      const serve = (sock: Socket) => {
        sock.on('error', () => undefined);
        const uid = tcpOwnerUid({ address: sock.localAddress ?? '', port: sock.localPort ?? 0 }, { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 });
        const g = list.find((x) => x.config.uid === uid);
        if (!g) {
          refusedPeer('daemon.peer-refused', address, 'deny', `a connection from ${uid === undefined ? 'a socket the kernel does not list' : `uid ${uid}`}, which is not an agent account served here (${list.map((x) => `${x.config.agent}: uid ${x.config.uid}`).join(', ')})`, { uid: uid ?? null });
          refuse(sock, "this proxy serves only its agents' accounts");
          return;
        }
        g.accept(sock);
      };
      // 127.0.0.1 (what the unit names) and ::1 on the same port: the firewall and the
      // unit admit both, so nobody else may hold either.
      for (const host of ['127.0.0.1', '::1']) {
        const server = createServer(serve);
        const bound = await new Promise<boolean>((resolve, reject) => {
          server.once('error', (e: NodeJS.ErrnoException) => {
            if (host === '::1' && (e.code === 'EADDRNOTAVAIL' || e.code === 'EAFNOSUPPORT')) return resolve(false);
            reject(new AgentboxError('CONTROL_UNAVAILABLE', `cannot listen on ${host === '::1' ? `[::1]:${port}` : address} for ${list.map((x) => x.config.agent).join(', ')}: ${e.message}`, { details: ['another program holds that port; the agents stay without egress (their units do not run) until it is free'] }));
          });
          server.listen(port, host, () => resolve(true));
        });
        if (bound) servers.push(server);
      }
    }
    const tick = () => {
      for (const g of governed) {
        try {
          g.track();
        } catch (e) {
          opts.log(`agentboxd: ${g.config.agent}: ${(e as Error).message}`);
        }
      }
    };
    tick();
    ticker = setInterval(tick, POLL_MS);
    const startedAt = new Date().toISOString();
    const record = (): DaemonRecord => ({
      daemon: me,
      startedAt,
      configDir,
      policy: envPolicyDir() ?? null,
      agents: governed.map((g) => ({ agent: g.config.agent, uid: g.config.uid, unit: g.config.unit, listen: `${g.config.listen.host}:${g.config.listen.port}`, session: g.session.id, refused: g.refused })),
    });
    const writeRecord = () => writeFileNoFollow(recordFile(state), JSON.stringify(record(), null, 2) + '\n', 0o600, true);
    for (const g of governed) g.onRenew = writeRecord;
    writeRecord();
    opts.log(`agentboxd: governing ${governed.length} agent${governed.length === 1 ? '' : 's'}${governed.length ? `: ${record().agents.map((a) => `${a.agent} (${a.refused ? 'refused' : a.listen})`).join(', ')}` : ''}`);
    const reason = await ended;
    opts.log(`agentboxd: stopping (${reason})`);
    return 0;
  } finally {
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.off(sig, onSignal);
    if (ticker) clearInterval(ticker);
    for (const s of servers) s.close();
    for (const g of governed) await g.stop('agentboxd stopped').catch(() => undefined);
    const r = readDaemonRecord(state);
    if (r && r.daemon.pid === me.pid) rmSync(recordFile(state), { force: true });
  }
}

/**
 * Sessions a previous daemon left open (it was killed): systemd stopped their units
 * (BindsTo=), so they are closed; a quarantined one stays, for the responder.
 */
function closeStale(state: string, configs: readonly DaemonConfig[], log: (line: string) => void): void {
  const units = new Set(configs.map((c) => c.unit));
  for (const s of listSessions(state)) {
    if (!s.unit || !units.has(s.unit) || s.state === 'exited' || s.state === 'quarantined' || isRunning(s.launcher)) continue;
    writeSession(state, { ...s, state: 'exited', endedAt: s.endedAt ?? new Date().toISOString(), endReason: `agentboxd (pid ${s.launcher.pid}) ended without closing it; systemd stopped ${s.unit} with it` });
    log(`agentboxd: closed ${s.id}, left open by a previous agentboxd (pid ${s.launcher.pid})`);
  }
}

/** At most 20 entries a minute for one kind of event; the rest are counted and summed up. */
function rateLimited(event: EventFn): EventFn {
  let windowStart = Date.now();
  let written = 0;
  let dropped = 0;
  return (action, resource, decision, reason, details) => {
    const now = Date.now();
    if (now - windowStart > 60_000) {
      if (dropped > 0) event(`${action}.suppressed`, resource, decision, `${dropped} more like this in the last minute were not written one by one`, { count: dropped });
      windowStart = now;
      written = 0;
      dropped = 0;
    }
    if (written >= 20) {
      dropped++;
      return;
    }
    written++;
    event(action, resource, decision, reason, details);
  };
}

export function readDaemonRecord(state: string): DaemonRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordFile(state), 'utf8')) as DaemonRecord;
  } catch {
    return undefined;
  }
}

export interface DaemonHealth {
  running: boolean;
  /** Running, and every agent it governs has its proxy listening (what the unit waits for). */
  ready: boolean;
  /** The organisation policy directory it checks against (AGENTBOX_POLICY), or null. */
  policy: string | null;
  pid: number | null;
  since: string | null;
  agents: (DaemonAgentStatus & { listening: boolean; state: string | null })[];
  /** Agents applied (configs on disk) the running daemon does not govern. */
  notGoverned: string[];
  problem: string | null;
}

function listening(address: string): boolean {
  const i = address.lastIndexOf(':');
  return tcpListening(address.slice(0, i), Number(address.slice(i + 1)));
}

/** The daemon's health as `daemon status` and `doctor` report it. */
export async function daemonHealth(configDir = CONFIG_DIR, state = stateDir()): Promise<DaemonHealth> {
  const r = readDaemonRecord(state);
  let applied: string[] = [];
  try {
    applied = existsSync(configDir) ? readdirSync(configDir).filter((n) => /^agentbox-.+\.daemon\.json$/.test(n)).map((n) => n.slice('agentbox-'.length, -'.daemon.json'.length)) : [];
  } catch {
    applied = [];
  }
  if (!r || !isRunning(r.daemon)) {
    return { running: false, ready: false, pid: null, since: null, policy: null, agents: [], notGoverned: applied, problem: applied.length > 0 ? `agentboxd is not running; ${applied.join(', ')} ${applied.length === 1 ? 'has' : 'have'} no egress proxy (their units are bound to it and do not run)` : 'agentboxd is not running (no agent that needs it is applied here)' };
  }
  const agents = r.agents.map((a) => ({ ...a, listening: a.refused ? false : listening(a.listen), state: a.session ? (readSession(state, a.session)?.state ?? null) : null }));
  const notGoverned = applied.filter((n) => !r.agents.some((a) => a.agent === n));
  const bad = agents.filter((a) => a.refused || !a.listening);
  const problem = bad.length > 0 ? bad.map((a) => `${a.agent}: ${a.refused ?? `nothing listens on ${a.listen}`}`).join('; ') : notGoverned.length > 0 ? `applied after agentboxd started, not governed until it restarts: ${notGoverned.join(', ')}` : null;
  // Ready: every agent it governs has its proxy (a refused agent has none by design and runs nothing).
  const ready = agents.every((a) => a.refused !== null || a.listening);
  return { running: true, ready, pid: r.daemon.pid, since: r.startedAt, policy: r.policy ?? null, agents, notGoverned, problem };
}
