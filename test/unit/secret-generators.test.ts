/** The secret generators: each yields values its own detector catches, and every detector has one. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DETECTOR_NAMES } from '../../src/model/dlp.js';
import { BUILTIN } from '../../src/policy/detectors.js';
import { SECRETS } from '../helpers/secrets.js';

describe('secret generators', () => {
  it('cover every detector', () => {
    expect(Object.keys(SECRETS).sort()).toEqual([...DETECTOR_NAMES].sort());
  });

  for (const name of DETECTOR_NAMES) {
    it(`${name}: its detector catches every generated secret`, () => {
      fc.assert(
        fc.property(SECRETS[name], (s) => BUILTIN[name].find(s) !== undefined),
        { numRuns: 200 },
      );
    });
  }
});
