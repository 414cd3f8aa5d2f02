/**
 * Fan-out groups: the subscribers of one filter that need nothing decided per subscriber per
 * message, delivered to as one (FANOUT.md, "Fan-out groups").
 *
 * A native session holding exactly one filter, with no per-topic read check, gets every message of
 * that filter in publish order, as the same shared frame as every other such session. Visiting each
 * of them per publish (the router's dedupe stamp, `deliver`, the outbox's policy checks and queue)
 * cost about a tenth of the broker's CPU at 1→100 fan-out, all of it the same work a hundred times.
 * So the router holds one subscriber for all of them, the group: a publish appends its frame to the
 * group's list once, and at the end of the turn each member is written the frames since its last
 * write, corked — the same frames in the same order, one corked write per member per turn as before.
 *
 * A member is *plain* while its outbox holds nothing (nothing queued, no snapshot, no conflated
 * values): only then may the group write to its connection directly, since nothing of the member's
 * own must come between. Anything its outbox queues (an ACK, a snapshot, a backlog) makes it *busy*
 * first: the frames the group holds for it move into its outbox ahead of that, and from then on
 * every message reaches it through its outbox (`pushLive`: order, slow-consumer policy, pacing),
 * until the outbox is empty again at a later message. The slow-consumer policy stays exact: a plain
 * member's transport held at most half the limit at its last write, and before this turn's frames
 * could take any member past the limit the group writes at once and lets members over it turn busy
 * (as `Outbox.backedUp` offers queued bytes to the transport before judging).
 *
 * Groups exist only for filters with two qualifying sessions or more (a device's own topic keeps
 * its plain router entry: no memory per idle connection), and end with their last member.
 */
import type { Message } from '../core/message.js';
import type { Router, Subscriber, SubscriptionOptions } from '../core/router.js';
import { TURN_FRAMES_MAX_KEEP, type Flusher, type GroupSeat, type Outbox } from './outbox.js';

/** What a group needs from the protocol whose sessions it holds. */
export interface GroupProtocol {
  /** The frame of a live message, shared by every subscriber of the publish. */
  frameOf(message: Message): Uint8Array;
  /** The options every member's subscription has (the group's entry in the router). */
  readonly options: SubscriptionOptions;
}

/** One session's place in its group; held by its outbox (`Outbox.member`). */
export class GroupMember implements GroupSeat {
  /** Index in its group's `plain` or `busy` list. */
  slot = 0;
  /** Plain: the first of the group's frames not written to it yet. */
  from = 0;
  plain = false;
  constructor(readonly group: FanoutGroup, readonly outbox: Outbox) {}

  busy(): void {
    this.group.toBusy(this);
  }
}

/** The fan-out groups of one protocol in one broker, by filter. */
export class FanoutGroups {
  private readonly groups = new Map<string, FanoutGroup>();

  constructor(
    readonly router: Router,
    readonly flusher: Flusher,
    /** Outbox limit (OutboxLimits.maxBufferedBytes): a plain member's transport holds at most half of it. */
    readonly maxBufferedBytes: number,
    readonly protocol: GroupProtocol,
  ) {}

  /** Frames written to plain members straight from their group (metrics). */
  written = 0;

  /** Groups now (metrics, tests). */
  get size(): number {
    return this.groups.size;
  }

  /**
   * Places `outbox`'s session, which now holds exactly `filter` and qualifies (see the file
   * comment), in `filter`'s group. `alone` is the session's own router entry; `partner` finds
   * another qualifying session subscribed to `filter` alone. Without a group and without a partner
   * nothing changes (the session keeps its router entry).
   */
  join(outbox: Outbox, alone: Subscriber, filter: string, partner: () => { subscriber: Subscriber; outbox: Outbox } | undefined): void {
    let group = this.groups.get(filter);
    if (group === undefined) {
      const other = partner();
      if (other === undefined) return;
      group = new FanoutGroup(filter, this);
      this.groups.set(filter, group);
      this.router.subscribe(group, filter, this.protocol.options);
      this.router.unsubscribe(other.subscriber, filter);
      group.add(other.outbox);
    }
    this.router.unsubscribe(alone, filter);
    group.add(outbox);
  }

  /**
   * Takes `outbox`'s session out of its group: the frames the group held for it are queued in its
   * outbox first (they were delivered before it left). A caller that keeps the filter subscribes
   * the session on its own before, so the filter's interest (a cluster's subscription) never
   * drops to none in between.
   */
  leave(outbox: Outbox): void {
    const member = outbox.member as GroupMember;
    const group = member.group;
    group.remove(member);
    if (group.fanout === 0) {
      this.groups.delete(group.filter);
      this.router.unsubscribe(group, group.filter);
    }
  }
}

const NO_FRAMES: Uint8Array[] = [];

/** The one router entry of a filter's qualifying sessions. */
export class FanoutGroup implements Subscriber {
  routerStamp = 0;
  /** Flusher bookkeeping. */
  queuedForFlush = false;
  /** Members: deliveries one `deliver` stands for (the router counts them). */
  fanout = 0;
  private readonly plain: (GroupMember | undefined)[] = [];
  /** Plain members (`plain` may hold holes meanwhile, see `visiting`). */
  private plainCount = 0;
  private readonly busy: (GroupMember | undefined)[] = [];
  /**
   * Deliveries in progress (a delivery can lead to another: a connection closed by the `disconnect`
   * policy publishes its will). Meanwhile a member leaving a list leaves a hole (undefined), so no
   * member moves under a loop and is skipped or served twice; the lists are compacted after.
   */
  private visiting = 0;
  private holes = 0;
  /** This turn's frames for plain members, in publish order: `frames[0..length)`. */
  private frames: Uint8Array[] = NO_FRAMES;
  private length = 0;
  /** Bytes of `frames[0..length)`: the most any plain member has pending. */
  private bytes = 0;
  /** The most any plain member's transport held at its last write (≤ half the limit). */
  private worst = 0;

  constructor(readonly filter: string, private readonly groups: FanoutGroups) {}

  deliver(message: Message): void {
    const frame = this.groups.protocol.frameOf(message);
    const max = this.groups.maxBufferedBytes;
    const busy = this.busy;
    this.visiting++;
    try {
      // A busy member whose outbox emptied since (written at the end of an earlier turn) is plain from this message on.
      if (this.visiting === 1) {
        for (let i = busy.length - 1; i >= 0; i--) {
          const member = busy[i];
          if (member !== undefined && member.outbox.idle() && member.outbox.estimate <= max / 2) this.toPlain(member);
        }
      }
      if (this.plainCount > 0) {
        if (this.worst + this.bytes + frame.length > max) this.relieve(frame.length);
        if (this.frames === NO_FRAMES) this.frames = [];
        this.frames[this.length++] = frame;
        this.bytes += frame.length;
        this.groups.flusher.mark(this);
      }
      const topic = message.topic;
      for (let i = busy.length - 1; i >= 0; i--) busy[i]?.outbox.pushLive(frame, topic);
    } finally {
      if (--this.visiting === 0 && this.holes > 0) this.compact();
    }
  }

  /** @internal Writes this turn's frames to every plain member: the Flusher, at the end of the turn. */
  send(): void {
    this.write(false);
  }

  /**
   * Writes this turn's frames to every plain member. `midTurn` (from `relieve`): each member written
   * is also marked for the end of the turn, as its outbox would be had the frames been queued there
   * (it flushes what it holds by then, e.g. conflated values, as it would have).
   */
  private write(midTurn: boolean): void {
    const n = this.length;
    if (n === 0) return;
    const frames = this.frames;
    const half = this.groups.maxBufferedBytes / 2;
    const plain = this.plain;
    let worst = 0;
    this.visiting++;
    try {
      for (let i = plain.length - 1; i >= 0; i--) {
        const member = plain[i];
        if (member === undefined) continue;
        if (member.from < n) {
          member.outbox.writeShared(frames, member.from, n);
          this.groups.written += n - member.from;
          if (midTurn) this.groups.flusher.mark(member.outbox);
        }
        const held = member.outbox.estimate;
        if (held > half) {
          member.from = n; // written: nothing of this turn's frames is left to take along
          this.toBusy(member);
        } else {
          member.from = 0; // the next turn's frames start at 0
          if (held > worst) worst = held;
        }
      }
    } finally {
      if (--this.visiting === 0 && this.holes > 0) this.compact();
    }
    this.worst = worst;
    if (frames.length > TURN_FRAMES_MAX_KEEP) this.frames = NO_FRAMES;
    else for (let i = 0; i < n; i++) frames[i] = undefined as unknown as Uint8Array; // no frame outlives its turn
    this.length = 0;
    this.bytes = 0;
  }

  /**
   * This turn's frames and the next one (`size` bytes) could take a plain member past the limit:
   * write what is pending now, then a member whose transport would still go past it with this frame
   * turns busy and gets it through its outbox's policy (see the file comment).
   */
  private relieve(size: number): void {
    this.groups.flusher.beforeSend?.(); // outside the Flusher's turn end: see Flusher.beforeSend
    this.write(true);
    const max = this.groups.maxBufferedBytes;
    if (this.worst + size <= max) return;
    const plain = this.plain;
    let worst = 0;
    for (let i = plain.length - 1; i >= 0; i--) {
      const member = plain[i];
      if (member === undefined) continue;
      const held = member.outbox.estimate;
      if (held + size > max) this.toBusy(member);
      else if (held > worst) worst = held;
    }
    this.worst = worst;
  }

  /** @internal A plain member's outbox is about to queue something of its own: its pending frames go first, then it is busy. */
  toBusy(member: GroupMember): void {
    if (!member.plain) return;
    if (member.from < this.length) member.outbox.takeShared(this.frames, member.from, this.length);
    this.unlist(this.plain, member);
    this.plainCount--;
    member.plain = false;
    member.slot = this.busy.push(member) - 1;
  }

  private toPlain(member: GroupMember): void {
    this.unlist(this.busy, member);
    member.plain = true;
    this.plainCount++;
    member.from = this.length;
    member.slot = this.plain.push(member) - 1;
    const held = member.outbox.estimate;
    if (held > this.worst) this.worst = held;
  }

  /** @internal */
  add(outbox: Outbox): void {
    const member = new GroupMember(this, outbox);
    outbox.member = member;
    member.slot = this.busy.push(member) - 1;
    if (outbox.idle() && outbox.estimate <= this.groups.maxBufferedBytes / 2) this.toPlain(member);
    if (this.fanout++ > 0) this.groups.router.extraSubscriptions++;
  }

  /** @internal */
  remove(member: GroupMember): void {
    this.toBusy(member); // its pending frames into its outbox (nothing if it is closed)
    this.unlist(this.busy, member);
    member.outbox.member = undefined;
    if (--this.fanout > 0) this.groups.router.extraSubscriptions--;
  }

  /** O(1) removal: the last member takes the slot, or, during a loop over the lists, a hole (see `visiting`). */
  private unlist(list: (GroupMember | undefined)[], member: GroupMember): void {
    if (this.visiting > 0) {
      list[member.slot] = undefined;
      this.holes++;
      return;
    }
    const last = list.pop()!;
    if (last !== member) {
      list[member.slot] = last;
      last.slot = member.slot;
    }
  }

  private compact(): void {
    for (const list of [this.plain, this.busy]) {
      let j = 0;
      for (let i = 0; i < list.length; i++) {
        const member = list[i];
        if (member === undefined) continue;
        member.slot = j;
        list[j++] = member;
      }
      list.length = j;
    }
    this.holes = 0;
  }
}
