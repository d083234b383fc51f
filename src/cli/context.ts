/** What every manifest-reading command shares: its options and their help. */
export type { ManifestOptions } from '../actions/load.js';

export const manifestOptionsHelp = {
  profile: 'role preset(s) to run under, replacing the manifest\'s extends (comma-separated); grants beyond it are dropped with a warning',
  home: 'home directory that ~ in the manifest means (default: yours)',
  forUser: "the account whose home ~ means in a system unit, read from /etc/passwd (ROOT/etc/passwd with apply --root); needed when a grant would otherwise be under your own home",
};
