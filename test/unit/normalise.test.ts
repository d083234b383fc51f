import { describe, expect, it } from 'vitest';
import { identityResolver, isWithin, normalisePath } from '../../src/model/paths.js';
import { linkResolver } from '../helpers/load.js';

const HOME = '/home/user';

describe('path normalisation', () => {
  it('expands ~ and cleans . and //', () => {
    expect(normalisePath('~/Documents/./Receipts//', HOME, identityResolver)).toEqual({ ok: true, literal: '/home/user/Documents/Receipts', real: '/home/user/Documents/Receipts' });
    expect(normalisePath('~', HOME, identityResolver)).toMatchObject({ ok: true, real: '/home/user' });
  });
  it('refuses .. anywhere, relative paths and ~user', () => {
    expect(normalisePath('~/Documents/../.ssh', HOME, identityResolver)).toMatchObject({ ok: false, message: expect.stringMatching(/climbs out of itself/) });
    expect(normalisePath('/srv/data/..', HOME, identityResolver)).toMatchObject({ ok: false });
    expect(normalisePath('Documents', HOME, identityResolver)).toMatchObject({ ok: false, message: expect.stringMatching(/relative/) });
    expect(normalisePath('~root/.ssh', HOME, identityResolver)).toMatchObject({ ok: false, message: expect.stringMatching(/~user is not supported/) });
  });
  it('resolves symlinks that stay inside their directory', () => {
    const r = linkResolver({ '/home/user/Docs': 'Documents', '/bin': 'usr/bin' });
    expect(normalisePath('~/Docs/x', HOME, r)).toMatchObject({ ok: true, literal: '/home/user/Docs/x', real: '/home/user/Documents/x' });
    expect(normalisePath('/bin/bash', HOME, r)).toMatchObject({ ok: true, real: '/usr/bin/bash' });
  });
  it('refuses a symlink that escapes the directory containing it', () => {
    const r = linkResolver({ '/home/user/Documents/Receipts': '/etc' });
    const n = normalisePath('~/Documents/Receipts', HOME, r);
    expect(n).toMatchObject({ ok: false, message: expect.stringMatching(/symlink \/home\/user\/Documents\/Receipts -> \/etc.*outside \/home\/user\/Documents/) });
    const up = linkResolver({ '/home/user/Documents/up': '../.ssh' });
    expect(normalisePath('~/Documents/up/id_rsa', HOME, up)).toMatchObject({ ok: false });
  });
  it('refuses link loops', () => {
    const r = linkResolver({ '/a/x': 'y', '/a/y': 'x' });
    expect(normalisePath('/a/x', HOME, r).ok).toBe(false);
  });
  it('isWithin is by path segment, not by prefix', () => {
    expect(isWithin('/home/user/Documents2', '/home/user/Documents')).toBe(false);
    expect(isWithin('/home/user/Documents/a', '/home/user/Documents')).toBe(true);
    expect(isWithin('/home/user/Documents', '/home/user/Documents')).toBe(true);
  });
});
