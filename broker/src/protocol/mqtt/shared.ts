/**
 * Shared subscriptions (MQTT 5 §4.8.2): `$share/{ShareName}/{filter}`. Every
 * session subscribed with the same share name and filter forms a group; the
 * group is one Subscriber in the router, and each matching message goes to one
 * member only, round-robin, preferring members that are connected.
 *
 * Invariants: a group is in the router while it has members, and removed with
 * its last member. No retained messages on subscribe (MQTT 5 §4.8.2),
 * and No Local is a protocol error on a shared subscription [MQTT-3.8.3-4].
 * Cost per message: O(members) in the worst case (all offline), O(1) usually.
 */
import type { Message } from '../../core/message.js';
import type { Router, Subscriber } from '../../core/router.js';
import type { MqttSubscriptionOptions } from './types.js';

/** What a shared group needs of a member session (session.ts's SharedMember). */
export interface SharedMember {
  /** The session's live connection, if any. */
  readonly link: unknown;
  deliverShared(message: Message, options: MqttSubscriptionOptions): void;
}

export interface SharedFilter {
  shareName: string;
  filter: string;
}

/** Splits `$share/name/filter`; undefined when `full` is not a shared filter; 'invalid' when malformed. */
export function parseShared(full: string): SharedFilter | 'invalid' | undefined {
  if (!full.startsWith('$share/')) return undefined;
  const rest = full.slice(7);
  const slash = rest.indexOf('/');
  if (slash <= 0) return 'invalid'; // [MQTT-4.8.2-1] a share name of at least one character, then a filter
  const shareName = rest.slice(0, slash);
  if (shareName.includes('+') || shareName.includes('#')) return 'invalid'; // [MQTT-4.8.2-2]
  const filter = rest.slice(slash + 1);
  if (filter.length === 0) return 'invalid';
  return { shareName, filter };
}

export class SharedGroup implements Subscriber {
  routerStamp = 0;
  readonly members = new Map<SharedMember, MqttSubscriptionOptions>();
  private order: SharedMember[] = [];
  private next = 0;

  constructor(readonly key: string, readonly filter: string, readonly share?: string) {}

  join(session: SharedMember, options: MqttSubscriptionOptions): void {
    if (!this.members.has(session)) this.order.push(session);
    this.members.set(session, options);
  }

  /** Removes a member; true when the group is now empty. */
  leave(session: SharedMember): boolean {
    if (this.members.delete(session)) this.order = this.order.filter((s) => s !== session);
    return this.members.size === 0;
  }

  deliver(message: Message): void {
    const n = this.order.length;
    if (n === 0) return;
    // Round-robin over connected members; if none is connected, the next one queues it (QoS 1/2).
    let chosen: SharedMember | undefined;
    for (let i = 0; i < n; i++) {
      const s = this.order[(this.next + i) % n]!;
      if (s.link !== undefined) {
        chosen = s;
        this.next = (this.next + i + 1) % n;
        break;
      }
    }
    if (chosen === undefined) {
      chosen = this.order[this.next % n]!;
      this.next = (this.next + 1) % n;
    }
    chosen.deliverShared(message, this.members.get(chosen)!);
  }
}

/** The server's registry of groups, keyed by share name and filter. */
export class SharedGroups {
  private readonly groups = new Map<string, SharedGroup>();

  constructor(private readonly router: Router) {}

  get size(): number {
    return this.groups.size;
  }

  join(session: SharedMember, shared: SharedFilter, options: MqttSubscriptionOptions): void {
    const key = `${shared.shareName}\u0000${shared.filter}`;
    let group = this.groups.get(key);
    if (!group) {
      group = new SharedGroup(key, shared.filter, shared.shareName); // the share name: one member in a cluster (core/router.ts)
      this.groups.set(key, group);
      this.router.subscribe(group, shared.filter, options);
    }
    group.join(session, options);
  }

  leave(session: SharedMember, shared: SharedFilter): boolean {
    const key = `${shared.shareName}\u0000${shared.filter}`;
    const group = this.groups.get(key);
    if (!group || !group.members.has(session)) return false;
    if (group.leave(session)) {
      this.groups.delete(key);
      this.router.unsubscribe(group, shared.filter);
    }
    return true;
  }
}
