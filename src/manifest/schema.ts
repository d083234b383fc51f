/**
 * The agentbox/v1 manifest schema: the one definition, published as
 * profiles/agentbox.schema.json for editors (a test keeps the two identical).
 *
 * The schema checks shape; the scope grammar and path rules that need more than a
 * regular expression live in model/grammar.ts and load.ts and report through the same
 * located-error channel.
 */

import { DETECTOR_CHOICES, DETECTOR_DESCRIPTIONS, DETECTOR_GROUPS } from '../model/dlp.js';

/** Names of agents and presets: they become systemd unit names, AppArmor profile names,
 * firewall chain names and file names, so they are kept to a safe alphabet. */
export const NAME_PATTERN = '^[a-z][a-z0-9-]{0,47}$';
/** `30s`, `10m`, `1h`, or combinations such as `1h30m`. */
export const TTL_PATTERN = '^(?=.)([0-9]+h)?([0-9]+m)?([0-9]+s)?$';
/** `512MiB`, `2GiB`, `1G`, or a number of bytes. */
export const MEMORY_PATTERN = '^[0-9]+(\\.[0-9]+)?(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?$';
/** A POSIX account name as useradd accepts it by default. */
export const USER_PATTERN = '^[a-z_][a-z0-9_-]{0,30}$';
/** Environment variable names handed to the agent. */
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,127}$';
/** macOS bundle identifiers (reverse DNS). */
export const BUNDLE_ID_PATTERN = '^[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$';

const scopeList = (description: string) => ({
  type: 'array',
  description,
  items: { type: 'string', minLength: 1, maxLength: 4096 },
  maxItems: 1024,
});

export const manifestSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://agentbox.dev/schema/agentbox-v1.json',
  title: 'agentbox manifest (agentbox/v1)',
  description:
    'What an autonomous agent may do. Everything not granted is denied; deny entries win over any grant.',
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata'],
  properties: {
    apiVersion: { const: 'agentbox/v1', description: 'Always agentbox/v1.' },
    kind: {
      enum: ['Agent', 'Preset'],
      description: 'Agent: a manifest for one agent. Preset: a role preset in profiles/presets (a default and a ceiling).',
    },
    metadata: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: NAME_PATTERN, description: 'lowercase letters, digits and dashes, starting with a letter, at most 48 characters' },
        description: { type: 'string', maxLength: 500 },
        classification: {
          enum: ['low', 'moderate', 'high'],
          description: 'Data classification of what the agent handles; organisation policies read it (e.g. full-disk access only when low). Unset means unclassified.',
        },
      },
    },
    summary: {
      type: 'string',
      maxLength: 4000,
      description: 'Plain-language text shown to reviewers and users: what this may and may not do.',
    },
    extends: {
      type: 'array',
      items: { type: 'string', pattern: NAME_PATTERN },
      maxItems: 16,
      description: 'Role presets from profiles/presets, merged in order. Each brings its default denies and bounds what may be granted.',
    },
    ceiling: {
      type: 'object',
      additionalProperties: false,
      description: 'Presets only: the most a manifest extending this preset may grant.',
      required: ['fs', 'net', 'exec'],
      properties: {
        fs: { enum: ['none', 'read', 'write'] },
        net: { type: 'boolean' },
        exec: { type: 'boolean' },
      },
    },
    agent: {
      type: 'object',
      additionalProperties: false,
      properties: {
        command: {
          type: 'array',
          minItems: 1,
          maxItems: 256,
          items: { type: 'string', maxLength: 4096 },
          description: 'The agent program and its arguments; the program must be an absolute path. Arguments may be empty strings.',
        },
        image: { type: 'string', minLength: 1, maxLength: 255, description: 'Container image for runtime.kind=container.' },
        user: { type: 'string', pattern: USER_PATTERN, description: 'Unprivileged account the agent runs as when agentbox runs as root (default agentbox).' },
        uid: { type: 'integer', minimum: 1000, maximum: 2147483646, description: 'Numeric id of that account, used by firewall owner rules (default 64000).' },
        env: {
          type: 'object',
          description: 'The agent environment, built from this map only (nothing is inherited).',
          propertyNames: { pattern: ENV_NAME_PATTERN },
          additionalProperties: { type: 'string', maxLength: 8192 },
          maxProperties: 256,
        },
        macos: {
          type: 'object',
          additionalProperties: false,
          properties: { bundleId: { type: 'string', pattern: BUNDLE_ID_PATTERN, maxLength: 255 } },
        },
        windows: {
          type: 'object',
          additionalProperties: false,
          properties: { program: { type: 'string', minLength: 3, maxLength: 260 } },
        },
      },
    },
    capabilities: scopeList(
      'Grants: fs:read:PATH, fs:write:PATH, net:connect:HOST:PORT, exec:PATH. PATH is absolute or starts with ~/.',
    ),
    deny: scopeList('Always wins over any grant: fs:PATH, fs:write:PATH, net:HOST, net:connect:HOST:PORT, exec:PATH.'),
    ttl: { type: 'string', pattern: TTL_PATTERN, maxLength: 20, description: 'Session lifetime, e.g. 30s, 10m, 1h (at most 24h).' },
    monitor: {
      description: 'Behaviour rules over what the kernel sees the agent do (file reads under labelled paths, then uploads); false turns a preset\'s default off. docs/visibility.md.',
      oneOf: [
        { const: false },
        {
          type: 'array',
          maxItems: 32,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'reads', 'onTrip'],
            properties: {
              name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'Named in the audit entry when the rule trips.' },
              description: { type: 'string', maxLength: 300 },
              reads: {
                type: 'object',
                additionalProperties: false,
                required: ['withinSeconds'],
                properties: {
                  under: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 4096 }, description: 'Folders (absolute or ~/) whose reads count.' },
                  named: { type: 'array', maxItems: 64, items: { type: 'string', pattern: '^[^/\\u0000-\\u001f]{1,255}$' }, description: 'Folder names anywhere (HR, Payroll) whose reads count.' },
                  labels: { type: 'array', maxItems: 64, items: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' }, description: 'Labels of the organisation policy (labels.yaml) whose paths count.' },
                  files: { type: 'integer', minimum: 1, maximum: 10000000, description: 'Trips when more than this many distinct files are read within the window.' },
                  bytes: { oneOf: [{ type: 'integer', minimum: 1 }, { type: 'string', maxLength: 20 }], description: 'Trips when more than this many bytes (the files\' sizes) are read within the window: a number, or 20MiB.' },
                  withinSeconds: { type: 'integer', minimum: 1, maximum: 86400 },
                },
              },
              thenUpload: {
                type: 'object',
                additionalProperties: false,
                required: ['withinSeconds'],
                properties: { withinSeconds: { type: 'integer', minimum: 1, maximum: 86400, description: 'The rule trips at the first outbound connection or request this soon after the bulk read.' } },
              },
              onTrip: { enum: ['block', 'quarantine'], description: 'block: egress is cut for the rest of the session; quarantine: cut and frozen.' },
            },
          },
        },
      ],
    },
    runtime: {
      type: 'object',
      additionalProperties: false,
      properties: {
        kind: { enum: ['process', 'container', 'microvm'] },
        snapshot: { enum: ['revert', 'persist'] },
        isolation: { enum: ['runc', 'gvisor'] },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memory: { type: 'string', pattern: MEMORY_PATTERN, maxLength: 32 },
        disk: { type: 'string', pattern: MEMORY_PATTERN, maxLength: 32, description: 'Most the agent may write in all (its writable grants\' layers), such as 2GiB. Default: 4GiB, or half the free space of the state directory if less.' },
        pids: { type: 'integer', minimum: 1, maximum: 1048576 },
        cpus: { type: 'number', exclusiveMinimum: 0, maximum: 1024 },
      },
    },
    egress: {
      type: 'object',
      additionalProperties: false,
      properties: {
        proxyPort: { type: 'integer', minimum: 1, maximum: 65535, description: 'Loopback port of the egress proxy a system service uses (default 3128).' },
        consent: {
          description:
            'Just-in-time consent: hosts outside the grants for which a person is asked at the moment the agent reaches them. `ask` asks for every host not granted; or list HOST:PORT entries (wildcards as in grants, `*` for any host). Explicit denies are never asked.',
          oneOf: [
            { const: 'ask' },
            {
              type: 'object',
              additionalProperties: false,
              properties: {
                ask: { type: 'array', minItems: 1, maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 300 } },
                timeout: { type: 'string', pattern: TTL_PATTERN, maxLength: 20, description: 'How long a request waits for an answer before it is denied (default 60s, at most 1h).' },
                maxQuestions: { type: 'integer', minimum: 1, maximum: 1000, description: 'Most questions one session may ask; beyond it, requests outside the grants are denied without asking (against consent fatigue; default 20).' },
              },
              required: ['ask'],
            },
          ],
        },
        dlp: {
          description: 'Data-loss prevention at the egress proxy: host names, URLs, headers, bodies and WebSocket frames of plain HTTP and of decrypted HTTPS are decoded and scanned, and a match is blocked. With DLP every HTTPS host is decrypted except those marked inspect: false. false turns off the DLP a preset brings.',
          // An object, or false; true is refused by the loader (egress-rules.ts) with its own message.
          type: ['object', 'boolean'],
          additionalProperties: false,
          properties: {
            detectors: {
              type: 'array',
              maxItems: 64,
              uniqueItems: true,
              items: { enum: DETECTOR_CHOICES },
              description: `Built-in detectors, or groups of them: ${Object.entries(DETECTOR_GROUPS).map(([g, d]) => `${g} (${g === 'all' ? 'every detector' : d.join(', ')})`).join('; ')}. Detectors: ${Object.entries(DETECTOR_DESCRIPTIONS).map(([n, d]) => `${n} (${d})`).join(', ')}.`,
            },
            custom: {
              type: 'array',
              maxItems: 64,
              description: 'Organisation detectors: each has a name and either a regex (RE2 syntax: linear time, so no lookaround or backreferences) or a literal marker such as CONFIDENTIAL.',
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['name'],
                properties: {
                  name: { type: 'string', pattern: NAME_PATTERN },
                  regex: { type: 'string', minLength: 1, maxLength: 512 },
                  marker: { type: 'string', minLength: 1, maxLength: 256 },
                  ignoreCase: { type: 'boolean' },
                },
              },
            },
          },
        },
        maxUploadBytes: {
          description: 'Most bytes the agent may send to one destination per uploadWindow (CONNECT tunnels and plain HTTP alike), e.g. 10MiB.',
          anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string', pattern: MEMORY_PATTERN, maxLength: 32 }],
        },
        maxSessionUploadBytes: {
          description: 'Most bytes the whole session may send per uploadWindow, over every destination (default: 4 × maxUploadBytes).',
          anyOf: [{ type: 'integer', minimum: 1 }, { type: 'string', pattern: MEMORY_PATTERN, maxLength: 32 }],
        },
        uploadWindow: { type: 'string', pattern: TTL_PATTERN, maxLength: 20, description: 'The window maxUploadBytes counts over (default 60s).' },
        onViolation: { enum: ['block', 'quarantine'], description: 'What a DLP match or an upload over maxUploadBytes does beyond blocking it: block (default) or quarantine the session.' },
        http: {
          type: 'array',
          maxItems: 256,
          description:
            'Per-host HTTP settings for HTTPS the proxy decrypts: `allow`/`deny` rules of the form "METHOD /path/glob" (`*` one path segment, `**` any number, method `*` any), and `inspect: false` to keep a host an opaque tunnel (certificate pinning). A host with rules is inspected.',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['host'],
            properties: {
              host: { type: 'string', minLength: 1, maxLength: 253, description: 'A host name as in grants: api.github.com or *.github.com.' },
              inspect: { type: 'boolean', description: 'true: decrypt and inspect this host even without rules; false: never decrypt it (an opaque tunnel).' },
              allow: { type: 'array', maxItems: 256, items: { type: 'string', minLength: 3, maxLength: 512 }, description: 'Requests allowed, e.g. "GET /repos/**"; with a list, any other request is refused.' },
              deny: { type: 'array', maxItems: 256, items: { type: 'string', minLength: 3, maxLength: 512 }, description: 'Requests refused even when an allow rule matches, e.g. "DELETE /**".' },
            },
          },
        },
        credentials: {
          type: 'array',
          maxItems: 64,
          description:
            'Credentials agentbox injects into requests to one host, so the agent never holds them: the box gets a placeholder (in `env`), and the proxy puts the real secret in the named header, query parameter or Authorization: Bearer of requests to that host only.',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['host', 'secret'],
            properties: {
              host: { type: 'string', minLength: 1, maxLength: 253, description: 'The one host (no wildcard) the secret is sent to.' },
              name: { type: 'string', pattern: NAME_PATTERN, description: 'The credential\'s name in the audit log and the placeholder (default: the secret\'s name).' },
              header: { type: 'string', pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]{1,64}$', description: 'Header the secret is sent in, e.g. x-api-key.' },
              query: { type: 'string', pattern: '^[A-Za-z0-9._~-]{1,64}$', description: 'Query parameter the secret is sent in, e.g. key.' },
              bearer: { const: true, description: 'Send the secret as Authorization: Bearer SECRET.' },
              env: { type: 'string', pattern: ENV_NAME_PATTERN, description: 'Variable the box gets the placeholder in, e.g. ANTHROPIC_API_KEY.' },
              secret: {
                description: 'Where the launcher reads the secret: NAME (the root-only file /etc/agentbox/secrets/NAME), { file: PATH } (root-only, 0600), { helper: [COMMAND, ARG...] } (first line of its output; run by the launcher, never in the box), or { env: VAR } (the launching shell\'s environment).',
                oneOf: [
                  { type: 'string', pattern: NAME_PATTERN },
                  { type: 'object', additionalProperties: false, required: ['file'], properties: { file: { type: 'string', pattern: '^/', maxLength: 4096 } } },
                  { type: 'object', additionalProperties: false, required: ['helper'], properties: { helper: { type: 'array', minItems: 1, maxItems: 32, items: { type: 'string', minLength: 1, maxLength: 4096 } } } },
                  { type: 'object', additionalProperties: false, required: ['env'], properties: { env: { type: 'string', pattern: ENV_NAME_PATTERN } } },
                ],
              },
            },
          },
        },
        trust: {
          type: 'array',
          maxItems: 16,
          items: { type: 'string', pattern: '^/', maxLength: 4096 },
          description: 'PEM files of CAs the proxy trusts for upstream certificates besides the host\'s system store (an enterprise CA).',
        },
      },
    },
  },
} as const;

/** A manifest as the schema admits it (before the scope grammar and path rules). */
export interface RawManifest {
  apiVersion: 'agentbox/v1';
  kind: 'Agent' | 'Preset';
  metadata: { name: string; description?: string; classification?: 'low' | 'moderate' | 'high' };
  summary?: string;
  extends?: string[];
  ceiling?: { fs: 'none' | 'read' | 'write'; net: boolean; exec: boolean };
  agent?: {
    command?: string[];
    image?: string;
    user?: string;
    uid?: number;
    env?: Record<string, string>;
    macos?: { bundleId?: string };
    windows?: { program?: string };
  };
  capabilities?: string[];
  deny?: string[];
  ttl?: string;
  monitor?: false | RawMonitorRule[];
  runtime?: { kind?: 'process' | 'container' | 'microvm'; snapshot?: 'revert' | 'persist'; isolation?: 'runc' | 'gvisor' };
  limits?: { memory?: string; disk?: string; pids?: number; cpus?: number };
  egress?: {
    proxyPort?: number;
    consent?: 'ask' | { ask: string[]; timeout?: string; maxQuestions?: number };
    dlp?: boolean | RawDlp;
    maxUploadBytes?: number | string;
    maxSessionUploadBytes?: number | string;
    uploadWindow?: string;
    onViolation?: 'block' | 'quarantine';
    http?: { host: string; inspect?: boolean; allow?: string[]; deny?: string[] }[];
    credentials?: { host: string; name?: string; header?: string; query?: string; bearer?: true; env?: string; secret: string | { file: string } | { helper: string[] } | { env: string } }[];
    trust?: string[];
  };
}

export interface RawMonitorRule {
  name: string;
  description?: string;
  reads: { under?: string[]; named?: string[]; labels?: string[]; files?: number; bytes?: number | string; withinSeconds: number };
  thenUpload?: { withinSeconds: number };
  onTrip: 'block' | 'quarantine';
}

export interface RawDlp {
  detectors?: string[];
  custom?: { name: string; regex?: string; marker?: string; ignoreCase?: boolean }[];
}
