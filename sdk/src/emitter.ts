/**
 * A tiny typed event emitter in the style of nanoevents: `on` returns its own
 * removal, listeners run synchronously in registration order, and a listener
 * removed during an emit does not run for that emit. No wildcard events, no
 * `once`, no error magic: the SDK decides itself what to do with errors.
 * Cost: `emit` copies nothing unless a listener list changes while it runs.
 */

/**
 * A map from event names to listener signatures.
 * @example
 * type Events = { tick: (n: number) => void } satisfies EventsMap;
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- listener parameters are checked per event, not here
export type EventsMap = { [event: string]: (...args: any[]) => void };

/**
 * A typed event emitter.
 * @example
 * const e = createEmitter<{ tick: (n: number) => void }>();
 * const off = e.on('tick', (n) => console.log(n));
 * e.emit('tick', 1); off();
 */
export interface Emitter<Events extends { [K in keyof Events]: EventsMap[string] }> {
  /** Adds a listener; returns a function that removes it (idempotent). */
  on<K extends keyof Events>(event: K, listener: Events[K]): () => void;
  /** Calls every listener of `event` with `args`, in registration order. */
  emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void;
  /** Number of listeners of `event`. */
  count<K extends keyof Events>(event: K): number;
}

/**
 * Creates an emitter.
 * @example
 * const e = createEmitter<{ state: (s: string) => void }>();
 * e.on('state', console.log);
 * e.emit('state', 'open');
 */
export function createEmitter<Events extends { [K in keyof Events]: EventsMap[string] }>(): Emitter<Events> {
  // Listener arrays are replaced, never mutated, so an emit in progress iterates a stable snapshot.
  const lists: { [event: string | number | symbol]: EventsMap[string][] | undefined } = {};
  return {
    on(event, listener) {
      lists[event] = [...(lists[event] ?? []), listener];
      return function off() {
        const list = lists[event];
        if (list) lists[event] = list.filter((l) => l !== listener);
      };
    },
    emit(event, ...args) {
      const list = lists[event];
      if (!list) return;
      for (const listener of list) {
        // A listener removed by an earlier one in this same emit does not run.
        if (lists[event]!.includes(listener)) listener(...args);
      }
    },
    count(event) {
      return lists[event]?.length ?? 0;
    },
  };
}
