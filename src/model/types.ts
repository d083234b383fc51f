/**
 * The validated capability model: what a manifest means once presets, denies and
 * path normalisation have been applied. Pure data; every decision agentbox makes
 * (explain, generate, launch) reads this and nothing else.
 *
 * Semantics of empty values, stated once:
 * - `grants.fs` empty: the agent sees no user files at all (system dirs stay read-only).
 * - `grants.net` empty: no network at all (not even the egress proxy).
 * - `grants.exec` empty: only `agent.command[0]` may be executed.
 * - `denies.*` empty: nothing beyond the default-deny of everything not granted.
 * - `ttlSeconds` undefined: the session lasts until the agent exits.
 * - `limits.*` undefined: no limit of that kind is requested.
 */

import type { FsAccess, HostKind } from './grammar.js';

/** The built-in DLP detectors (egress.dlp.detectors): the catalogue is model/dlp.ts. */
export type { DlpDetectorName } from './dlp.js';
import type { DlpDetectorName } from './dlp.js';

/** Where a rule came from, so every decision can name it. */
export interface RuleSource {
  /** `manifest` for the manifest's own entries, `preset` for a role preset's defaults. */
  origin: 'manifest' | 'preset';
  /** File the rule was written in. */
  file: string;
  /** Location inside that file, such as `capabilities[2]` or `deny[0]`. */
  pointer: string;
  /** The entry as written. */
  text: string;
  /** The preset's name when origin is `preset`. */
  preset?: string;
}

export interface FsGrant {
  /** Absolute, normalised, symlink-resolved path. */
  path: string;
  /** `write` implies read. */
  access: FsAccess;
  source: RuleSource;
}

export interface FsDeny {
  /** Absolute, normalised path; both the written and the resolved path are kept as separate entries. */
  path: string;
  /** `all` hides the path entirely; `write` keeps it read-only. */
  access: 'all' | 'write';
  source: RuleSource;
}

export interface NetGrant {
  host: string;
  hostKind: HostKind;
  port: number;
  source: RuleSource;
}

export interface NetDeny {
  host: string;
  hostKind: HostKind;
  /** `any` denies every port of the host. */
  port: number | 'any';
  source: RuleSource;
}

export interface ExecGrant {
  /** A program, or a directory whose programs may all be run. */
  path: string;
  source: RuleSource;
  /** Set on the grants the agent program implies: its package folder, its `#!` interpreter, and the `env` that finds it. */
  implied?: 'package' | 'interpreter' | 'via';
}

export interface ExecDeny {
  path: string;
  source: RuleSource;
}

export type RuntimeKind = 'process' | 'container' | 'microvm';

/** A host for which a person is asked before the agent may connect (`egress.consent`). */
export interface ConsentHost {
  /** `*` for any host not granted. */
  host: string;
  hostKind: HostKind | 'any';
  /** `any` with host `*`. */
  port: number | 'any';
  source: RuleSource;
}

export interface ConsentRules {
  hosts: ConsentHost[];
  /** How long a request waits for an answer before it is denied. */
  timeoutSeconds: number;
  /** Most questions one session asks; beyond it, requests outside the grants are denied unasked. */
  maxQuestions: number;
}

export interface DlpCustomDetector {
  name: string;
  /** An RE2 regular expression (linear time: no lookaround or backreferences), or... */
  regex?: string;
  /** ...a literal marker such as CONFIDENTIAL. */
  marker?: string;
  ignoreCase: boolean;
}

export interface EgressRulesModel {
  proxyPort: number;
  /** undefined: nothing outside the grants is ever asked about. */
  consent: ConsentRules | undefined;
  /** undefined: no content scanning. `detectors` is expanded from groups; `written` is as the manifest (or preset) names them. */
  dlp: { detectors: DlpDetectorName[]; written: string[]; custom: DlpCustomDetector[]; from: string } | undefined;
  /** undefined: no upload threshold. */
  maxUploadBytes: number | undefined;
  /** Across every destination, per window (defaults to 4 × maxUploadBytes; undefined without it). */
  maxSessionUploadBytes: number | undefined;
  uploadWindowSeconds: number;
  onViolation: 'block' | 'quarantine';
  /** Per-host HTTP settings (`egress.http`): method/path rules and whether HTTPS to it is decrypted. */
  http: HttpHostRules[];
  /** Credentials the proxy injects (`egress.credentials`); the box holds only placeholders. */
  credentials: CredentialSpec[];
  /** Extra CA files the proxy trusts for upstream certificates (`egress.trust`), besides the host's system store. */
  trust: string[];
  /** `agentbox learn` only (never a manifest): any host may be reached through the proxy, each connection recorded. */
  learnAnyHost?: boolean;
}

/** One method/path rule as written: `GET /repos/**`. */
export interface HttpRule {
  /** Upper-case method, or `*`. */
  method: string;
  /** Path glob segments: a literal segment, `*` (one segment) or `**` (any number). */
  segments: string[];
  text: string;
  source: RuleSource;
}

export interface HttpHostRules {
  host: string;
  hostKind: HostKind;
  /** undefined: decided by the rest of the manifest (rules, credentials, DLP). */
  inspect: boolean | undefined;
  /** undefined: every request not denied is allowed. */
  allow: HttpRule[] | undefined;
  deny: HttpRule[];
  source: RuleSource;
}

/** Where the launcher reads a brokered secret; the value never enters the model. */
export type SecretSource = { kind: 'file'; path: string } | { kind: 'helper'; argv: string[] } | { kind: 'env'; name: string };

export interface CredentialSpec {
  /** Names the credential in the audit log and in its placeholder. */
  name: string;
  /** The one host (a name, no wildcard) the secret is sent to. */
  host: string;
  /** How it is sent. */
  inject: { kind: 'header'; name: string } | { kind: 'query'; name: string } | { kind: 'bearer' };
  /** Variable that holds the placeholder in the box. */
  env: string | undefined;
  secret: SecretSource;
  source: RuleSource;
}

/**
 * A behaviour rule (`monitor:`): more than `files` distinct files or `bytes` read under
 * the paths it names within `withinSeconds`; with `thenUpload`, only when an outbound
 * connection or request follows within its window. `onTrip` then acts.
 */
export interface MonitorRule {
  name: string;
  description: string;
  /** Absolute folders (symlinks as written: the box shows grants at their own paths). */
  under: string[];
  /** Folder names anywhere. */
  named: string[];
  /** Organisation labels (labels.yaml). */
  labels: string[];
  files: number | undefined;
  bytes: number | undefined;
  withinSeconds: number;
  thenUploadSeconds: number | undefined;
  onTrip: 'block' | 'quarantine';
  source: RuleSource;
}

export interface Preset {
  name: string;
  description: string;
  /** Plain-language statement of what the preset may and may not do. */
  summary: string;
  ceiling: { fs: 'none' | 'read' | 'write'; net: boolean; exec: boolean };
  file: string;
  /** The DLP an agent extending this preset gets unless its manifest sets egress.dlp. */
  dlp?: NonNullable<EgressRulesModel['dlp']>;
  /** The behaviour rules an agent extending this preset gets unless its manifest sets monitor. */
  monitor?: MonitorRule[];
}

/**
 * How the agent program was found at load time. `command[0]` is always `path`.
 * An npm CLI is a symlink into its package (`/usr/local/bin/claude ->
 * ../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe`); the package folder
 * and a `#!` interpreter become implicit grants (source pointer `agent.command[0]`).
 */
export interface AgentProgram {
  /** `agent.command[0]` as written (`claude`, `/usr/local/bin/claude`). */
  asWritten: string;
  /** The real file, every symlink resolved. */
  path: string;
  /** The path the lookup found before links were resolved, when it differs from `path`. */
  link: string | undefined;
  /** True when a bare name was looked up on PATH. */
  viaPath: boolean;
  /** The outermost `node_modules/[@scope/]name` folder holding `path`, when there is one. */
  packageDir: string | undefined;
  /** The real interpreter of a `#!` program (`#!/usr/bin/env node` → /usr/bin/node). */
  interpreter: string | undefined;
  /** The program the `#!` line names, when it is not the interpreter itself (`/usr/bin/env`). */
  shebangVia: string | undefined;
}

export interface Model {
  name: string;
  description: string;
  /** `metadata.classification`; undefined is unclassified. */
  classification: 'low' | 'moderate' | 'high' | undefined;
  /** Presets in the order they were merged. */
  extends: Preset[];
  agent: {
    /** Program (absolute path, symlinks resolved) and arguments. */
    command: string[];
    /** How `command[0]` was found: see AgentProgram. Undefined when no command is given (presets). */
    program: AgentProgram | undefined;
    image: string | undefined;
    /** Unprivileged account for system installs (default `agentbox`). */
    user: string;
    /** Its numeric id, used by firewall owner rules (default 64000). */
    uid: number;
    /** The whole agent environment (nothing is inherited). */
    env: Record<string, string>;
    macos: { bundleId: string | undefined };
    windows: { program: string | undefined };
  };
  grants: { fs: FsGrant[]; net: NetGrant[]; exec: ExecGrant[] };
  denies: { fs: FsDeny[]; net: NetDeny[]; exec: ExecDeny[] };
  ttlSeconds: number | undefined;
  runtime: { kind: RuntimeKind; snapshot: 'revert' | 'persist'; isolation: 'runc' | 'gvisor' | undefined };
  /** `diskBytes` undefined: the session runtimes' default (4 GiB, or half the free space). */
  limits: { memoryBytes: number | undefined; diskBytes: number | undefined; pids: number | undefined; cpus: number | undefined };
  egress: EgressRulesModel;
  /** Behaviour rules over the kernel's view of the session. */
  monitor: MonitorRule[];
  /**
   * Set only by `agentbox learn` (model/learn.ts), never by a manifest: the observation
   * box's program folders, watched for executions.
   */
  learn?: { programDirs: string[] };
  /** The home directory `~` was expanded against. */
  home: string;
  /** Where the manifest came from and the sha256 of its bytes (stamped into artifact headers). */
  origin: { file: string; sha256: string };
}

export const DEFAULT_USER = 'agentbox';
export const DEFAULT_UID = 64000;
export const DEFAULT_PROXY_PORT = 3128;
export const DEFAULT_CONSENT_TIMEOUT_SECONDS = 60;
export const DEFAULT_UPLOAD_WINDOW_SECONDS = 60;
export const DEFAULT_CONSENT_MAX_QUESTIONS = 20;

