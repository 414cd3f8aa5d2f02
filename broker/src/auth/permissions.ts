/**
 * Per-client permissions: which topics a client may publish to and which
 * filters it may subscribe to, with MQTT topic semantics (topic.ts).
 *
 * Model (docs/SECURITY.md):
 * - `publish` / `subscribe` are allow lists of filters; `denyPublish` /
 *   `denySubscribe` take precedence over them. Nothing listed = nothing allowed.
 * - A publish (or a will) to topic T is allowed iff T matches an allow filter and no deny filter.
 * - A subscribe to filter F is allowed iff F is *covered* by one allow filter
 *   (every topic F can match, that allow filter matches too) and F is not
 *   covered by a deny filter. When F only *overlaps* a deny filter (subscribe
 *   `devices/#` with deny `devices/+/secret`), it is allowed and every delivery
 *   through it, live or retained, is checked per topic with `canRead`.
 * - `{sub}` and `{clientId}` in a filter are replaced by the client's subject and
 *   client id, per whole level. A value that is empty or holds `/`, `+`, `#`
 *   or NUL cannot be substituted safely: the filter that uses it is dropped
 *   (for an allow list that grants less, for a deny list the whole rule set
 *   denies everything, so an odd identity never widens access).
 *
 * Cost: every check is O(filters × levels), no allocation on the per-topic path
 * beyond `topicMatches`' split. Permission lists are small (a handful of filters).
 */
import { filterProblem } from 'topicast/protocol';
import { filterCovers, filtersOverlap } from '../core/filters.js';

// Filter-covers-filter logic lives in the core (history resume uses it too); re-exported for auth's callers.
export { filterCovers, filtersOverlap };

export interface PermissionRules {
  publish?: readonly string[];
  subscribe?: readonly string[];
  denyPublish?: readonly string[];
  denySubscribe?: readonly string[];
}

export interface Identity {
  /** The token's subject (`sub` claim or the token file entry's `sub`). */
  sub?: string | undefined;
  /** The MQTT client id; native connections have none. */
  clientId?: string | undefined;
}

/** Outcome of a subscribe check. */
export type SubscribeDecision = 'allow' | 'deny' | 'filtered';

const PLACEHOLDER = /\{(sub|clientId)\}/g;

/** A value substituted into a filter must stay exactly one literal level. */
function safeLevel(value: string | undefined): value is string {
  return value !== undefined && value.length > 0 && !/[/+#\u0000]/.test(value);
}

/** Replaces `{sub}` / `{clientId}`; undefined when a placeholder cannot be filled safely or the result is no valid filter. */
export function substitute(filter: string, identity: Identity): string | undefined {
  let ok = true;
  const out = filter.replace(PLACEHOLDER, (_m, name: 'sub' | 'clientId') => {
    const v = identity[name];
    if (!safeLevel(v)) {
      ok = false;
      return '';
    }
    return v;
  });
  if (!ok || filterProblem(out) !== undefined) return undefined;
  return out;
}

/**
 * `topicMatches` on pre-split levels: permission filters are split once per client, the
 * topic once per check, so a check allocates one array whatever the number of filters.
 */
export function levelsMatch(filter: readonly string[], topic: readonly string[]): boolean {
  const first = filter[0];
  if (topic[0]!.charCodeAt(0) === 0x24 /* $ */ && (first === '+' || first === '#')) return false; // [MQTT-4.7.2-1]
  for (let i = 0; i < filter.length; i++) {
    const level = filter[i];
    if (level === '#') return true; // also matches the parent: 'a/#' matches 'a' [MQTT-4.7.1-2]
    if (i >= topic.length) return false;
    if (level !== '+' && level !== topic[i]) return false;
  }
  return filter.length === topic.length;
}

function anyMatch(filters: readonly (readonly string[])[], topic: readonly string[]): boolean {
  for (let i = 0; i < filters.length; i++) if (levelsMatch(filters[i]!, topic)) return true;
  return false;
}

export class Permissions {
  private readonly publishAllow: string[];
  private readonly publishDeny: string[];
  private readonly subscribeAllow: string[];
  private readonly subscribeDeny: string[];
  private readonly publishAllowLevels: string[][];
  private readonly publishDenyLevels: string[][];
  private readonly subscribeAllowLevels: string[][];
  private readonly subscribeDenyLevels: string[][];
  /** A deny rule could not be filled in for this identity: deny everything (fail closed). */
  private readonly broken: boolean;

  constructor(rules: PermissionRules, identity: Identity = {}) {
    let broken = false;
    const allow = (list: readonly string[] | undefined): string[] => (list ?? []).map((f) => substitute(f, identity)).filter((f): f is string => f !== undefined);
    const deny = (list: readonly string[] | undefined): string[] =>
      (list ?? []).map((f) => {
        const s = substitute(f, identity);
        if (s === undefined) broken = true;
        return s ?? '#';
      });
    this.publishAllow = allow(rules.publish);
    this.subscribeAllow = allow(rules.subscribe);
    this.publishDeny = deny(rules.denyPublish);
    this.subscribeDeny = deny(rules.denySubscribe);
    this.broken = broken;
    const split = (list: string[]): string[][] => list.map((f) => f.split('/'));
    this.publishAllowLevels = split(this.publishAllow);
    this.publishDenyLevels = split(this.publishDeny);
    this.subscribeAllowLevels = split(this.subscribeAllow);
    this.subscribeDenyLevels = split(this.subscribeDeny);
  }

  /** Whether this client may publish (or leave a will) on `topic`. */
  canPublish(topic: string): boolean {
    if (this.broken) return false;
    const levels = topic.split('/');
    return anyMatch(this.publishAllowLevels, levels) && !anyMatch(this.publishDenyLevels, levels);
  }

  /** Whether a delivery on `topic` may reach this client (used per topic for `filtered` subscriptions and retained snapshots). */
  canRead(topic: string): boolean {
    if (this.broken) return false;
    const levels = topic.split('/');
    return anyMatch(this.subscribeAllowLevels, levels) && !anyMatch(this.subscribeDenyLevels, levels);
  }

  /** 'allow': every topic of `filter` may be read; 'filtered': allowed, but deliveries need `canRead`; 'deny': refused. */
  canSubscribe(filter: string): SubscribeDecision {
    if (this.broken) return 'deny';
    if (!this.subscribeAllow.some((a) => filterCovers(a, filter))) return 'deny';
    if (this.subscribeDeny.some((d) => filterCovers(d, filter))) return 'deny';
    return this.subscribeDeny.some((d) => filtersOverlap(d, filter)) ? 'filtered' : 'allow';
  }
}
