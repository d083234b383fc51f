/**
 * The scope grammar IT writes (SPEC §2), parsed into data. Pure.
 *
 *   grants:  fs:read:PATH  fs:write:PATH  net:connect:HOST:PORT  exec:PATH
 *   denies:  fs:PATH (any access)  fs:read:PATH (any access)  fs:write:PATH (writes)
 *            net:HOST (any port)  net:connect:HOST:PORT  exec:PATH
 *
 * HOST is a DNS name (lowercase letters, digits, dashes; at least two labels), a
 * leftmost wildcard `*.example.com` (matches subdomains, not the apex), an IPv4
 * address, or an IPv6 address in brackets. PORT is 1-65535. Connections are TCP.
 *
 * Paths are checked for their alphabet here; ~ expansion, `..` and symlinks are
 * handled by paths.ts.
 */

import { formatIpv6, parseIpv6 } from './address.js';

export type FsAccess = 'read' | 'write';
export type HostKind = 'name' | 'wildcard' | 'ipv4' | 'ipv6';

export type ParsedGrant =
  | { type: 'fs'; access: FsAccess; path: string }
  | { type: 'net'; host: string; hostKind: HostKind; port: number }
  | { type: 'exec'; path: string };

export type ParsedDeny =
  | { type: 'fs'; access: 'all' | 'write'; path: string }
  | { type: 'net'; host: string; hostKind: HostKind; port: number | 'any' }
  | { type: 'exec'; path: string };

export type ScopeResult<T> = { ok: true; value: T } | { ok: false; message: string };

const GRANT_FORMS = 'fs:read:PATH, fs:write:PATH, net:connect:HOST:PORT or exec:PATH';
const DENY_FORMS = 'fs:PATH, fs:write:PATH, net:HOST, net:connect:HOST:PORT or exec:PATH';

/**
 * Characters a path may contain. Everything else (quotes, backslash, `$`, backticks,
 * glob characters `* ? [ ] { } ^`, `:` `;` `|` `<` `>`, control and format characters)
 * is refused, because at least one target syntax (systemd, AppArmor, iptables
 * comments, PowerShell, XML, plist, shell) would give it meaning. The allowed set is
 * proven safe for every generator by the property tests.
 */
const PATH_CHAR = /^[\p{L}\p{N} ._\-+@,=()&!#%~']$/u;
export const PATH_ALPHABET_HINT =
  "letters, digits, space and . _ - + @ , = ( ) & ! # % ~ ' (no quotes, backslash, $, backticks, glob characters * ? [ ] { } ^, : ; | < > or control characters)";

/** Returns a message naming the first character a path may not contain, or undefined. */
export function checkPathAlphabet(path: string): string | undefined {
  let index = 0;
  for (const ch of path) {
    if (ch !== '/' && !PATH_CHAR.test(ch)) {
      const shown = /[\p{Cc}\p{Cf}\p{Z}]/u.test(ch) && ch !== ' ' ? `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}` : `'${ch}'`;
      return `the path contains ${shown} at character ${index + 1}; a path may contain ${PATH_ALPHABET_HINT}`;
    }
    index += 1;
  }
  return undefined;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;
const IPV6 = /^[0-9a-f:.]{2,45}$/;

export function parseHost(raw: string): ScopeResult<{ host: string; hostKind: HostKind }> {
  const host = raw.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) {
    const inner = host.slice(1, -1);
    const bytes = IPV6.test(inner) && inner.includes(':') ? parseIpv6(inner) : undefined;
    if (!bytes) return { ok: false, message: `"${raw}" is not a valid IPv6 address; write it as [2001:db8::1]` };
    // Canonical (RFC 5952): the proxy compares addresses in this form.
    return { ok: true, value: { host: formatIpv6(bytes), hostKind: 'ipv6' } };
  }
  if (/^[0-9.]+$/.test(host)) {
    if (!IPV4.test(host)) return { ok: false, message: `"${raw}" is not a valid IPv4 address` };
    if (host === '0.0.0.0') return { ok: false, message: '0.0.0.0 is not a destination; name the host or address to reach' };
    return { ok: true, value: { host, hostKind: 'ipv4' } };
  }
  if (host === '*' || host === '*.*') {
    return { ok: false, message: `"${raw}" would allow every host; overly broad patterns are not allowed for security reasons. Name the hosts, or use a wildcard under a domain you control such as *.example.com` };
  }
  let wildcard = false;
  let name = host;
  if (name.startsWith('*.')) {
    wildcard = true;
    name = name.slice(2);
  }
  const labels = name.split('.');
  if (name.length > 253 || labels.some((l) => !LABEL.test(l))) {
    return {
      ok: false,
      message: `"${raw}" is not a host name: use lowercase letters, digits and dashes in dot-separated labels (internationalised names in their xn-- form), an IPv4 address, [IPv6], or a leftmost wildcard such as *.example.com`,
    };
  }
  if (labels.length < 2) {
    return wildcard
      ? { ok: false, message: `"${raw}" matches a whole top-level domain; overly broad patterns are not allowed for security reasons. Use *.example.com or name the hosts` }
      : { ok: false, message: `"${raw}" is a single-label name; use the fully qualified name (for example ${name}.example.com), or an IP address such as 127.0.0.1 for loopback` };
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
    return { ok: false, message: `"${raw}" looks like an IP address but is not one` };
  }
  return { ok: true, value: { host: wildcard ? `*.${name}` : name, hostKind: wildcard ? 'wildcard' : 'name' } };
}


export function parsePort(raw: string): ScopeResult<number> {
  if (!/^[0-9]{1,5}$/.test(raw)) return { ok: false, message: `port "${raw}" must be a number from 1 to 65535` };
  const port = Number(raw);
  if (port < 1 || port > 65535) return { ok: false, message: `port ${raw} must be from 1 to 65535` };
  return { ok: true, value: port };
}

/** Splits HOST:PORT where HOST may be a bracketed IPv6 address. */
function splitHostPort(rest: string): { host: string; port: string | undefined } {
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1) return { host: rest, port: undefined };
    const after = rest.slice(close + 1);
    return { host: rest.slice(0, close + 1), port: after.startsWith(':') ? after.slice(1) : after === '' ? undefined : after };
  }
  const colon = rest.lastIndexOf(':');
  if (colon === -1) return { host: rest, port: undefined };
  return { host: rest.slice(0, colon), port: rest.slice(colon + 1) };
}

function parseNet(rest: string, text: string, portRequired: boolean): ScopeResult<{ host: string; hostKind: HostKind; port: number | 'any' }> {
  const { host, port } = splitHostPort(rest);
  if (host === '') return { ok: false, message: `"${text}" names no host` };
  const h = parseHost(host);
  if (!h.ok) return h;
  if (port === undefined) {
    if (portRequired) return { ok: false, message: `"${text}" needs a port: net:connect:${host}:443` };
    return { ok: true, value: { ...h.value, port: 'any' } };
  }
  const p = parsePort(port);
  if (!p.ok) return p;
  return { ok: true, value: { ...h.value, port: p.value } };
}

function pathPart(path: string, text: string): ScopeResult<string> {
  if (path === '') return { ok: false, message: `"${text}" names no path` };
  const bad = checkPathAlphabet(path);
  if (bad) return { ok: false, message: bad };
  return { ok: true, value: path };
}

/** Parses one entry of `capabilities`. */
export function parseGrant(text: string): ScopeResult<ParsedGrant> {
  const [kind, ...restParts] = text.split(':');
  const rest = restParts.join(':');
  switch (kind) {
    case 'fs': {
      const colon = rest.indexOf(':');
      const access = colon === -1 ? rest : rest.slice(0, colon);
      if (colon === -1 || (access !== 'read' && access !== 'write')) {
        return { ok: false, message: `"${text}": the fs action must be read or write (fs:read:PATH or fs:write:PATH)` };
      }
      const p = pathPart(rest.slice(colon + 1), text);
      return p.ok ? { ok: true, value: { type: 'fs', access, path: p.value } } : p;
    }
    case 'net': {
      if (!rest.startsWith('connect:')) {
        return { ok: false, message: `"${text}": the only net action is connect (net:connect:HOST:PORT)` };
      }
      const n = parseNet(rest.slice('connect:'.length), text, true);
      if (!n.ok) return n;
      return { ok: true, value: { type: 'net', host: n.value.host, hostKind: n.value.hostKind, port: n.value.port as number } };
    }
    case 'exec': {
      const p = pathPart(rest, text);
      return p.ok ? { ok: true, value: { type: 'exec', path: p.value } } : p;
    }
    default:
      return { ok: false, message: `"${text}" is not a grant; write ${GRANT_FORMS}` };
  }
}

/** Parses one entry of `deny`. */
export function parseDeny(text: string): ScopeResult<ParsedDeny> {
  const [kind, ...restParts] = text.split(':');
  const rest = restParts.join(':');
  switch (kind) {
    case 'fs': {
      let access: 'all' | 'write' = 'all';
      let path = rest;
      if (rest.startsWith('read:')) path = rest.slice(5);
      else if (rest.startsWith('write:')) {
        access = 'write';
        path = rest.slice(6);
      }
      const p = pathPart(path, text);
      return p.ok ? { ok: true, value: { type: 'fs', access, path: p.value } } : p;
    }
    case 'net': {
      const body = rest.startsWith('connect:') ? rest.slice('connect:'.length) : rest;
      const n = parseNet(body, text, false);
      return n.ok ? { ok: true, value: { type: 'net', ...n.value } } : n;
    }
    case 'exec': {
      const p = pathPart(rest, text);
      return p.ok ? { ok: true, value: { type: 'exec', path: p.value } } : p;
    }
    default:
      return { ok: false, message: `"${text}" is not a deny entry; write ${DENY_FORMS}` };
  }
}

/** `30s`, `10m`, `1h`, `1h30m` to seconds. */
export function parseTtl(text: string): ScopeResult<number> {
  const m = /^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$/.exec(text);
  if (!m || text === '') return { ok: false, message: `"${text}" is not a duration; write 30s, 10m, 1h or 1h30m` };
  const seconds = Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
  if (seconds < 1) return { ok: false, message: 'ttl must be at least 1s' };
  if (seconds > 86400) return { ok: false, message: `ttl ${text} is over the 24h maximum; sessions are meant to be short-lived` };
  return { ok: true, value: seconds };
}

const UNITS: Record<string, number> = {
  '': 1, B: 1, K: 1024, KiB: 1024, KB: 1000, M: 1024 ** 2, MiB: 1024 ** 2, MB: 1000 ** 2,
  G: 1024 ** 3, GiB: 1024 ** 3, GB: 1000 ** 3, T: 1024 ** 4, TiB: 1024 ** 4, TB: 1000 ** 4,
};

/** `10MiB`, `1GB`, `4096` to bytes. */
export function parseSize(text: string): ScopeResult<number> {
  const m = /^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$/.exec(text);
  const unit = m ? UNITS[m[2]!] : undefined;
  if (!m || unit === undefined) return { ok: false, message: `"${text}" is not a size; write 512KiB, 10MiB or 2GiB` };
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes < 1) return { ok: false, message: `"${text}" must be at least 1 byte and at most 8 PiB` };
  return { ok: true, value: bytes };
}

/** `2GiB` to bytes (at least 16 MiB: less cannot start a runtime). */
export function parseMemory(text: string): ScopeResult<number> {
  const size = parseSize(text);
  if (!size.ok) return size;
  if (size.value < 16 * 1024 ** 2) return { ok: false, message: `memory ${text} is under the 16MiB minimum` };
  return size;
}
