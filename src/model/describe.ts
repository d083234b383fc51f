/**
 * The plain-language consent text for a manifest (`agentbox describe`): which
 * folders, which hosts, what it will not do, for how long. Pure.
 */
import { ETC_DIR_MASKS, ETC_FILE_MASKS } from './system-view.js';
import type { Model, MonitorRule } from './types.js';
import { effectiveFs, viaProxy } from './grants.js';
import { inspection } from './http.js';
import { hostMatches } from './decide.js';
import { dlpWords } from './dlp.js';

export interface Description {
  agent: string;
  description: string;
  command: string[];
  presets: { name: string; description: string; summary: string }[];
  may: string[];
  mayNot: string[];
  /** Every path the agent may never open. */
  denied: string[];
  /** Granted hosts whose HTTPS agentbox decrypts and inspects (a pinned client needs inspect: false). */
  decrypted: string[];
  duration: string;
  limits: string[];
  /** The behaviour rules, in words. */
  watched: string[];
  onExit: string;
}

/** `~/Documents` rather than `/home/alice/Documents` where it reads better. */
export function showPath(path: string, home: string): string {
  if (path === home) return '~';
  return path.startsWith(home + '/') ? '~' + path.slice(home.length) : path;
}

export function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const parts = [h && `${h} hour${h === 1 ? '' : 's'}`, m && `${m} minute${m === 1 ? '' : 's'}`, s && `${s} second${s === 1 ? '' : 's'}`].filter(Boolean);
  return parts.join(' ');
}

function bytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    i++;
  }
  return `${v} ${units[i]}`;
}

/** A behaviour rule in plain words. */
export function monitorText(r: MonitorRule, home: string): string {
  const where = [...r.under.map((u) => showPath(u, home)), ...r.named.map((n) => `any folder named ${n}`), ...r.labels.map((l) => `paths labelled ${l}`)].join(', ');
  const amount = [r.files !== undefined ? `more than ${r.files} files` : '', r.bytes !== undefined ? `more than ${bytes(r.bytes)}` : ''].filter(Boolean).join(' or ');
  const then = r.thenUploadSeconds !== undefined ? ` and then sends anything out within ${duration(r.thenUploadSeconds)}` : '';
  return `if it reads ${amount} under ${where} within ${duration(r.withinSeconds)}${then}, its network is cut${r.onTrip === 'quarantine' ? ' and it is frozen (quarantine)' : ' for the rest of the session'} (rule ${r.name}${r.source.origin === 'preset' ? `, preset ${r.source.preset}` : ''})`;
}

export function describeModel(model: Model): Description {
  const p = (x: string) => showPath(x, model.home);
  const { fs } = effectiveFs(model);
  const may: string[] = [];
  const decrypted: string[] = [];
  for (const g of fs) may.push(g.access === 'write' ? `read, change, create and delete files in ${p(g.path)}` : `read ${p(g.path)}`);
  for (const g of model.grants.net) {
    const host = g.hostKind === 'wildcard' ? `any host under ${g.host.slice(2)}` : g.hostKind === 'ipv6' ? `[${g.host}]` : g.host;
    const why = inspection(model, g.host);
    const opaque = !why && model.egress.http.some((e) => e.inspect === false && hostMatches(e.host, g.host));
    const notes = [viaProxy(g) ? "through agentbox's egress proxy" : undefined, why ? 'agentbox decrypts and inspects its HTTPS' : opaque ? 'its HTTPS stays an encrypted tunnel agentbox does not open (inspect: false)' : undefined].filter(Boolean);
    may.push(`connect to ${host} on port ${g.port}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`);
    if (why) decrypted.push(g.host);
  }
  for (const c of model.egress.credentials) {
    may.push(`use your ${c.name} key for ${c.host} through agentbox; it never sees the key${c.env ? ` (${c.env} in the box holds a stand-in that works only there)` : ''}`);
  }
  for (const e of model.egress.http) {
    if (e.allow !== undefined) may.push(`on ${e.host}, make only these requests: ${e.allow.map((r) => r.text).join(', ') || 'none'}`);
  }
  const consent = model.egress.consent;
  for (const c of consent?.hosts ?? []) {
    const host = c.hostKind === 'any' ? 'any other host' : c.hostKind === 'wildcard' ? `any host under ${c.host.slice(2)}` : c.hostKind === 'ipv6' ? `[${c.host}]` : c.host;
    may.push(`connect to ${host}${c.port === 'any' ? '' : ` on port ${c.port}`} only after a person allows it (asked when it tries; no answer within ${duration(consent!.timeoutSeconds)} is a no)`);
  }
  const rt = model.runtime.kind;
  may.push(
    rt === 'container'
      ? "see its image's system folders (/usr, /etc, /bin, /lib), read-only; not this computer's"
      : rt === 'microvm'
        ? "read this computer's programs (/usr), read-only, in a virtual machine of its own"
        : `read this computer's programs and settings (/usr, /etc, /bin, /lib), changing none of them; secrets there stay hidden (${[...ETC_FILE_MASKS.slice(0, 1), '/etc/sudoers', ...ETC_DIR_MASKS.slice(1, 2)].join(', ')} and ${ETC_FILE_MASKS.length + ETC_DIR_MASKS.length - 3} more)`,
  );
  may.push('use a private /tmp and /var/tmp of its own: empty at the start, thrown away at the end, nothing there can be run');
  may.push(`run ${p(model.agent.command[0] ?? '(no command)')}`);
  for (const g of model.grants.exec) may.push(`run programs in ${p(g.path)}`);

  const mayNot: string[] = [];
  mayNot.push(fs.length > 0 ? 'read or change any other file of yours' : 'read or change any file of yours');
  if (!fs.some((g) => g.access === 'write')) mayNot.push('change, create or delete any file');
  const denied = model.denies.fs.filter((d) => d.access === 'all').map((d) => p(d.path));
  if (denied.length > 0) {
    const shown = denied.length > 8 ? `${denied.slice(0, 8).join(', ')} and ${denied.length - 8} more (--json lists all)` : denied.join(', ');
    mayNot.push(`open ${shown}, even where a grant would cover them`);
  }
  const readOnly = model.denies.fs.filter((d) => d.access === 'write').map((d) => p(d.path));
  if (readOnly.length > 0) mayNot.push(`change anything in ${readOnly.join(', ')}`);
  mayNot.push(
    consent ? 'connect anywhere else, send UDP or look up names itself' : model.grants.net.length > 0 ? 'connect to any other host, send UDP or look up names itself' : 'use the network at all',
  );
  const dlp = model.egress.dlp;
  const quarantines = model.egress.onViolation === 'quarantine' ? '; trying it stops and freezes the session' : '';
  if (dlp) {
    const what = [...dlpWords(dlp.written), ...dlp.custom.map((c) => (c.marker !== undefined ? `text marked ${c.marker}` : `data matching ${c.name}`))];
    const list = what.length > 1 ? `${what.slice(0, -1).join(', ')} or ${what.at(-1)}` : what[0];
    mayNot.push(`send ${list} in web requests agentbox can read (plain HTTP, and the HTTPS it decrypts)${quarantines}`);
  }
  if (model.egress.maxUploadBytes !== undefined) {
    mayNot.push(`send more than ${bytes(model.egress.maxUploadBytes)} to any one host within ${duration(model.egress.uploadWindowSeconds)}${quarantines}`);
  }
  for (const e of model.egress.http) if (e.deny.length > 0) mayNot.push(`make these requests to ${e.host}: ${e.deny.map((r) => r.text).join(', ')}`);
  if (model.egress.credentials.length > 0) mayNot.push('send a brokered key (or its stand-in) to any other host');
  for (const d of model.denies.net) mayNot.push(`connect to ${d.hostKind === 'ipv6' ? `[${d.host}]` : d.host}${d.port === 'any' ? '' : ` on port ${d.port}`}`);
  mayNot.push('run programs it was not granted');
  for (const d of model.denies.exec) mayNot.push(`run ${p(d.path)}`);
  mayNot.push('gain administrator rights or see your other programs');

  const limits: string[] = [];
  if (model.limits.memoryBytes !== undefined) limits.push(`${bytes(model.limits.memoryBytes)} of memory`);
  if (model.limits.diskBytes !== undefined) limits.push(`${bytes(model.limits.diskBytes)} written in all`);
  if (model.limits.pids !== undefined) limits.push(`${model.limits.pids} processes`);
  if (model.limits.cpus !== undefined) limits.push(`${model.limits.cpus} CPU${model.limits.cpus === 1 ? '' : 's'}`);

  const writes = fs.some((g) => g.access === 'write');
  return {
    agent: model.name,
    description: model.description,
    command: model.agent.command,
    presets: model.extends.map((x) => ({ name: x.name, description: x.description, summary: x.summary })),
    may,
    mayNot,
    denied,
    decrypted,
    duration: model.ttlSeconds === undefined ? 'until it exits (no time limit is set)' : `at most ${duration(model.ttlSeconds)}, then it is stopped`,
    limits,
    watched: model.monitor.map((r) => monitorText(r, model.home)),
    onExit: !writes
      ? 'it can change nothing, so there is nothing to revert'
      : model.runtime.snapshot === 'persist'
        ? 'the changes it made in the folders it may change are kept'
        : 'the changes it made are thrown away (snapshot: revert); your files are left as they were',
  };
}

export function describeText(d: Description): string {
  const lines: string[] = [];
  lines.push(`${d.agent}${d.description ? ` — ${d.description}` : ''}`);
  lines.push(`runs ${d.command.join(' ')} inside agentbox${d.presets.length > 0 ? ` as ${d.presets.map((p) => p.name).join(' + ')}` : ''}.`);
  for (const p of d.presets) lines.push('', `${p.name}: ${p.description}`);
  lines.push('', 'It may:');
  for (const m of d.may) lines.push(`  • ${m}`);
  lines.push('', 'It may not:');
  for (const m of d.mayNot) lines.push(`  • ${m}`);
  if (d.watched.length > 0) {
    lines.push('', 'Watched (what it reads, writes and runs is recorded):');
    for (const w of d.watched) lines.push(`  • ${w}`);
  }
  lines.push('', `For how long: ${d.duration}.`);
  if (d.limits.length > 0) lines.push(`Limits: ${d.limits.join(', ')}.`);
  lines.push(`When it exits: ${d.onExit}.`);
  return lines.join('\n');
}
