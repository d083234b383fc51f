import { describe, expect, it } from 'vitest';
import { checkPathAlphabet, parseDeny, parseGrant, parseHost, parseMemory, parseTtl } from '../../src/model/grammar.js';

describe('scope grammar: grants', () => {
  it.each([
    ['fs:read:~/Documents', { type: 'fs', access: 'read', path: '~/Documents' }],
    ['fs:write:/srv/out/summary.csv', { type: 'fs', access: 'write', path: '/srv/out/summary.csv' }],
    ['net:connect:api.anthropic.com:443', { type: 'net', host: 'api.anthropic.com', hostKind: 'name', port: 443 }],
    ['net:connect:API.Example.COM:8443', { type: 'net', host: 'api.example.com', hostKind: 'name', port: 8443 }],
    ['net:connect:*.example.com:443', { type: 'net', host: '*.example.com', hostKind: 'wildcard', port: 443 }],
    ['net:connect:127.0.0.1:8080', { type: 'net', host: '127.0.0.1', hostKind: 'ipv4', port: 8080 }],
    ['net:connect:[::1]:8080', { type: 'net', host: '::1', hostKind: 'ipv6', port: 8080 }],
    ['net:connect:[2001:db8::5]:22', { type: 'net', host: '2001:db8::5', hostKind: 'ipv6', port: 22 }],
    ['exec:/usr/bin/python3', { type: 'exec', path: '/usr/bin/python3' }],
  ])('%s', (text, expected) => {
    expect(parseGrant(text)).toEqual({ ok: true, value: expected });
  });

  it.each([
    ['fs:delete:/tmp', /the fs action must be read or write/],
    ['fs:/tmp', /the fs action must be read or write/],
    ['net:listen:0.0.0.0:80', /the only net action is connect/],
    ['net:connect:example.com', /needs a port/],
    ['net:connect:example.com:0', /from 1 to 65535/],
    ['net:connect:example.com:65536', /from 1 to 65535/],
    ['net:connect:example.com:https', /must be a number/],
    ['net:connect:*:443', /overly broad/],
    ['net:connect:*.com:443', /whole top-level domain/],
    ['net:connect:localhost:80', /single-label name/],
    ['net:connect:exa_mple.com:80', /is not a host name/],
    ['net:connect:ex"ample.com:80', /is not a host name/],
    ['net:connect:999.1.1.1:80', /not a valid IPv4/],
    ['net:connect:[::1::2]:80', /not a valid IPv6/],
    ['net:connect:[fe80::1%eth0]:80', /not a valid IPv6/],
    ['shell:rm -rf /', /is not a grant/],
    ['fs:read:/tmp/$(id)', /contains '\$'/],
    ['fs:read:/tmp/a*b', /contains '\*'/],
    ['fs:read:/tmp/a"b', /contains '"'/],
    ['fs:read:/tmp/a\nb', /contains U\+000A/],
    ['fs:read:/tmp/a`id`', /contains '`'/],
    ['fs:read:/tmp/a}b', /contains '\}'/],
    ['fs:read:/tmp/a:b', /contains ':'/],
  ])('%j is refused', (text, message) => {
    const r = parseGrant(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(message);
  });
});

describe('scope grammar: denies', () => {
  it('fs:PATH denies all access; fs:write:PATH only writes', () => {
    expect(parseDeny('fs:~/.ssh')).toEqual({ ok: true, value: { type: 'fs', access: 'all', path: '~/.ssh' } });
    expect(parseDeny('fs:read:~/.ssh')).toEqual({ ok: true, value: { type: 'fs', access: 'all', path: '~/.ssh' } });
    expect(parseDeny('fs:write:/srv/ro')).toEqual({ ok: true, value: { type: 'fs', access: 'write', path: '/srv/ro' } });
  });
  it('net:HOST denies every port; net:connect:HOST:PORT one', () => {
    expect(parseDeny('net:evil.example.com')).toEqual({ ok: true, value: { type: 'net', host: 'evil.example.com', hostKind: 'name', port: 'any' } });
    expect(parseDeny('net:connect:10.0.0.1:22')).toEqual({ ok: true, value: { type: 'net', host: '10.0.0.1', hostKind: 'ipv4', port: 22 } });
  });
});

describe('hosts, durations, sizes', () => {
  it('wildcards need two labels under them', () => {
    expect(parseHost('*.example.com').ok).toBe(true);
    expect(parseHost('*.co').ok).toBe(false);
  });
  it('ttl', () => {
    expect(parseTtl('30s')).toEqual({ ok: true, value: 30 });
    expect(parseTtl('10m')).toEqual({ ok: true, value: 600 });
    expect(parseTtl('1h30m')).toEqual({ ok: true, value: 5400 });
    expect(parseTtl('0s').ok).toBe(false);
    expect(parseTtl('25h').ok).toBe(false);
    expect(parseTtl('10 minutes').ok).toBe(false);
  });
  it('memory', () => {
    expect(parseMemory('2GiB')).toEqual({ ok: true, value: 2 * 1024 ** 3 });
    expect(parseMemory('512MiB')).toEqual({ ok: true, value: 512 * 1024 ** 2 });
    expect(parseMemory('1MiB').ok).toBe(false);
    expect(parseMemory('2 gigs').ok).toBe(false);
  });
  it('the path alphabet admits real folder names and nothing with meaning in a target syntax', () => {
    expect(checkPathAlphabet("/home/u/Bob's Receipts (2024) #1 & co, =+@%~!")).toBeUndefined();
    expect(checkPathAlphabet('/home/u/Café/Überweisungen/日本')).toBeUndefined();
    for (const ch of ['"', '\\', '$', '`', '*', '?', '[', ']', '{', '}', '^', ':', ';', '|', '<', '>', '\n', '\t', '\u202e', '\u2028']) {
      expect(checkPathAlphabet(`/tmp/a${ch}b`), JSON.stringify(ch)).toBeDefined();
    }
  });
});
