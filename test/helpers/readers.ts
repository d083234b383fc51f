/**
 * Test-side readers for generated artifacts, written from each syntax's documentation
 * and independent of the generators' escapers. They extract the rules an artifact
 * really contains, and throw on any line that is neither a fixed template line nor a
 * rule form agentbox generates, so an injected directive cannot hide.
 */

/** systemd word splitting and unquoting (systemd.syntax(7)), then specifier/variable unescaping. */
export function systemdWords(value: string, opts: { dollar: boolean }): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (ch === '\\') {
      const next = value[++i];
      if (next === undefined) throw new Error(`dangling backslash in ${JSON.stringify(value)}`);
      cur += next === 'n' ? '\n' : next === 't' ? '\t' : next;
      inWord = true;
    } else if (quote) {
      if (ch === quote) quote = undefined;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated quote in ${JSON.stringify(value)}`);
  if (inWord) words.push(cur);
  return words.map((w) => {
    let out = '';
    for (let i = 0; i < w.length; i++) {
      const ch = w[i]!;
      if (ch === '%') {
        if (w[i + 1] !== '%') throw new Error(`live specifier %${w[i + 1]} in ${JSON.stringify(value)}`);
        out += '%';
        i++;
      } else if (ch === '$' && opts.dollar) {
        if (w[i + 1] !== '$') throw new Error(`live variable in ${JSON.stringify(value)}`);
        out += '$';
        i++;
      } else out += ch;
    }
    return out;
  });
}

const GENERATED_KEYS = new Set([
  'ExecStart', 'Environment', 'BindPaths', 'BindReadOnlyPaths', 'InaccessiblePaths', 'ReadOnlyPaths', 'ExecPaths', 'NoExecPaths',
  'PrivateNetwork', 'RestrictAddressFamilies', 'IPAddressDeny', 'IPAddressAllow', 'MemoryMax', 'MemorySwapMax', 'TasksMax', 'CPUQuota', 'RuntimeMaxSec',
]);
const PATH_KEYS = ['BindPaths', 'BindReadOnlyPaths', 'InaccessiblePaths', 'ReadOnlyPaths', 'ExecPaths', 'NoExecPaths'];

export interface UnitReading {
  sections: string[];
  execStart: string[];
  environment: string[];
  paths: Record<string, string[]>;
  ipAllow: string[];
  privateNetwork: boolean;
  /** Requires=, BindsTo= and After= lines beyond the template's own, by key. */
  unitDeps: Record<string, string[]>;
}

/** The units agentbox orders an agent after: its firewall unit and agentboxd. */
const DEP_UNIT = /^(?:agentboxd\.service|agentbox-[a-z][a-z0-9-]*-firewall\.service)$/;

export function readSystemdUnit(content: string, template: string): UnitReading {
  const fixed = new Set(template.split('\n').filter((l) => !l.includes('{{')));
  const templateKeys = new Map<string, RegExp>();
  for (const l of template.split('\n')) {
    const m = /^([A-Za-z]+)=(.*\{\{.*)$/.exec(l);
    if (m && m[1] !== 'ExecStart') templateKeys.set(m[1]!, new RegExp('^' + m[2]!.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{\\?\{[a-zA-Z]+\\?\}\\?\}/g, '[a-z][a-z0-9-]*') + '$'));
  }
  const r: UnitReading = { sections: [], execStart: [], environment: [], paths: Object.fromEntries(PATH_KEYS.map((k) => [k, []])), ipAllow: [], privateNetwork: false, unitDeps: {} };
  for (const line of content.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      r.sections.push(sec[1]!);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv) throw new Error(`systemd: not a directive: ${JSON.stringify(line)}`);
    const [, key, value] = kv as unknown as [string, string, string];
    if (fixed.has(line)) continue;
    if (key === 'ExecStart') {
      if (r.execStart.length) throw new Error('systemd: second ExecStart');
      r.execStart = systemdWords(value, { dollar: true });
    } else if (key === 'Environment') {
      r.environment.push(...systemdWords(value, { dollar: false }));
    } else if (PATH_KEYS.includes(key)) {
      for (const w of systemdWords(value, { dollar: false })) r.paths[key]!.push(w.replace(/^-/, ''));
    } else if (key === 'IPAddressAllow') {
      r.ipAllow.push(...value.split(' '));
    } else if (key === 'Requires' || key === 'BindsTo' || key === 'After') {
      const units = value.split(' ');
      for (const u of units) if (!DEP_UNIT.test(u)) throw new Error(`systemd: ${key}= names a unit agentbox does not: ${JSON.stringify(u)}`);
      (r.unitDeps[key] ??= []).push(...units);
    } else if (key === 'PrivateNetwork') {
      r.privateNetwork = value === 'yes';
    } else if (templateKeys.has(key)) {
      if (!templateKeys.get(key)!.test(value)) throw new Error(`systemd: ${key}= has an unexpected value ${JSON.stringify(value)}`);
    } else if (GENERATED_KEYS.has(key)) {
      if (!/^[A-Za-z0-9_ :.%]*$/.test(value)) throw new Error(`systemd: ${key}= has an unexpected value ${JSON.stringify(value)}`);
    } else throw new Error(`systemd: directive ${key}= is not one agentbox writes`);
  }
  return r;
}

export interface AppArmorRule {
  deny: boolean;
  path: string;
  perms: string;
}

/** Reads the rules inside the profile; throws on anything else. */
export function readApparmorRules(content: string, template: string): { rules: AppArmorRule[]; network: string[] } {
  const fixed = new Set(template.split('\n').filter((l) => !l.includes('{{')).map((l) => l.trim()));
  const rules: AppArmorRule[] = [];
  const network: string[] = [];
  let profiles = 0;
  const lines = content.split('\n');
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (lines[lines.length - 1] !== '}') throw new Error('apparmor: the profile does not end the file');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || fixed.has(line)) continue;
    if (line.startsWith('#')) {
      // `#include` is a directive in AppArmor, not a comment: only "# ..." is inert.
      if (!line.startsWith('# ') && line !== '#') throw new Error(`apparmor: ${JSON.stringify(line)} is not a comment`);
      continue;
    }
    if (/^profile agentbox-[a-z][a-z0-9-]* flags=\(attach_disconnected,mediate_deleted\) \{$/.test(line)) {
      profiles++;
      continue;
    }
    if (/^signal \(send, receive\) peer=agentbox-[a-z][a-z0-9-]*,$/.test(line)) continue;
    const net = /^(deny )?network (inet6?) ?(stream|dgram)?,$/.exec(line);
    if (net) {
      if (!net[1]) network.push(`${net[2]} ${net[3]}`);
      continue;
    }
    const m = /^(deny )?"((?:[^"\\]|\\.)*)" ([a-z]+),$/.exec(line);
    if (!m) throw new Error(`apparmor: not a rule agentbox writes: ${JSON.stringify(line)}`);
    let body = m[2]!;
    if (body.endsWith('/**')) body = body.slice(0, -3);
    else if (body.endsWith('/')) body = body.slice(0, -1);
    if (/(^|[^\\])[*?[\]{}^]/.test(body.replace(/\\\\/g, ''))) throw new Error(`apparmor: live glob in ${JSON.stringify(line)}`);
    const path = body.replace(/\\(.)/g, '$1');
    rules.push({ deny: Boolean(m[1]), path, perms: m[3]! });
  }
  if (profiles !== 1) throw new Error(`apparmor: ${profiles} profile headers`);
  return { rules, network };
}

function shellTokens(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2]!);
  return out;
}

export function readIptablesRules(content: string): { chains: string[]; accepts: string[]; otherTargets: string[]; endsWithDefaultReject: boolean } {
  const chains: string[] = [];
  const accepts: string[] = [];
  const otherTargets: string[] = [];
  const appended: string[] = [];
  let table = 0;
  for (const line of content.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line === '*filter') {
      table++;
      continue;
    }
    if (line === 'COMMIT') continue;
    const chain = /^:([A-Z0-9-]+) - \[0:0\]$/.exec(line);
    if (chain) {
      chains.push(chain[1]!);
      continue;
    }
    const t = shellTokens(line);
    if (t[0] !== '-A' || t[1] !== chains[0]) throw new Error(`iptables: not an append to the agent chain: ${JSON.stringify(line)}`);
    appended.push(line);
    const target = t[t.indexOf('-j') + 1];
    if (target === 'ACCEPT') {
      const d = t[t.indexOf('-d') + 1]!.replace(/\/(32|128)$/, '');
      const p = t[t.indexOf('--dport') + 1];
      if (t.indexOf('-d') < 0 || t.indexOf('--dport') < 0) throw new Error(`iptables: accept without address and port: ${line}`);
      accepts.push(`${d}:${p}`);
    } else otherTargets.push(target ?? '');
  }
  if (table !== 1) throw new Error('iptables: expected one *filter table');
  const n = appended.length;
  const endsWithDefaultReject = n >= 2 && / -p tcp -j REJECT --reject-with tcp-reset$/.test(appended[n - 2]!) && /^-A \S+ -j REJECT --reject-with icmp6?-port-unreachable$/.test(appended[n - 1]!);
  return { chains, accepts, otherTargets, endsWithDefaultReject };
}

export function readNftRules(content: string): { accepts: string[]; skuidGuard: string | undefined; endsWithDefaultReject: boolean } {
  const accepts: string[] = [];
  let skuidGuard: string | undefined;
  const rules: string[] = [];
  let chain: string | undefined;
  let depth = 0;
  for (const raw of content.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (depth === 0 && (/^table inet agentbox_[a-z0-9_]+$/.test(line) || /^delete table inet agentbox_[a-z0-9_]+$/.test(line))) continue;
    if (depth === 0 && /^table inet agentbox_[a-z0-9_]+ \{$/.test(line)) {
      depth = 1;
      continue;
    }
    const c = /^chain (agent|output) \{$/.exec(line);
    if (depth === 1 && c) {
      chain = c[1];
      depth = 2;
      continue;
    }
    if (line === '}') {
      depth--;
      chain = depth === 2 ? chain : undefined;
      continue;
    }
    if (depth !== 2) throw new Error(`nft: rule outside a chain: ${line}`);
    if (chain === 'output') {
      const guard = /^meta skuid ([0-9]+) jump agent$/.exec(line);
      if (guard) skuidGuard = guard[1];
      else if (line !== 'type filter hook output priority filter; policy accept;') throw new Error(`nft: unexpected rule in output: ${line}`);
      continue;
    }
    rules.push(line);
    const acc = /^(?:oifname "lo" )?ip6? daddr ([0-9a-f:.]+) tcp dport ([0-9]+) accept comment "[A-Za-z0-9 .[\]_-]+"$/.exec(line);
    if (acc) {
      accepts.push(`${acc[1]}:${acc[2]}`);
      continue;
    }
    if (/^ip6? daddr [0-9a-f:.]+( tcp dport [0-9]+)? reject comment "[A-Za-z0-9 .[\]_-]+"$/.test(line)) continue;
    if (line === 'meta l4proto tcp reject with tcp reset' || line === 'reject') continue;
    throw new Error(`nft: not a rule agentbox writes: ${line}`);
  }
  if (depth !== 0) throw new Error('nft: unbalanced braces');
  const n = rules.length;
  return { accepts, skuidGuard, endsWithDefaultReject: n >= 2 && rules[n - 2] === 'meta l4proto tcp reject with tcp reset' && rules[n - 1] === 'reject' };
}
