/**
 * Why the egress proxy refused something: a code that the audit log, a SIEM, the 403's
 * status line and the end-of-session summary key on, and a sentence for people.
 */
export type ReasonCode =
  | 'not-granted' // no grant covers the host
  | 'wrong-port' // the host is granted on another port
  | 'denied-by-rule' // an explicit deny matched
  | 'internal-address' // a literal internal address, or a name resolving to one (rebinding)
  | 'unresolvable'
  | 'policy' // organisation policy forbids it
  | 'consent-denied'
  | 'consent-timeout'
  | 'consent-limit' // too many questions this session, or too many waiting at once
  | 'dlp' // a detector matched (host, URL, header or body)
  | 'unscannable' // content DLP cannot read within its bounds
  | 'uninspectable' // a host that must be inspected, where no TLS can be terminated (agentboxd)
  | 'upload-limit'
  | 'egress-cut' // quarantined
  | 'host-mismatch' // plain HTTP Host header names another host
  | 'bad-request'
  | 'http-rule' // an egress.http method/path rule refused the request
  | 'sni-mismatch' // the TLS server name is not the CONNECT host
  | 'upstream-certificate' // the upstream's certificate failed verification
  | 'upstream-failed' // the upstream could not be reached over TLS
  | 'placeholder' // a brokered credential's placeholder sent to another host
  | 'credential' // a brokered credential cannot be sent this way (plain HTTP)
  | 'busy'; // connection or buffer budget exhausted

export interface Refusal {
  code: ReasonCode;
  reason: string;
  /** The rule that decided, as written with its pointer, when there is one. */
  rule: string | undefined;
  details: Record<string, unknown>;
}

export const refusal = (code: ReasonCode, reason: string, rule?: string, details: Record<string, unknown> = {}): Refusal => ({ code, reason, rule, details });

/** The status line text of a refusal (python, curl and browsers print it). */
export function statusText(r: Pick<Refusal, 'code'>): string {
  return `Forbidden by agentbox (${r.code})`;
}
