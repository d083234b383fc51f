/**
 * Every environment variable agentbox reads, in one place, so the names and their
 * defaults cannot drift.
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
  /** Prints stack traces on internal errors, like --debug; keeps a micro-VM's console. */
  debug: 'AGENTBOX_DEBUG',
  /** Where images are built and cached (container rootfs, micro-VM kernel and initramfs). */
  imageCache: 'AGENTBOX_IMAGE_CACHE',
  /** Forces the micro-VM accelerator (kvm or tcg) instead of the boot probe's answer. */
  microvmAccel: 'AGENTBOX_MICROVM_ACCEL',
  /** The Debian mirror `image build` uses. */
  debianMirror: 'AGENTBOX_DEBIAN_MIRROR',
  /** Where a bare agent.command[0] (and a `--` command) is looked up, then the box's own PATH. */
  path: 'PATH',
  /** The CA bundle the egress proxy verifies upstream certificates against (default: the system bundle). */
  systemCa: 'AGENTBOX_SYSTEM_CA',
  xdgStateHome: 'XDG_STATE_HOME',
  home: 'HOME',
} as const;

export const DEFAULT_IMAGE_CACHE = '/var/cache/agentbox';
export const DEFAULT_DEBIAN_MIRROR = 'http://deb.debian.org/debian';

/** The image cache directory. */
export const imageCache = (env: NodeJS.ProcessEnv = process.env) => env[EnvVar.imageCache] || DEFAULT_IMAGE_CACHE;
/** The Debian mirror for image builds. */
export const debianMirror = (env: NodeJS.ProcessEnv = process.env) => env[EnvVar.debianMirror] || DEFAULT_DEBIAN_MIRROR;
/** True when stack traces (and kept consoles) are asked for. */
export const debugEnabled = (env: NodeJS.ProcessEnv = process.env) => Boolean(env[EnvVar.debug]);
/** The organisation policy directory launch checks against when --policy is not given. */
export const policyDir = (env: NodeJS.ProcessEnv = process.env) => env[EnvVar.policyDir] || undefined;
/** A forced micro-VM accelerator, when one is set. */
export const microvmAccel = (env: NodeJS.ProcessEnv = process.env): string | undefined => env[EnvVar.microvmAccel] || undefined;
/** The launcher's PATH as absolute directories, in order and without repeats. */
export const lookupPath = (boxPath: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] =>
  [...new Set([...(env[EnvVar.path] ?? '').split(':').filter((d) => d.startsWith('/')), ...boxPath])];

export const DEFAULT_SYSTEM_CA = '/etc/ssl/certs/ca-certificates.crt';
/** The host's system trust store (a PEM bundle). */
export const systemCaBundle = (env: NodeJS.ProcessEnv = process.env) => env[EnvVar.systemCa] || DEFAULT_SYSTEM_CA;
