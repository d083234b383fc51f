/** What every manifest-reading command shares: its options and their help. */
export type { ManifestOptions } from '../actions/load.js';

export const manifestOptionsHelp = {
  profile: 'role preset(s) to run under, replacing the manifest\'s extends (comma-separated); grants beyond it are dropped with a warning',
  home: 'home directory that ~ in the manifest means (default: yours)',
};
