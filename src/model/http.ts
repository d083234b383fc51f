/**
 * HTTP inside HTTPS, as the manifest governs it (pure):
 * - which hosts the proxy decrypts (`inspected`);
 * - the `egress.http` method/path rules: their grammar, the request path as they see
 *   it, and the decision for one request.
 *
 * A rule is `METHOD /path/glob`: METHOD is an HTTP method in capitals or `*` for any;
 * each path segment is literal text, `*` (exactly one segment; inside a segment `*`
 * matches any run of characters, as in `*.json`) or `**` (any number of segments,
 * none included). The query string is never part of a match.
 *
 * The path a rule sees is normalised the way servers resolve it, so a rule cannot be
 * walked around by spelling: each segment percent-decoded, `.` dropped, `..` taken
 * back, empty segments dropped. A path whose meaning a server could read differently
 * is refused outright: an encoded `/`, `\` or NUL in a segment, a raw `\`, `#` or `;`,
 * a `..` above the root, a malformed percent-escape, or a `%` left after one decoding.
 */
import { hostMatches } from './decide.js';
import type { HttpHostRules, HttpRule, Model } from './types.js';

export const HTTP_METHOD = /^(?:[A-Z][A-Z-]{0,31}|\*)$/;

/** Parses `GET /repos/**` (the rule as written; the source is attached by the caller). */
export function parseHttpRule(text: string): { ok: true; method: string; segments: string[] } | { ok: false; message: string } {
  const m = /^(\S+) (\/\S*)$/.exec(text);
  if (!m) return { ok: false, message: `"${text}" is not a rule; write METHOD /path, such as "GET /repos/**" or "* /admin/**"` };
  const method = m[1]!;
  if (!HTTP_METHOD.test(method)) return { ok: false, message: `"${method}" is not an HTTP method; write it in capitals (GET, POST, DELETE) or * for any` };
  const path = m[2]!;
  if (/[?#]/.test(path)) return { ok: false, message: `"${path}" has a query or fragment; rules match the path only` };
  if (/[\\%]/.test(path)) return { ok: false, message: `"${path}" has a backslash or percent-escape; write the path as it reads once decoded` };
  const segments = path.split('/').filter((s) => s !== '');
  for (const s of segments) {
    if (s === '.' || s === '..') return { ok: false, message: `"${path}" has a . or .. segment; write the path it resolves to` };
    if (s.includes('**') && s !== '**') return { ok: false, message: `"${s}": ** stands alone as a segment (any number of segments); use * inside a segment` };
  }
  return { ok: true, method, segments };
}

export type NormalisedPath = { ok: true; segments: string[] } | { ok: false; reason: string };

/** The request path (no query) as a rule sees it, or why it is refused. */
export function normaliseRequestPath(raw: string): NormalisedPath {
  if (!raw.startsWith('/')) return { ok: false, reason: 'the request target is not a path (origin-form /...)' };
  if (raw.includes('\\')) return { ok: false, reason: 'the path has a backslash, which servers read differently' };
  if (raw.includes('#')) return { ok: false, reason: 'the path has a #, which some servers cut the path at' };
  if (raw.includes(';')) return { ok: false, reason: 'the path has a ; (path parameters), which some servers strip before routing' };
  const out: string[] = [];
  for (const seg of raw.split('/')) {
    let s: string;
    try {
      s = decodeURIComponent(seg);
    } catch {
      return { ok: false, reason: 'the path has a malformed percent-escape' };
    }
    if (/[/\\\0]/.test(s)) return { ok: false, reason: 'the path encodes a /, \\ or NUL inside a segment' };
    if (s.includes('%')) return { ok: false, reason: 'the path is percent-encoded twice, which a server decoding twice reads differently' };
    if (s.includes(';') || s.includes('#')) return { ok: false, reason: 'the path encodes a ; or #, which some servers read as a delimiter' };
    if (s === '' || s === '.') continue;
    if (s === '..') {
      if (out.length === 0) return { ok: false, reason: 'the path climbs above the root with ..' };
      out.pop();
      continue;
    }
    out.push(s);
  }
  return { ok: true, segments: out };
}

function segmentMatches(pattern: string, seg: string): boolean {
  if (pattern === '*') return true;
  if (!pattern.includes('*')) return pattern === seg;
  const parts = pattern.split('*');
  if (!seg.startsWith(parts[0]!) || !seg.endsWith(parts[parts.length - 1]!)) return false;
  let at = parts[0]!.length;
  const end = seg.length - parts[parts.length - 1]!.length;
  if (at > end) return false;
  for (const p of parts.slice(1, -1)) {
    const i = seg.indexOf(p, at);
    if (i < 0 || i + p.length > end) return false;
    at = i + p.length;
  }
  return true;
}

/** Glob segments against path segments; `**` matches any number of segments (iteratively, no backtracking blow-up). */
export function pathMatches(pattern: readonly string[], path: readonly string[]): boolean {
  // Positions reachable in `path` after consuming a prefix of `pattern` (a set, so ** is linear per step).
  let reach = new Set<number>([0]);
  for (const p of pattern) {
    const next = new Set<number>();
    if (p === '**') {
      // Every position from the earliest reachable one on: linear, whatever the pattern.
      for (let j = Math.min(...reach); j <= path.length; j++) next.add(j);
    } else for (const i of reach) if (i < path.length && segmentMatches(p, path[i]!)) next.add(i + 1);
    if (next.size === 0) return false;
    reach = next;
  }
  return reach.has(path.length);
}

export const ruleMatches = (r: HttpRule, method: string, path: readonly string[]) => (r.method === '*' || r.method === method) && pathMatches(r.segments, path);

/** The egress.http entries that apply to a host. */
export const httpEntriesFor = (model: Pick<Model, 'egress'>, host: string): HttpHostRules[] => model.egress.http.filter((e) => hostMatches(e.host, host));

export type HttpDecision = { allow: true; rule: string | undefined } | { allow: false; rule: string | undefined; reason: string };

const where = (r: HttpRule) => `"${r.text}" (${r.source.pointer})`;

/**
 * One request against a host's rules: a deny that matches refuses; then, when any
 * entry for the host has an allow list, one of them must match; else it is allowed.
 */
export function decideHttp(entries: readonly HttpHostRules[], method: string, rawPath: string): HttpDecision {
  // No rules for the host: nothing to walk around, so no spelling is refused.
  if (entries.length === 0) return { allow: true, rule: undefined };
  const n = normaliseRequestPath(rawPath);
  const shown = rawPath.length > 120 ? `${rawPath.slice(0, 117)}...` : rawPath;
  if (!n.ok) return { allow: false, rule: 'egress.http', reason: `${method} ${shown} was refused: ${n.reason}` };
  for (const e of entries) for (const d of e.deny) if (ruleMatches(d, method, n.segments)) return { allow: false, rule: where(d), reason: `${method} ${shown} is denied by rule ${where(d)}` };
  const lists = entries.filter((e) => e.allow !== undefined);
  if (lists.length === 0) return { allow: true, rule: undefined };
  for (const e of lists) for (const a of e.allow!) if (ruleMatches(a, method, n.segments)) return { allow: true, rule: where(a) };
  const pointers = lists.map((e) => `${e.source.pointer}.allow`).join(', ');
  return { allow: false, rule: pointers, reason: `${method} ${shown} matches no allow rule for this host (${pointers})` };
}

export type InspectReason = 'rules' | 'credential' | 'inspect' | 'dlp';

/**
 * Whether HTTPS to a host is decrypted, and why: its method/path rules or an injected
 * credential always (they cannot be enforced otherwise); else `inspect: false` keeps it
 * an opaque tunnel; else `inspect: true`, or DLP (which covers every host it can see).
 */
export function inspection(model: Pick<Model, 'egress'>, host: string): InspectReason | undefined {
  const entries = httpEntriesFor(model, host);
  if (entries.some((e) => e.allow !== undefined || e.deny.length > 0)) return 'rules';
  if (model.egress.credentials.some((c) => c.host === host)) return 'credential';
  if (entries.some((e) => e.inspect === false)) return undefined;
  if (entries.some((e) => e.inspect === true)) return 'inspect';
  if (model.egress.dlp) return 'dlp';
  return undefined;
}

/** True when the session may decrypt anything, so the box needs the session CA. */
export const decryptsAny = (model: Pick<Model, 'egress'>): boolean =>
  model.egress.dlp !== undefined || model.egress.credentials.length > 0 || model.egress.http.some((e) => e.inspect !== false);
