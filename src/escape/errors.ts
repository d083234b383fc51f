/**
 * Thrown by an escaper for input its syntax cannot represent safely. The manifest
 * rules refuse such input first, so reaching this is an agentbox bug, never a
 * silent pass-through.
 */
export class UnrepresentableError extends Error {
  constructor(syntax: string, value: string, why: string) {
    super(`cannot write ${JSON.stringify(value)} safely in ${syntax}: ${why}`);
    this.name = 'UnrepresentableError';
  }
}

/** Control, format and line/paragraph separator characters: no artifact syntax may carry them. */
export const UNPRINTABLE = /[\p{Cc}\p{Cf}\u2028\u2029]/u;
