/**
 * Errors as codes, handled at one boundary (src/cli/main.ts).
 *
 * Exit codes follow SPEC §1: 0 ok; 1 a check failed; 2 usage or manifest error;
 * 3 denied by policy; 4 required enforcement unavailable on this host (fail closed);
 * 125/126/127 agentbox's own failure / not executable / not found (launch only).
 */
export const ExitCode = {
  ok: 0,
  checkFailed: 1,
  usage: 2,
  denied: 3,
  unavailable: 4,
  internal: 125,
  notExecutable: 126,
  notFound: 127,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorCode =
  | 'MANIFEST_INVALID'
  | 'MANIFEST_NOT_FOUND'
  | 'USAGE'
  | 'CHECK_FAILED'
  | 'DENIED'
  | 'CONTROL_UNAVAILABLE'
  | 'APPLY_FAILED'
  | 'INTERNAL';

const exitFor: Record<ErrorCode, ExitCode> = {
  MANIFEST_INVALID: ExitCode.usage,
  MANIFEST_NOT_FOUND: ExitCode.usage,
  USAGE: ExitCode.usage,
  CHECK_FAILED: ExitCode.checkFailed,
  DENIED: ExitCode.denied,
  CONTROL_UNAVAILABLE: ExitCode.unavailable,
  APPLY_FAILED: ExitCode.internal,
  INTERNAL: ExitCode.internal,
};

/** The one error type agentbox throws; `details` are extra lines shown to the user. */
export class AgentboxError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
  readonly details: readonly string[];

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: readonly string[]; exitCode?: ExitCode } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AgentboxError';
    this.code = code;
    this.exitCode = opts.exitCode ?? exitFor[code];
    this.details = opts.details ?? [];
  }
}
