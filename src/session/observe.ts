/**
 * What the kernel saw a session do, made into audit entries a person can read:
 *
 * - **File activity** (fanotify on the grant mounts): per path, opens, reads, writes and
 *   executions counted in memory, written as one `fs.activity` entry per grant every
 *   FLUSH_MS and at the end. An entry lists at most LIST_CAP paths (the busiest), with
 *   how many there were and a hash of the whole list (`session/summary.ts`), so a session
 *   that reads 10,000 files writes a handful of entries, not 10,000. At most PATH_CAP
 *   distinct paths are kept per flush; beyond that only the grant's totals grow.
 * - **Denials** (the audit subsystem): Landlock's, seccomp's, and the box uid's failed
 *   file calls, each with the rule that decided it (the answer `explain` gives). The first
 *   DENIAL_CAP distinct denials (access and path, or system call) are each written as an
 *   entry when they happen and shown with --verbose; every repeat is counted; the end
 *   writes one `denials.summary`. A failed call is a denial when the kernel refused it
 *   (EACCES, EPERM, EROFS), or when the box did not show what the host has (ENOENT for a
 *   path in the home, or under a deny, that exists on the host and that no grant covers
 *   or a deny hides). A read of a denied file masked by /dev/null is one too.
 *
 * The monitor (session/monitor.ts) is fed from here: every read under the grants.
 */
import { lstatSync } from 'node:fs';
import { basename } from 'node:path';
import type { Model } from '../model/types.js';
import { decide, type Decision } from '../model/decide.js';
import { isWithin } from '../model/paths.js';
import { showPath } from '../model/describe.js';
import { termSafe } from '../escape/terminal.js';
import type { EventFn } from './events.js';
import { listSummary } from './summary.js';
import { AuditGroups, ERRNO_NAMES, interpretGroup, parseAuditLine, parseFileLine, SYSCALL_NAMES, type DeniedAccess, type FileEvent, type KernelDenial } from './kernel-records.js';

export const FLUSH_MS = 5 * 60_000;
export const PATH_CAP = 50_000;
export const DENIAL_CAP = 200;

export interface PathCounts {
  opens: number;
  reads: number;
  writes: number;
  execs: number;
  /** The sizes of the files at each read's close: an upper bound of the bytes read. */
  bytesRead: number;
}

interface GrantTotals extends PathCounts {
  files: number;
  paths: Map<string, PathCounts>;
  /** Distinct paths not kept (PATH_CAP reached). */
  untracked: number;
}

export interface Denial {
  /** The layer that refused. */
  layer: KernelDenial['source'] | 'mask';
  access: DeniedAccess;
  /** The access in words (read, list, write, run, connect, signal, call). */
  verb: string;
  /** The path, or the system call's name. */
  what: string;
  count: number;
  /** The deciding rule as `explain` gives it, in short (deny fs:~/.ssh from preset organizer). */
  rule: string;
  /** explain's reason, in full. */
  reason: string;
  errno?: string;
}

/** learn: every path the box used, and every program it ran. */
export interface ObservedPaths {
  paths: { path: string; counts: PathCounts }[];
  programs: { path: string; runs: number }[];
}

export interface ObservationSummary {
  files: { files: number; opens: number; reads: number; writes: number; execs: number; bytesRead: number };
  denials: Denial[];
  deniedTotal: number;
  /** Lines a watcher reported lost (fanotify overflow, audit backlog). */
  lost: number;
  /** With `keepAll` (learn): every path and program, not only the audit entries' counts. */
  all?: ObservedPaths;
}

export interface ObserverDeps {
  model: Model;
  event: EventFn;
  log: (line: string) => void;
  verbose: boolean;
  /** The box's uid (the audit rule is keyed on it). */
  uid: number;
  /** True when `pid` is one of the box's processes (false when it is known not to be; gone counts as the box's). */
  owns(pid: number): boolean;
  /** Whether the host has `path` (lstat; a denial by absence needs the host to have it). */
  hostHas?(path: string): boolean;
  /** learn: keep every path's counts for the whole session, and the programs run outside the grants. */
  keepAll?: boolean;
  /** Reads under the grants, for the behaviour rules. */
  onRead?(path: string, bytes: number, at: number): void;
  now?(): number;
}

const accessVerb: Record<DeniedAccess, string> = { read: 'read', list: 'list', write: 'write', exec: 'run', connect: 'connect', signal: 'signal', syscall: 'call' };

/** explain's rule, short: "deny fs:~/.ssh from preset organizer", or its reason when no rule decided. */
export function ruleLabel(d: Decision): string {
  if (d.rule) {
    const from = d.rule.origin === 'preset' ? `preset ${d.rule.preset}` : `${basename(d.rule.file)} ${d.rule.pointer}`;
    return `${d.decision === 'deny' ? 'deny' : 'grant'} ${d.rule.text} from ${from}`;
  }
  return d.reason.replace(/^(denied|allowed): /, '');
}

export class SessionObserver {
  private readonly grants: { path: string; totals: GrantTotals }[];
  private readonly denials = new Map<string, Denial>();
  private deniedTotal = 0;
  private lost = 0;
  private readonly groups = new AuditGroups();
  private readonly decisions = new Map<string, Decision | undefined>();
  private readonly ownedDomains = new Set<string>();
  private lastFlush: number;
  private readonly totals = { files: 0, opens: 0, reads: 0, writes: 0, execs: 0, bytesRead: 0 };
  private readonly seenFiles = new Set<string>();
  private readonly everything = new Map<string, PathCounts>();
  private readonly programs = new Map<string, number>();

  constructor(private readonly d: ObserverDeps) {
    const roots = [...new Set(d.model.grants.fs.map((g) => g.path))].sort((a, b) => b.length - a.length);
    this.grants = roots.map((path) => ({ path, totals: emptyTotals() }));
    this.lastFlush = this.now();
  }

  private now(): number {
    return this.d.now?.() ?? Date.now();
  }

  private decision(request: string): Decision | undefined {
    if (this.decisions.has(request)) return this.decisions.get(request);
    const r = decide(this.d.model, request);
    const v = r.ok ? r.value : undefined;
    if (this.decisions.size < 20_000) this.decisions.set(request, v);
    return v;
  }

  /** One file-watch line. */
  fileLine(line: string): void {
    const e = parseFileLine(line);
    if (e === 'overflow') {
      this.lost++;
      return;
    }
    if (!e) return;
    this.file(e);
  }

  file(e: FileEvent): void {
    const grant = this.grants.find((g) => isWithin(e.path, g.path));
    if (this.d.keepAll && !this.d.model.denies.fs.some((x) => x.access === 'all' && isWithin(e.path, x.path))) {
      if (e.kind === 'exec' && !grant) this.programs.set(e.path, (this.programs.get(e.path) ?? 0) + 1);
      if (grant) {
        let c = this.everything.get(e.path);
        if (!c && this.everything.size < PATH_CAP) this.everything.set(e.path, (c = { opens: 0, reads: 0, writes: 0, execs: 0, bytesRead: 0 }));
        if (c) {
          if (e.kind === 'open') c.opens++;
          else if (e.kind === 'read') c.reads++;
          else if (e.kind === 'write') c.writes++;
          else if (e.kind === 'exec') c.execs++;
        }
      }
    }
    const masked = this.d.model.denies.fs.some((x) => x.access === 'all' && isWithin(e.path, x.path));
    if (!grant || masked) {
      // A mask over a denied file (bound from /dev/null): opening it is a denied read.
      if (e.kind === 'open' || e.kind === 'exec') {
        const access: DeniedAccess = e.kind === 'exec' ? 'exec' : 'read';
        const d = this.decision(access === 'exec' ? `exec:${e.path}` : `fs:read:${e.path}`);
        if (d?.decision === 'deny') this.deny({ layer: 'mask', access, what: e.path, rule: ruleLabel(d), reason: d.reason }, e.pid);
      }
      return;
    }
    const t = grant.totals;
    let p = t.paths.get(e.path);
    if (!p) {
      if (t.paths.size < PATH_CAP) {
        p = { opens: 0, reads: 0, writes: 0, execs: 0, bytesRead: 0 };
        t.paths.set(e.path, p);
      } else t.untracked++;
      t.files++;
      if (this.seenFiles.size < PATH_CAP * 4 && !this.seenFiles.has(e.path)) {
        this.seenFiles.add(e.path);
        this.totals.files++;
      }
    }
    const bump = (k: keyof PathCounts, n = 1) => {
      t[k] += n;
      this.totals[k] += n;
      if (p) p[k] += n;
    };
    switch (e.kind) {
      case 'open':
        bump('opens');
        break;
      case 'exec':
        bump('execs');
        break;
      case 'write':
        bump('writes');
        break;
      case 'read':
        bump('reads');
        if (e.size > 0) bump('bytesRead', e.size);
        this.d.onRead?.(e.path, Math.max(0, e.size), this.now());
        break;
      case 'modify':
        break;
    }
    if (this.now() - this.lastFlush >= FLUSH_MS) this.flush();
  }

  /** One audit-read line. */
  auditLine(line: string): void {
    if (line.startsWith('lost\t')) {
      this.lost++;
      return;
    }
    const r = parseAuditLine(line);
    const now = this.now();
    const done = r ? this.groups.push(r, now) : this.groups.expire(now);
    for (const g of done) this.group(g);
  }

  /** Completes the events that waited long enough (call now and then, and at the end with all). */
  tick(all = false): void {
    for (const g of this.groups.expire(this.now(), all)) this.group(g);
  }

  private group(records: Parameters<typeof interpretGroup>[0]): void {
    const { denials, domains } = interpretGroup(records);
    for (const dom of domains) if (this.d.owns(dom.pid)) this.ownedDomains.add(dom.domain);
    for (const k of denials) {
      const mine = k.domain && this.ownedDomains.has(k.domain) ? true : Number.isFinite(k.pid) && this.d.owns(k.pid) && (k.source !== 'file-call' || k.uid === this.d.uid);
      if (!mine) continue;
      this.kernelDenial(k);
    }
  }

  private kernelDenial(k: KernelDenial): void {
    const errno = k.errno !== undefined ? ERRNO_NAMES[k.errno] ?? `errno ${k.errno}` : undefined;
    if (k.source === 'seccomp') {
      // clone3 answers ENOSYS by design (libc falls back to clone, whose flags the filter
      // reads). The kernel's record carries the action, not the errno, so it goes by name.
      const name = SYSCALL_NAMES[k.syscall] ?? `syscall ${k.syscall}`;
      if (name === 'clone3') return;
      const what = name === 'clone' ? 'clone (a new namespace)' : name;
      this.deny({ layer: 'seccomp', access: 'syscall', what, rule: 'the box\'s seccomp filter (docs/hardening.md)', reason: `the seccomp filter refuses ${what}` }, k.pid);
      return;
    }
    if (!k.path || (k.access !== 'read' && k.access !== 'list' && k.access !== 'write' && k.access !== 'exec')) {
      const what = k.blockers?.join(',') ?? SYSCALL_NAMES[k.syscall] ?? `syscall ${k.syscall}`;
      this.deny({ layer: k.source, access: k.access, what, rule: 'Landlock', reason: `Landlock refused ${what}`, ...(errno ? { errno } : {}) }, k.pid);
      return;
    }
    const request = k.access === 'exec' ? `exec:${k.path}` : `fs:${k.access === 'write' ? 'write' : 'read'}:${k.path}`;
    const d = this.decision(request);
    if (k.source === 'file-call') {
      if (k.errno === 2) {
        // Absent in the box: a denial only when the host has it and the manifest is why.
        if (!d || d.decision !== 'deny' || !(d.rule || /no grant covers|grants reading only/.test(d.reason))) return;
        // Only where the manifest speaks for the user's files: the home, or a deny's own
        // path. The launcher (root) never looks up an arbitrary path the agent named (an
        // automount or a network file system would answer to root, or hang).
        if (!isWithin(k.path, this.d.model.home) && !d.rule) return;
        if (k.path.length > 4096 || !(this.d.hostHas ?? hostHas)(k.path)) return;
      } else if (k.errno !== 13 && k.errno !== 1 && k.errno !== 30) return;
    }
    const rule = d ? (d.decision === 'deny' ? ruleLabel(d) : `the host's own file permissions; ${d.rule ? d.rule.text : 'the manifest'} allows it`) : 'no rule';
    this.deny({ layer: k.source, access: k.access, what: k.path, rule, reason: d?.reason ?? '', ...(errno ? { errno } : {}) }, k.pid);
  }

  private deny(x: Omit<Denial, 'count' | 'verb'>, pid: number): void {
    this.deniedTotal++;
    const key = `${x.access}\0${x.what}`;
    const known = this.denials.get(key);
    if (known) {
      known.count++;
      return;
    }
    if (this.denials.size >= DENIAL_CAP) return;
    const denial: Denial = { ...x, verb: accessVerb[x.access], count: 1 };
    this.denials.set(key, denial);
    const shown = x.access === 'syscall' ? x.what : showPath(x.what, this.d.model.home);
    const action = x.access === 'syscall' || x.access === 'connect' || x.access === 'signal' ? 'syscall.denied' : 'fs.denied';
    this.d.event(action, x.what, 'deny', `${accessVerb[x.access]} ${shown} (${x.rule})`, { layer: x.layer, access: x.access, rule: x.rule, reason: x.reason, pid, ...(x.errno ? { errno: x.errno } : {}) });
    if (this.d.verbose) this.d.log(`agentbox: denied ${accessVerb[x.access]} ${termSafe(shown)} (${termSafe(x.rule)})`);
  }

  /** Writes one `fs.activity` entry per grant that saw activity since the last flush. */
  flush(): void {
    this.lastFlush = this.now();
    for (const g of this.grants) {
      const t = g.totals;
      if (t.files === 0) continue;
      const busiest = [...t.paths.entries()].sort((a, b) => score(b[1]) - score(a[1]) || (a[0] < b[0] ? -1 : 1));
      const lines = busiest.map(([p, c]) => `${p} r${c.reads} w${c.writes} x${c.execs}`);
      this.d.event('fs.activity', g.path, 'info', `${t.files} files: ${t.reads} reads, ${t.writes} writes, ${t.execs} runs`, {
        files: t.files,
        opens: t.opens,
        reads: t.reads,
        writes: t.writes,
        execs: t.execs,
        bytesRead: t.bytesRead,
        paths: listSummary(lines),
        ...(t.untracked > 0 ? { untracked: t.untracked } : {}),
      });
      g.totals = emptyTotals();
    }
  }

  /** The end: pending events, the last activity entries, the denials summary. */
  finish(): ObservationSummary {
    this.tick(true);
    this.flush();
    const denials = [...this.denials.values()].sort((a, b) => b.count - a.count);
    if (this.deniedTotal > 0) {
      const lines = denials.map((d) => `${accessVerb[d.access]} ${d.access === 'syscall' ? d.what : showPath(d.what, this.d.model.home)} ×${d.count} (${d.rule})`);
      this.d.event('denials.summary', `${this.deniedTotal} denials`, 'deny', `${this.deniedTotal} denials, ${denials.length} distinct`, { total: this.deniedTotal, distinct: denials.length, denials: listSummary(lines), ...(this.denials.size >= DENIAL_CAP ? { capped: DENIAL_CAP } : {}) });
    }
    if (this.lost > 0) this.d.event('observe.lost', 'kernel events', 'info', `${this.lost} batches of kernel events were lost (queue overflow); the counts are lower bounds`);
    return {
      files: { ...this.totals },
      denials,
      deniedTotal: this.deniedTotal,
      lost: this.lost,
      ...(this.d.keepAll ? { all: { paths: [...this.everything].map(([path, counts]) => ({ path, counts })), programs: [...this.programs].map(([path, runs]) => ({ path, runs })) } } : {}),
    };
  }
}

function emptyTotals(): GrantTotals {
  return { files: 0, opens: 0, reads: 0, writes: 0, execs: 0, bytesRead: 0, paths: new Map(), untracked: 0 };
}

const score = (c: PathCounts) => c.reads + c.writes + c.execs + c.opens;

function hostHas(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

