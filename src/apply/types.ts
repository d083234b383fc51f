/** What `apply` takes and reports. */
import type { Artifact } from '../generate/index.js';

export type ApplyControl = 'account' | 'firewall' | 'apparmor' | 'systemd';
export const APPLY_CONTROLS: readonly ApplyControl[] = ['account', 'firewall', 'apparmor', 'systemd'];

export interface ApplyInput {
  agent: string;
  user: string;
  uid: number;
  artifacts: readonly Pick<Artifact, 'path' | 'control' | 'content'>[];
  planJson: string;
}

export interface ApplyOptions {
  /** Install files and the account under this root instead of /. */
  root: string;
  /** Print what would be done; change nothing. */
  dryRun: boolean;
  /** Do not load anything into the running kernel (firewall, AppArmor) or systemd. */
  offline: boolean;
  /** Which firewall front end loads the rules. */
  firewall: 'iptables' | 'nft';
  /** Controls the caller accepts to leave unenforced when this host lacks them. */
  allowMissing: readonly ApplyControl[];
  log: (line: string) => void;
}

export interface StepReport {
  step: string;
  control: ApplyControl | 'files';
  status: 'done' | 'unchanged' | 'skipped' | 'would-run';
  commands: string[];
  note?: string;
}

