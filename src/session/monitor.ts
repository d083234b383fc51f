/**
 * Behaviour rules (`monitor:`) over what the kernel saw: reads under the grants (from
 * session/observe.ts) and the session's outbound connections and requests (from the
 * egress proxy's decisions). Pure but for the clock it is given.
 *
 * A rule's read phase trips when more than `files` distinct files, or more than `bytes`
 * (the files' sizes at close: what a whole read would take), were read under its paths
 * within `withinSeconds`. A rule without `thenUpload` trips right then; one with it is
 * armed for `thenUpload.withinSeconds` and trips at the first allowed outbound
 * connection or request in that time, before that connection is dialled (the caller
 * cuts egress synchronously). A rule trips once per session.
 */
import type { MonitorRule } from '../model/types.js';
import { isWithin } from '../model/paths.js';

const expandHome = (p: string, home: string) => (p === '~' ? home : p.startsWith('~/') ? `${home}${p.slice(1)}` : p);
import type { Labels } from '../policy/entities.js';

export interface Trip {
  rule: MonitorRule;
  /** What it saw, in words (for the audit entry and the operator). */
  why: string;
  files: number;
  bytes: number;
  /** The connection that followed the bulk read, for a read-then-upload rule. */
  upload?: string;
}

interface RuleState {
  rule: MonitorRule;
  reads: { at: number; path: string; bytes: number }[];
  armedUntil: number | undefined;
  armedWhy: { files: number; bytes: number } | undefined;
  tripped: boolean;
}

/** True when `path` lies under one of the rule's folders, named folders or labelled paths. */
export function ruleCovers(rule: MonitorRule, path: string, home: string, labels: Labels | undefined): boolean {
  if (rule.under.some((u) => isWithin(path, u))) return true;
  if (rule.named.length > 0) {
    const segs = path.split('/').slice(0, -1);
    if (rule.named.some((n) => segs.includes(n))) return true;
  }
  if (rule.labels.length > 0 && labels) {
    for (const e of labels.paths) {
      if (!e.labels.some((l) => rule.labels.includes(l))) continue;
      if (e.prefix !== undefined && isWithin(path, expandHome(e.prefix, home))) return true;
      if (e.segment !== undefined && path.split('/').slice(0, -1).includes(e.segment)) return true;
    }
  }
  return false;
}

export class Monitor {
  private readonly states: RuleState[];

  constructor(
    rules: readonly MonitorRule[],
    private readonly home: string,
    private readonly labels: Labels | undefined,
    private readonly onTrip: (t: Trip) => void,
  ) {
    this.states = rules.map((rule) => ({ rule, reads: [], armedUntil: undefined, armedWhy: undefined, tripped: false }));
  }

  /** A file read to its close under the grants. */
  read(path: string, bytes: number, at: number): void {
    for (const s of this.states) {
      if (s.tripped || !ruleCovers(s.rule, path, this.home, this.labels)) continue;
      const windowMs = s.rule.withinSeconds * 1000;
      s.reads.push({ at, path, bytes });
      while (s.reads.length > 0 && at - s.reads[0]!.at > windowMs) s.reads.shift();
      // Bounded: beyond what any threshold needs, the oldest reads go first.
      if (s.reads.length > Math.max(s.rule.files ?? 0, 10_000) + 1) s.reads.shift();
      const files = new Set(s.reads.map((r) => r.path)).size;
      const bytesRead = s.reads.reduce((n, r) => n + r.bytes, 0);
      const over = (s.rule.files !== undefined && files > s.rule.files) || (s.rule.bytes !== undefined && bytesRead > s.rule.bytes);
      if (!over) continue;
      if (s.rule.thenUploadSeconds === undefined) {
        s.tripped = true;
        this.onTrip({ rule: s.rule, files, bytes: bytesRead, why: `${files} files (${bytesRead} bytes) read within ${s.rule.withinSeconds}s` });
      } else {
        s.armedUntil = at + s.rule.thenUploadSeconds * 1000;
        s.armedWhy = { files, bytes: bytesRead };
      }
    }
  }

  /**
   * An outbound connection or request the proxy is about to make. True when a rule
   * tripped on it: the caller cuts egress before it is dialled.
   */
  egress(destination: string, at: number): boolean {
    let tripped = false;
    for (const s of this.states) {
      if (s.tripped || s.armedUntil === undefined || at > s.armedUntil) continue;
      s.tripped = true;
      tripped = true;
      const w = s.armedWhy!;
      this.onTrip({ rule: s.rule, files: w.files, bytes: w.bytes, upload: destination, why: `${w.files} files (${w.bytes} bytes) read within ${s.rule.withinSeconds}s, then a connection to ${destination}` });
    }
    return tripped;
  }
}
