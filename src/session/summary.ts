/**
 * Bounded lists for the audit log: a session can change 100,000 files, and an entry
 * that lists them all breaks syslog transport and buries the log. An entry carries the
 * first entries, how many there were, and a hash of the whole list, so the full list
 * (kept by nobody else) can still be matched against what a responder finds.
 */
import { createHash } from 'node:crypto';

export const LIST_CAP = 100;
/** Longest single item kept (a deep path); longer ones are cut with a marker. */
export const ITEM_CAP = 512;

export interface ListSummary {
  count: number;
  first: string[];
  /** sha256 of the whole list, one item per line. */
  sha256: string;
  truncated: boolean;
}

export function listSummary(items: readonly string[], cap = LIST_CAP): ListSummary {
  const h = createHash('sha256');
  for (const i of items) h.update(i).update('\n');
  const first = items.slice(0, cap).map((i) => (i.length > ITEM_CAP ? `${i.slice(0, ITEM_CAP)}…[${i.length - ITEM_CAP} more characters]` : i));
  return { count: items.length, first, sha256: h.digest('hex'), truncated: items.length > cap || items.some((i) => i.length > ITEM_CAP) };
}
