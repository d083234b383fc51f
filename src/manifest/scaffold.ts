/**
 * `agentbox init`: a commented manifest for a CLI as installed (pure: the resolved
 * program and what exists in the home arrive from the caller). Every value is written as
 * a JSON string, which YAML reads as a double-quoted scalar, so a path cannot add keys.
 */
import type { AgentProgram } from '../model/types.js';

/** Where the well-known agent CLIs keep their configuration, and what they contact. */
const KNOWN: Record<string, { config: string[]; hosts: string[]; profile: string; args?: string[]; note?: string }> = {
  claude: { config: ['~/.claude', '~/.claude.json'], hosts: ['api.anthropic.com:443'], profile: 'claude-code' },
  codex: { config: ['~/.codex'], hosts: ['api.openai.com:443'], profile: 'codex', args: ['--sandbox', 'danger-full-access'], note: "Codex's own sandbox cannot start inside the box (no nested namespaces): agentbox is the sandbox." },
  gemini: { config: ['~/.gemini'], hosts: ['generativelanguage.googleapis.com:443'], profile: 'gemini-cli' },
};

export interface ScaffoldInput {
  program: AgentProgram;
  /** Home-relative config folders that exist (~/.NAME, ~/.config/NAME), in order. */
  existingConfig: string[];
  now: string;
}

/** A manifest name from a program name: lowercase letters, digits and dashes, starting with a letter. */
export function agentName(program: string): string {
  const base = program.split('/').pop()!.replace(/\.(exe|js|mjs|cjs|py|sh)$/, '');
  const n = base.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 40);
  return n || 'agent';
}

const q = (s: string) => JSON.stringify(s);

export function scaffold(i: ScaffoldInput): string {
  const p = i.program;
  const written = p.asWritten.split('/').pop()!;
  const name = agentName(p.link ?? p.asWritten);
  const known = KNOWN[agentName(written)];
  const config = known?.config ?? (i.existingConfig.length > 0 ? i.existingConfig : [`~/.config/${name}`]);
  const lines = [
    '# Editor support: agentbox schema > agentbox.schema.json, then point yaml-language-server at it.',
    `# Scaffolded by agentbox init on ${i.now.slice(0, 10)} for ${p.asWritten}.`,
    `# It resolves to ${p.path}${p.packageDir ? `, in the package ${p.packageDir}` : ''}${p.interpreter ? `, run by ${p.interpreter}` : ''}.`,
    ...(p.packageDir || p.interpreter ? ['# agentbox grants the package read and exec, and the interpreter exec, by itself.'] : []),
    ...(known ? [`# A shipped profile exists for this agent: agentbox describe ${known.profile}`] : []),
    '# Check it with: agentbox validate --host THIS_FILE; see what it allows: agentbox describe THIS_FILE',
    'apiVersion: agentbox/v1',
    'kind: Agent',
    'metadata:',
    `  name: ${q(name)}`,
    `  description: ${q(`${name} confined to ~/work`)}`,
    '# organizer: read and write only what is granted, reach only the hosts listed, through the proxy.',
    'extends: [organizer]',
    'agent:',
    ...(known?.note ? [`  # ${known.note}`] : []),
    `  command: [${[p.link ?? p.path, ...(known?.args ?? [])].map(q).join(', ')}]`,
    '  env: {}',
    'capabilities:',
    '  # The folder it works in (create it and chown it to uid 64000 first).',
    '  - "fs:write:~/work"',
    '  # Its configuration and state.',
    ...config.map((c) => `  - ${q(`fs:write:${c}`)}`),
    '  # Programs it may run (git, a shell, compilers).',
    '  - "exec:/usr/bin"',
    '  - "exec:/bin"',
    '  # The hosts it must reach: add each as net:connect:HOST:PORT.',
    ...(known ? known.hosts.map((h) => `  - ${q(`net:connect:${h}`)}`) : ['  # - "net:connect:api.example.com:443"']),
    '# How long one session may last, and what happens to its changes at the end.',
    'ttl: 2h',
    'runtime: { kind: process, snapshot: persist }',
    'limits: { memory: 4GiB, pids: 1024, cpus: 2 }',
  ];
  return lines.join('\n') + '\n';
}
