// Fakes for the agent's unit tests: a clock that moves only when told, a transport that records.
import type { AgentTransport, Clock, Payload, Reader, Sample } from 'topicast/agent';

export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  get pending(): number {
    return this.timers.size;
  }
  /** Moves time forward, firing due timers in order (bounded: a timer loop cannot spin forever). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; guard < 100_000; guard++) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

export interface Published {
  topic: string;
  payload: Payload;
  retain: boolean;
  at: number;
}

export class FakeTransport implements AgentTransport {
  readonly kind = 'native' as const;
  open = false;
  published: Published[] = [];
  closedWith: { topic: string; payload: Payload } | undefined | null = null;
  /** Topics whose next publish rejects. */
  failNext = new Set<string>();
  private listeners = new Set<() => void>();
  constructor(private readonly clock: Clock) {}
  isOpen(): boolean {
    return this.open;
  }
  onOpen(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  publish(topic: string, payload: Payload, retain: boolean): Promise<void> {
    if (!this.open) return Promise.reject(new Error('not open'));
    if (this.failNext.delete(topic)) return Promise.reject(new Error('socket closed'));
    this.published.push({ topic, payload, retain, at: this.clock.now() });
    return Promise.resolve();
  }
  async close(last?: { topic: string; payload: Payload }): Promise<void> {
    this.closedWith = last;
    if (last && this.open) this.published.push({ topic: last.topic, payload: last.payload, retain: true, at: this.clock.now() });
    this.open = false;
  }
  setOpen(open: boolean): void {
    this.open = open;
    if (open) for (const l of [...this.listeners]) l();
  }
  topics(): string[] {
    return this.published.map((p) => p.topic);
  }
  take(): Published[] {
    const out = this.published;
    this.published = [];
    return out;
  }
}

/** A reader whose samples come from a function of the read count and time; records when it was read. */
export function scriptedReader(name: string, script: (n: number, now: number) => Sample[]): Reader & { reads: number[] } {
  const reads: number[] = [];
  return {
    name,
    reads,
    read(now: number) {
      reads.push(now);
      return script(reads.length - 1, now);
    },
  };
}
