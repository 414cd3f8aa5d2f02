/**
 * The MQTT matching reference for property tests (STYLE.md #12): MQTT 3.1.1 §4.7.1–4.7.2 level
 * by level, nothing clever. Implementations (the trie, the retained store, the NATS subject
 * encoding) are checked against it.
 */
export function referenceMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (t[0]!.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
