/**
 * The DLP detector catalogue (pure data): every name `egress.dlp.detectors` accepts,
 * what each looks for (in the words `describe` uses), and the groups that stand for
 * several. `policy/detectors.ts` implements each name; a test holds the two together.
 */

/** Detectors whose rules come from secretlint's recommended preset (one per secretlint rule). */
export const SECRETLINT_DETECTORS = {
  'aws-secret-key': 'AWS secret access keys',
  'basic-auth': 'passwords in URLs (user:password@host)',
  'database-connection-string': 'database connection strings with passwords',
  github: 'GitHub tokens',
  gitlab: 'GitLab tokens',
  slack: 'Slack tokens and webhooks',
  npm: 'npm tokens',
  openai: 'OpenAI API keys',
  anthropic: 'Anthropic API keys',
  groq: 'Groq API keys',
  huggingface: 'Hugging Face tokens',
  linear: 'Linear API keys',
  notion: 'Notion tokens',
  sendgrid: 'SendGrid API keys',
  shopify: 'Shopify tokens',
  grafana: 'Grafana tokens',
  '1password': '1Password service tokens',
  'hashicorp-vault': 'HashiCorp Vault tokens',
  vercel: 'Vercel tokens',
  databricks: 'Databricks tokens',
  docker: 'Docker Hub tokens',
  figma: 'Figma tokens',
  gcp: 'Google Cloud service-account keys',
} as const;

/** Detectors agentbox adds to what secretlint's preset covers. */
export const OWN_DETECTORS = {
  'private-key': 'private keys (PEM, OpenSSH, PGP, PuTTY)',
  'aws-access-key': 'AWS access key ids',
  jwt: 'JSON web tokens',
  stripe: 'Stripe secret keys',
  'generic-secret': 'passwords, secrets and tokens written as assignments',
  'crypto-key': 'cryptocurrency private keys (WIF, xprv)',
  'seed-phrase': 'wallet seed phrases (BIP39)',
  'payment-card': 'payment card numbers',
  iban: 'bank account numbers (IBAN)',
  'us-ssn': 'US social security numbers',
} as const;

export type DlpDetectorName = keyof typeof SECRETLINT_DETECTORS | keyof typeof OWN_DETECTORS;

export const DETECTOR_DESCRIPTIONS: Record<DlpDetectorName, string> = { ...SECRETLINT_DETECTORS, ...OWN_DETECTORS };
export const DETECTOR_NAMES = Object.keys(DETECTOR_DESCRIPTIONS) as DlpDetectorName[];

const PII: DlpDetectorName[] = ['payment-card', 'iban', 'us-ssn'];

/**
 * Names that stand for several detectors. `recommended` is every credential and key
 * detector (what should never leave a box); `pii` is personal and financial data, a
 * classification choice each organisation makes for itself; `all` is both.
 */
export const DETECTOR_GROUPS = {
  recommended: DETECTOR_NAMES.filter((n) => !PII.includes(n)),
  pii: PII,
  all: DETECTOR_NAMES,
} as const satisfies Record<string, readonly DlpDetectorName[]>;

export type DlpGroupName = keyof typeof DETECTOR_GROUPS;

/** Every value `egress.dlp.detectors` accepts: a detector or a group. */
export const DETECTOR_CHOICES: string[] = [...Object.keys(DETECTOR_GROUPS), ...DETECTOR_NAMES];

/** The detectors a list of names and groups stands for, each once, in catalogue order. */
export function expandDetectors(names: readonly string[]): DlpDetectorName[] {
  const want = new Set<string>();
  for (const n of names) for (const d of (DETECTOR_GROUPS as Record<string, readonly string[]>)[n] ?? [n]) want.add(d);
  return DETECTOR_NAMES.filter((d) => want.has(d));
}

/** What a group stands for, in the words `describe` uses. */
export const GROUP_WORDS: Record<DlpGroupName, string> = {
  recommended: 'keys, tokens and passwords',
  pii: 'payment card, bank account and social security numbers',
  all: 'keys, tokens, passwords, payment card, bank account and social security numbers',
};

/** The detectors and groups as written, in describe's words (a group once, then what it does not cover). */
export function dlpWords(written: readonly string[]): string[] {
  return written.map((n) => (n in GROUP_WORDS ? GROUP_WORDS[n as DlpGroupName] : (DETECTOR_DESCRIPTIONS[n as DlpDetectorName] ?? n)));
}
