/**
 * Rules over the model that every consumer shares: the effective file-system grants
 * (nested and masked grants folded away), which network grants go through the egress
 * proxy, whether a session needs the proxy at all, and how a rule's source is named.
 * Pure.
 */
import { isWithin } from './paths.js';
import type { FsDeny, FsGrant, Model, NetGrant, RuleSource } from './types.js';

/**
 * Filesystem grants reduced to the smallest equivalent set: a grant inside another
 * grant of the same or wider access adds nothing (access is the union of grants),
 * and grants wholly inside an all-access deny are dropped (deny wins).
 */
export function effectiveFs(model: Model): { fs: FsGrant[]; masked: { grant: FsGrant; deny: FsDeny }[] } {
  const masked: { grant: FsGrant; deny: FsDeny }[] = [];
  const live = model.grants.fs.filter((g) => {
    const d = model.denies.fs.find((x) => x.access === 'all' && isWithin(g.path, x.path));
    if (d) masked.push({ grant: g, deny: d });
    return !d;
  });
  const fs = live.filter(
    (g, i) =>
      !live.some(
        (o, j) => j !== i && isWithin(g.path, o.path) && (o.access === 'write' || g.access === 'read') && (o.path !== g.path || o.access !== g.access || j < i),
      ),
  );
  return { fs, masked };
}

/** Net grants that go through the egress proxy (names) versus direct firewall accepts (literal addresses). */
export function viaProxy(g: NetGrant): boolean {
  return g.hostKind === 'name' || g.hostKind === 'wildcard';
}

/** True when the session needs its egress proxy: a network grant, or hosts to ask about. */
export function usesProxy(model: Pick<Model, 'grants' | 'egress'>): boolean {
  return model.grants.net.length > 0 || model.egress.consent !== undefined || model.egress.learnAnyHost === true;
}

/** "manifest capabilities[2]" or "preset viewer deny[0]". */
export function describeSource(s: RuleSource): string {
  return s.origin === 'preset' ? `preset ${s.preset} ${s.pointer}` : `manifest ${s.pointer}`;
}
