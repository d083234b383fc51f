/**
 * Every environment variable agentbox reads, in one place, so the names cannot drift.
 */
export const EnvVar = {
  /** Overrides where sessions, keys, evidence and the audit log live (SPEC §7). */
  stateDir: 'AGENTBOX_STATE_DIR',
  /** Overrides the profiles/ directory (presets and agent profiles). */
  profilesDir: 'AGENTBOX_PROFILES_DIR',
  /** The organisation policy directory `launch` checks against when --policy is not given. */
  policyDir: 'AGENTBOX_POLICY',
  /** Disables colour (https://no-color.org). */
  noColor: 'NO_COLOR',
  /** Prints stack traces on internal errors, like --debug. */
  debug: 'AGENTBOX_DEBUG',
  xdgStateHome: 'XDG_STATE_HOME',
  home: 'HOME',
} as const;
