/**
 * The manifest `agentbox learn` proposes: the agent's own manifest with its
 * capabilities replaced by what the observation session used, each grant with a comment
 * saying what used it (as firejail's profile builder and aa-logprof do). Pure.
 *
 * How uses become grants (the smallest set a person can still read):
 * - a file directly in the home is granted as that file (~/.gitconfig);
 * - anything deeper, as the home's folder that holds it (~/work), except under the
 *   shared folders .config, .cache, .local/share and .local/state, where it is the
 *   application's own folder (~/.config/gh);
 * - write when anything under it was written, created or deleted, else read;
 * - programs run from the system's folders as exec grants of each program, except the
 *   agent program and what it implies;
 * - every host and port it connected to, as net:connect.
 * What the session reached through the agent's implied grants (its package) is not
 * proposed: launch grants it anyway. A preset ceiling that does not allow a use turns it
 * into a comment. Every agent-controlled value in a comment is escaped (no line breaks,
 * no control characters), and a path the grant grammar could not carry is only listed.
 */
import { parseDocument, Scalar, YAMLSeq } from 'yaml';
import type { Model } from '../model/types.js';
import { isWithin } from '../model/paths.js';
import { showPath } from '../model/describe.js';
import { termSafe } from '../escape/terminal.js';

export interface LearnedUse {
  path: string;
  reads: number;
  writes: number;
  execs: number;
  opens: number;
}

export interface Learned {
  session: string;
  command: readonly string[];
  /** Files under the home, with what was done to them. */
  paths: readonly LearnedUse[];
  /** Paths the session created, changed or deleted (its layer's changes). */
  changes: readonly { kind: string; path: string }[];
  programs: readonly { path: string; runs: number }[];
  /** host:port → connections and requests. */
  hosts: readonly { host: string; port: number; count: number }[];
  denials: readonly string[];
  /**
   * What the observation box itself refused outside the home because no grant covered it
   * (the default deny; never an explicit deny or the box's fixed design): proposed, so
   * the launch is not refused where learning was.
   */
  uncovered?: readonly { access: 'read' | 'list' | 'exec'; path: string; count: number }[];
  at: string;
}

const SHARED = ['.config', '.cache', '.local/share', '.local/state'];
const LOADER = /\/ld-(linux|musl)[^/]*\.so(\.\d+)*$|\/ld64\.so(\.\d+)*$/;

/** The grant folder (or file) a use under the home becomes, or undefined outside the home. */
export function grantPathFor(path: string, home: string): { path: string; kind: 'file' | 'dir' } | undefined {
  if (!isWithin(path, home) || path === home) return undefined;
  const rel = path.slice(home.length + 1);
  for (const s of SHARED) {
    if (rel.startsWith(`${s}/`)) {
      const rest = rel.slice(s.length + 1).split('/');
      if (rest.length === 1) return { path, kind: 'file' };
      return { path: `${home}/${s}/${rest[0]}`, kind: 'dir' };
    }
  }
  const parts = rel.split('/');
  if (parts.length === 1) return { path, kind: 'file' };
  return { path: `${home}/${parts[0]}`, kind: 'dir' };
}

/** Text a comment can hold: one line, control and invisible characters escaped. */
function note(text: string): string {
  return ' ' + termSafe(text).replace(/[\r\n\u2028\u2029]/g, ' ');
}

/** The grant grammar takes printable text without the characters manifests reject. */
const grammarSafe = (p: string) => !/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(p);

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function proposeManifest(original: string, model: Model, l: Learned, exists: (path: string) => boolean): string {
  const home = model.home;
  const implied = [...model.grants.fs.filter((g) => g.source.pointer === 'agent.command[0]').map((g) => g.path), ...model.grants.exec.filter((g) => g.implied).map((g) => g.path)];
  const ceilings = model.extends.map((p) => p.ceiling);
  const canWrite = ceilings.length === 0 || ceilings.some((c) => c.fs === 'write');
  const canRead = ceilings.length === 0 || ceilings.some((c) => c.fs !== 'none');
  const canNet = ceilings.length === 0 || ceilings.some((c) => c.net);
  const canExec = ceilings.length === 0 || ceilings.some((c) => c.exec);

  const folders = new Map<string, { kind: 'file' | 'dir'; files: Set<string>; reads: number; writes: number; execs: number; changed: number; example: string }>();
  const unusable: string[] = [];
  const add = (path: string, u: Partial<LearnedUse> & { changed?: number }) => {
    if (implied.some((i) => isWithin(path, i))) return;
    const g = grantPathFor(path, home);
    if (!g) return;
    if (!grammarSafe(g.path)) {
      unusable.push(path);
      return;
    }
    const f = folders.get(g.path) ?? { kind: g.kind, files: new Set<string>(), reads: 0, writes: 0, execs: 0, changed: 0, example: path };
    f.files.add(path);
    f.reads += u.reads ?? 0;
    f.writes += u.writes ?? 0;
    f.execs += u.execs ?? 0;
    f.changed += u.changed ?? 0;
    folders.set(g.path, f);
  };
  for (const p of l.paths) add(p.path, p);
  for (const c of l.changes) add(c.path, { changed: 1 });

  type Item = { text: string; comment: string };
  const items: Item[] = [];
  const dropped: string[] = [];
  for (const [path, f] of [...folders].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const wrote = f.writes > 0 || f.changed > 0;
    const uses = [f.reads ? `${plural(f.reads, 'read')}` : '', f.writes ? `${plural(f.writes, 'write')}` : '', f.changed ? `${plural(f.changed, 'change')} to files` : '', f.execs ? plural(f.execs, 'run') : ''].filter(Boolean).join(', ');
    const what = f.kind === 'dir' ? `${plural(f.files.size, 'file')} used (${uses || 'opened'}), e.g. ${showPath(f.example, home)}` : `used: ${uses || 'opened'}`;
    const created = exists(path) ? '' : '; it did not exist before learning: create it, owned by the agent user, before launch (a grant of a missing path is left out of the box)';
    const shown = showPath(path, home);
    if (wrote && !canWrite) {
      if (canRead) items.push({ text: `fs:read:${shown}`, comment: `${what}; it also wrote here, which preset ${model.extends.map((p) => p.name).join(', ')} does not allow${created}` });
      else dropped.push(`fs:write:${shown} (${what}): not allowed by the presets`);
      continue;
    }
    if (!canRead) {
      dropped.push(`fs:read:${shown} (${what}): not allowed by the presets`);
      continue;
    }
    items.push({ text: `fs:${wrote ? 'write' : 'read'}:${shown}`, comment: `${what}${created}` });
  }
  for (const u of l.uncovered ?? []) {
    if (!grammarSafe(u.path) || isWithin(u.path, home)) continue;
    const text = u.access === 'exec' ? `exec:${u.path}` : `fs:read:${u.path}`;
    if (items.some((i) => i.text === text)) continue;
    if (u.access === 'exec' ? !canExec : !canRead) {
      dropped.push(`${text} (refused ${plural(u.count, 'time')} while learning): not allowed by the presets`);
      continue;
    }
    const how = `${u.access === 'list' ? 'listed' : u.access === 'exec' ? 'run' : 'read'} outside the home, which no grant covered: a round of learning was refused it${u.access === 'list' ? '; reading a folder covers everything under it: review' : ''}`;
    items.push({ text, comment: how });
  }
  const agentProgram = model.agent.command[0];
  for (const p of [...l.programs].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    // The ELF interpreter is opened for execution with every program: the box always allows it.
    if (p.path === agentProgram || LOADER.test(p.path) || implied.some((i) => isWithin(p.path, i)) || !grammarSafe(p.path)) continue;
    if (!canExec) dropped.push(`exec:${p.path} (ran ${plural(p.runs, 'time')}): not allowed by the presets`);
    else items.push({ text: `exec:${p.path}`, comment: `ran ${plural(p.runs, 'time')}` });
  }
  for (const h of [...l.hosts].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.port - b.port))) {
    const host = h.host.includes(':') ? `[${h.host}]` : h.host;
    if (!canNet) dropped.push(`net:connect:${host}:${h.port}: not allowed by the presets`);
    else items.push({ text: `net:connect:${host}:${h.port}`, comment: `${plural(h.count, 'connection or request', 'connections and requests')} through the proxy` });
  }

  const doc = parseDocument(original);
  const before = (doc.get('capabilities') as YAMLSeq | undefined)?.items?.map((i) => String((i as Scalar).value ?? i)) ?? [];
  const seq = new YAMLSeq();
  for (const it of items) {
    const s = new Scalar(it.text);
    s.commentBefore = note(it.comment);
    seq.items.push(s);
  }
  const kept = new Set(items.map((i) => i.text));
  const unused = before.filter((b) => !kept.has(b));
  doc.set('capabilities', seq);
  if (model.extends.length > 0) doc.set('extends', model.extends.map((p) => p.name));
  const header = [
    ` Proposed by \`agentbox learn\` on ${l.at} from session${l.session.includes(',') ? 's' : ''} ${l.session}`,
    ` (agentbox audit show --session ${l.session.split(', ').pop()}), running: ${l.command.join(' ')}`,
    ' Each grant says what used it. Nothing here was decided by a person: read it before use.',
    ...(unused.length ? [' Not used while learning, so not proposed:', ...unused.map((u) => `   ${u}`)] : []),
    ...(dropped.length ? [' Used, but outside what the presets allow (not proposed):', ...dropped.map((d) => `   ${d}`)] : []),
    ...(unusable.length ? [' Used, but the path cannot be written as a grant (control characters):', ...unusable.slice(0, 20).map((u) => `   ${JSON.stringify(u)}`)] : []),
    ...(l.denials.length ? [' Denied while learning (still denied under this manifest):', ...l.denials.slice(0, 50).map((d) => `   ${d}`)] : []),
  ];
  doc.commentBefore = header.map((h) => (h.startsWith('   ') ? '  ' : '') + note(h.trim())).join('\n');
  return doc.toString({ lineWidth: 0 });
}
