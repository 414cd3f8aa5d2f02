/**
 * Who publishes a dead node's wills: one rule for every bus adapter (cluster/nats/wills.ts,
 * cluster/mqtt-upstream.ts), so that survivors that see the same live set designate the same
 * claimer without talking to each other.
 *
 * The designated claimer of `dead` is a live node picked by a hash of the dead node's id over the
 * sorted live ids: every survivor computes the same answer from the same membership, and the work
 * of several dead nodes spreads over the survivors instead of falling on one. What makes a claim
 * exclusive is each adapter's business (NATS: compare-and-set delete; MQTT upstream: only the
 * designated node acts, and membership changes re-run the rule). Pure; O(live · log live).
 */

/** String hash (Java's `hashCode`, unsigned): stable across processes and versions. */
function hashOf(id: string): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h;
}

/**
 * The live node designated to claim `dead`'s wills. `live` holds every node the caller believes
 * alive, itself included (order and duplicates do not matter); `dead` among them is ignored.
 */
export function willClaimer(dead: string, live: Iterable<string>): string {
  const ids = [...new Set(live)].filter((id) => id !== dead).sort();
  if (ids.length === 0) throw new Error('willClaimer: no live node given');
  return ids[hashOf(dead) % ids.length]!;
}
