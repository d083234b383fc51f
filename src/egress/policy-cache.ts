/**
 * The egress proxy's organisation-policy decisions, cached per (host, port) for the
 * session's life (one proxy per session). A policy function that throws is a deny.
 */

/** The organisation policy's answer for one (host, port). */
export interface PolicyAnswer {
  allow: boolean;
  /** The policies that decided (the forbidding ones on a deny). */
  ids: string[];
  reason: string;
}

export class PolicyCache {
  private readonly answers = new Map<string, PolicyAnswer>();

  constructor(private readonly policy: (host: string, port: number, consented: boolean) => PolicyAnswer) {}

  decide(host: string, port: number, consented: boolean): { answer: PolicyAnswer; cached: boolean } {
    const key = `${host}:${port}`;
    const hit = this.answers.get(key);
    if (hit) return { answer: hit, cached: true };
    let answer: PolicyAnswer;
    try {
      answer = this.policy(host, port, consented);
    } catch (e) {
      answer = { allow: false, ids: [], reason: `the policy engine failed (${(e as Error).message}); denied` };
    }
    this.answers.set(key, answer);
    return { answer, cached: false };
  }
}
