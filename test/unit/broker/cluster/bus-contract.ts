/**
 * The Bus contract (broker/src/core/bus.ts), run against every implementation:
 * call `runBusContract(name, factory)` from a test file. One test per clause.
 *
 * The factory makes a cluster of N nodes on one engine: the buses (not started; the suite
 * starts them), `kill(i)` to crash node i as kill -9 would (no clean close, wills left behind),
 * `setDown(down)` to make the engine unreachable for every node and reachable again, and
 * `close()` to release everything. Each test uses its own topic prefix, so a factory may
 * reuse one engine for several clusters.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Bus, BusEvents, BusMessage, BusState, OrphanWill } from '../../../../broker/src/core/bus.js';

export interface BusTestCluster {
  /** One bus per node, not started. */
  readonly buses: readonly Bus[];
  /** Crashes node `index` (kill -9): no clean close, its wills stay registered. */
  kill(index: number): Promise<void>;
  /** Makes the engine unreachable for every node (true) or reachable again (false). */
  setDown(down: boolean): Promise<void>;
  /** Closes every bus still open and releases the engine. */
  close(): Promise<void>;
}

export interface BusContractOptions {
  /** Upper bound for anything that must happen (delivery, a will claim, a state change). Default 10 s. */
  timeoutMs?: number;
  /** How long to watch before concluding that something did not happen. Default 300 ms. */
  quietMs?: number;
}

/** What one node received through its events. */
export class Recorder implements BusEvents {
  readonly messages: BusMessage[] = [];
  readonly states: BusState[] = [];
  readonly wills: OrphanWill[] = [];
  private waiters: (() => void)[] = [];

  message(message: BusMessage): void {
    this.messages.push(message);
    this.wake();
  }

  state(state: BusState): void {
    this.states.push(state);
    this.wake();
  }

  orphanWill(will: OrphanWill): void {
    this.wills.push(will);
    this.wake();
  }

  topics(prefix: string): string[] {
    return this.messages.filter((m) => m.topic.startsWith(prefix)).map((m) => m.topic);
  }

  /** Resolves once `check` holds, re-checked after every event; rejects after `timeoutMs`. */
  async until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function busMessage(topic: string, payload: string | Uint8Array, extra: Partial<BusMessage> = {}): BusMessage {
  return {
    topic,
    payload: typeof payload === 'string' ? text(payload) : payload,
    retain: false,
    qos: 0,
    properties: undefined,
    origin: '',
    seq: 0,
    ...extra,
  };
}

export function runBusContract(name: string, create: (nodes: number) => Promise<BusTestCluster>, options: BusContractOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const quietMs = options.quietMs ?? 300;
  const testTimeout = { timeout: timeoutMs * 4 };

  /** Starts a cluster of `n` nodes with a recorder each, and a topic prefix unique to the test. */
  async function cluster(n: number): Promise<{ c: BusTestCluster; buses: readonly Bus[]; rec: Recorder[]; p: string }> {
    const c = await create(n);
    const rec = c.buses.map(() => new Recorder());
    await Promise.all(c.buses.map((b, i) => b.start(rec[i]!)));
    return { c, buses: c.buses, rec, p: `ct${randomBytes(4).toString('hex')}` };
  }

  /** Publishes `sentinel` from `from` and waits for `rec` to see it: everything published before on that topic arrived. */
  async function flushed(from: Bus, rec: Recorder, topic: string): Promise<void> {
    const marker = `sentinel-${randomBytes(4).toString('hex')}`;
    assert.equal(await from.publish(busMessage(topic, marker)), 0, 'a message that is not retained has seq 0');
    await rec.until(() => rec.messages.some((m) => m.topic === topic && str(m.payload) === marker), timeoutMs, `sentinel on ${topic}`);
    await sleep(quietMs); // other topics carry no order guarantee: give them the quiet window too
  }

  test(`${name}: nodes have distinct ids and start up`, testTimeout, async () => {
    const { c, buses } = await cluster(3);
    try {
      assert.equal(new Set(buses.map((b) => b.nodeId)).size, 3);
      for (const b of buses) {
        assert.equal(typeof b.kind, 'string');
        assert.equal(b.state, 'up');
      }
    } finally {
      await c.close();
    }
  });

  test(`${name}: interest add and remove`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [, rb], p } = await cluster(2);
    try {
      await a!.publish(busMessage(`${p}/before`, 'x'));
      await b!.subscribe(`${p}/+`);
      await a!.publish(busMessage(`${p}/one`, '1'));
      await a!.publish(busMessage(`other${p}/one`, 'not held'));
      await rb!.until(() => rb!.topics(p).includes(`${p}/one`), timeoutMs, 'a message on a held filter');
      await b!.subscribe(`${p}/keep/#`);
      await b!.unsubscribe(`${p}/+`);
      await a!.publish(busMessage(`${p}/two`, '2'));
      await flushed(a!, rb!, `${p}/keep/sentinel`);
      assert.deepEqual(rb!.topics(p).filter((t) => !t.includes('sentinel')), [`${p}/one`], 'only the message published while the filter was held');
      assert.deepEqual(rb!.topics(`other${p}`), [], 'a topic matching no held filter never arrives');
      const m = rb!.messages.find((x) => x.topic === `${p}/one`)!;
      assert.equal(m.origin, a!.nodeId);
      assert.equal(str(m.payload), '1');
      assert.equal(m.retain, false);
      assert.equal(m.seq, 0);
    } finally {
      await c.close();
    }
  });

  test(`${name}: no echo of a node's own publishes`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [ra, rb], p } = await cluster(2);
    try {
      await a!.subscribe(`${p}/#`);
      await b!.subscribe(`${p}/#`);
      await a!.publish(busMessage(`${p}/x`, 'from a'));
      await rb!.until(() => rb!.topics(p).length === 1, timeoutMs, 'b receives');
      await flushed(b!, ra!, `${p}/from-b`);
      assert.deepEqual(ra!.topics(p), [`${p}/from-b`], 'a never sees its own message');
      await sleep(quietMs);
      assert.deepEqual(rb!.topics(p), [`${p}/x`], 'b never sees its own sentinel');
    } finally {
      await c.close();
    }
  });

  test(`${name}: once per message however many held filters match`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [, rb], p } = await cluster(2);
    try {
      for (const f of [`${p}/s/t`, `${p}/+/t`, `${p}/#`, `${p}/s/#`, `+/s/t`, '#']) await b!.subscribe(f);
      await a!.publish(busMessage(`${p}/s/t`, 'once'));
      await flushed(a!, rb!, `${p}/s/sentinel`);
      assert.deepEqual(rb!.topics(`${p}/s/t`), [`${p}/s/t`]);
    } finally {
      await c.close();
    }
  });

  test(`${name}: order per node per topic, payload bytes and properties unchanged`, testTimeout, async () => {
    const { c, buses: [a, b, d], rec: [, rb], p } = await cluster(3);
    try {
      await b!.subscribe(`${p}/#`);
      const n = 200;
      const sends: Promise<number>[] = [];
      for (let i = 0; i < n; i++) {
        sends.push(a!.publish(busMessage(`${p}/seq`, String(i))));
        sends.push(d!.publish(busMessage(`${p}/seq`, `d${i}`)));
      }
      await Promise.all(sends);
      await rb!.until(() => rb!.topics(p).length === 2 * n, timeoutMs, `${2 * n} messages`);
      const fromA = rb!.messages.filter((m) => m.origin === a!.nodeId).map((m) => str(m.payload));
      const fromD = rb!.messages.filter((m) => m.origin === d!.nodeId).map((m) => str(m.payload));
      assert.deepEqual(fromA, Array.from({ length: n }, (_, i) => String(i)));
      assert.deepEqual(fromD, Array.from({ length: n }, (_, i) => `d${i}`));

      const bytes = new Uint8Array([0, 1, 0xff, 0x80, 0x2e, 0x2a]);
      const expiresAt = Date.now() + 60_000;
      await a!.publish(busMessage(`${p}/props`, bytes, {
        qos: 1,
        properties: {
          payloadFormatIndicator: false,
          contentType: 'application/x-test',
          responseTopic: `${p}/reply`,
          correlationData: new Uint8Array([9, 8, 7]),
          userProperties: { a: '1', b: ['x', 'y'] },
          expiresAt,
        },
      }));
      await a!.publish(busMessage(`${p}/empty`, new Uint8Array(0)));
      await rb!.until(() => rb!.topics(`${p}/empty`).length === 1, timeoutMs, 'the empty payload');
      const m = rb!.messages.find((x) => x.topic === `${p}/props`)!;
      assert.deepEqual([...m.payload], [...bytes]);
      assert.equal(m.qos, 1);
      const props = m.properties!;
      assert.equal(props.contentType, 'application/x-test');
      assert.equal(props.responseTopic, `${p}/reply`);
      assert.deepEqual([...props.correlationData!], [9, 8, 7]);
      assert.deepEqual(props.userProperties, { a: '1', b: ['x', 'y'] });
      assert.ok(props.expiresAt !== undefined && Math.abs(props.expiresAt - expiresAt) <= 2000, 'expiry kept to within 2 s');
      assert.equal(rb!.messages.find((x) => x.topic === `${p}/empty`)!.payload.length, 0);
    } finally {
      await c.close();
    }
  });

  test(`${name}: a/# receives a; odd characters in topics survive`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [, rb], p } = await cluster(2);
    try {
      await b!.subscribe(`${p}/a/#`);
      const odd = [`${p}/a`, `${p}/a/b.c`, `${p}/a/*`, `${p}/a/>`, `${p}/a/%2E`, `${p}/a/ sp ace`, `${p}/a//x`, `${p}/a/`, `${p}/a/ü/€`];
      for (const t of odd) await a!.publish(busMessage(t, t));
      await rb!.until(() => rb!.topics(p).length === odd.length, timeoutMs, 'every odd topic');
      assert.deepEqual(rb!.messages.map((m) => m.topic).sort(), [...odd].sort());
      for (const m of rb!.messages) assert.equal(str(m.payload), m.topic);
      await b!.subscribe(`${p}/x/+/y`);
      await a!.publish(busMessage(`${p}/x/./y`, 'dot level'));
      await a!.publish(busMessage(`${p}/x//y`, 'empty level'));
      await a!.publish(busMessage(`${p}/x/q/r/y`, 'two levels: no match'));
      await flushed(a!, rb!, `${p}/a/sentinel`);
      assert.deepEqual(rb!.topics(`${p}/x`).sort(), [`${p}/x//y`, `${p}/x/./y`].sort());
    } finally {
      await c.close();
    }
  });

  test(`${name}: $ topics are not matched by leading wildcards`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [, rb], p } = await cluster(2);
    try {
      await b!.subscribe('#');
      await b!.subscribe(`+/${p}`);
      await a!.publish(busMessage(`$${p}/${p}`, 'hidden'));
      await a!.publish(busMessage(`$SYS/${p}`, 'hidden'));
      await flushed(a!, rb!, `${p}/sentinel`);
      assert.deepEqual(rb!.messages.filter((m) => m.topic.startsWith('$')).map((m) => m.topic), []);
      await b!.subscribe(`$${p}/#`);
      await a!.publish(busMessage(`$${p}/${p}`, 'seen'));
      await rb!.until(() => rb!.topics(`$${p}`).length === 1, timeoutMs, 'the $ topic on a $ filter');
    } finally {
      await c.close();
    }
  });

  test(`${name}: retained set, replace, delete and snapshot with seq`, testTimeout, async () => {
    const { c, buses: [a, b, d], p } = await cluster(3);
    try {
      const r = (t: string, v: string): BusMessage => busMessage(`${p}/${t}`, v, { retain: true });
      await a!.publish(r('r/1', 'a'));
      await a!.publish(r('r/2', 'b'));
      await d!.publish(r('r/3/deep', 'c'));
      await d!.publish(r('r', 'parent'));
      const first = await b!.retained(`${p}/r/#`);
      assert.deepEqual(first.map((e) => e.topic).sort(), [`${p}/r`, `${p}/r/1`, `${p}/r/2`, `${p}/r/3/deep`]);
      for (const e of first) assert.ok(Number.isSafeInteger(e.seq) && e.seq > 0, `seq of ${e.topic} is positive`);
      const seqOf = (entries: typeof first, t: string): number => entries.find((e) => e.topic === `${p}/${t}`)!.seq;

      await a!.publish(r('r/1', 'a2'));
      await b!.publish(r('r/2', ''));
      const second = await d!.retained(`${p}/r/#`);
      assert.deepEqual(second.map((e) => e.topic).sort(), [`${p}/r`, `${p}/r/1`, `${p}/r/3/deep`], 'an empty retained payload deletes');
      assert.equal(str(second.find((e) => e.topic === `${p}/r/1`)!.payload), 'a2');
      assert.ok(seqOf(second, 'r/1') > seqOf(first, 'r/1'), 'a replacement has a larger seq');

      assert.deepEqual((await a!.retained(`${p}/r/1`)).map((e) => str(e.payload)), ['a2'], 'an exact filter');
      assert.deepEqual((await a!.retained(`${p}/+/1`)).map((e) => e.topic), [`${p}/r/1`], 'a + filter');
      assert.deepEqual(await a!.retained(`${p}/none/#`), [], 'nothing matches');

      const props = { contentType: 'text/plain', userProperties: { k: 'v' } };
      await a!.publish(busMessage(`${p}/withprops`, 'v', { retain: true, properties: props }));
      const [withProps] = await b!.retained(`${p}/withprops`);
      assert.equal(withProps!.properties?.contentType, 'text/plain');
      assert.deepEqual(withProps!.properties?.userProperties, { k: 'v' });

      await c.kill(0);
      assert.deepEqual((await b!.retained(`${p}/r/1`)).map((e) => str(e.payload)), ['a2'], 'retained values outlive the node that set them');
    } finally {
      await c.close();
    }
  });

  test(`${name}: retained values arrive live with a growing seq`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [, rb], p } = await cluster(2);
    try {
      await b!.subscribe(`${p}/#`);
      await a!.publish(busMessage(`${p}/live`, '1', { retain: true }));
      await a!.publish(busMessage(`${p}/live`, '2', { retain: true }));
      await a!.publish(busMessage(`${p}/plain`, 'p'));
      await a!.publish(busMessage(`${p}/live`, '', { retain: true }));
      await rb!.until(() => rb!.topics(p).length === 4, timeoutMs, 'four messages');
      const live = rb!.messages.filter((m) => m.topic === `${p}/live`);
      assert.deepEqual(live.map((m) => [str(m.payload), m.retain]), [['1', true], ['2', true], ['', true]], 'the deletion arrives live too');
      assert.ok(live[0]!.seq > 0 && live[1]!.seq > live[0]!.seq && live[2]!.seq > live[1]!.seq, 'seq grows per topic');
      assert.equal(rb!.messages.find((m) => m.topic === `${p}/plain`)!.seq, 0);
      // The live seq and the snapshot seq are one sequence: a joiner can merge them.
      await a!.publish(busMessage(`${p}/live`, '3', { retain: true }));
      await rb!.until(() => rb!.topics(p).length === 5, timeoutMs, 'the fifth message');
      const [snap] = await b!.retained(`${p}/live`);
      assert.equal(snap!.seq, rb!.messages.at(-1)!.seq);
      // The publisher learns its own retained write's seq (it never sees the message come back).
      const own = await a!.publish(busMessage(`${p}/live`, '4', { retain: true }));
      assert.ok(own > snap!.seq, 'publish resolves with the new, larger seq');
      const [after] = await b!.retained(`${p}/live`);
      assert.equal(after!.seq, own);
    } finally {
      await c.close();
    }
  });

  test(`${name}: a will is published exactly once by one survivor after a kill`, testTimeout, async () => {
    const { c, buses: [a, b, d], rec: [, rb, rd], p } = await cluster(3);
    try {
      await a!.setWill('conn-1', busMessage(`${p}/status/1`, 'offline', { retain: true, qos: 1 }));
      await a!.setWill('conn-2', busMessage(`${p}/status/2`, 'gone'));
      await a!.setWill('conn-3', busMessage(`${p}/status/3`, 'cleared'));
      await a!.setWill('conn-3', undefined);
      await a!.setWill('conn-2', busMessage(`${p}/status/2`, 'replaced'));
      await b!.setWill('conn-b', busMessage(`${p}/status/b`, 'b survives'));
      await c.kill(0);
      const all = (): OrphanWill[] => [...rb!.wills, ...rd!.wills].filter((w) => w.message.topic.startsWith(p));
      await rb!.until(() => all().length >= 2, timeoutMs, 'both wills claimed');
      await sleep(quietMs * 3);
      const wills = all().sort((x, y) => x.key.localeCompare(y.key));
      assert.deepEqual(wills.map((w) => [w.owner, w.key, w.message.topic, str(w.message.payload)]), [
        [a!.nodeId, 'conn-1', `${p}/status/1`, 'offline'],
        [a!.nodeId, 'conn-2', `${p}/status/2`, 'replaced'],
      ], 'each will once, the latest registration, none cleared');
      assert.equal(wills[0]!.message.retain, true);
      assert.equal(wills[0]!.message.qos, 1);
      void d;
    } finally {
      await c.close();
    }
  });

  test(`${name}: no will after a clean close`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [, rb], p } = await cluster(2);
    try {
      await a!.setWill('conn-1', busMessage(`${p}/status/1`, 'offline'));
      await a!.close();
      await b!.setWill('conn-b', busMessage(`${p}/status/b`, 'b'));
      await sleep(quietMs * 3);
      assert.deepEqual(rb!.wills.filter((w) => w.message.topic.startsWith(p)), []);
    } finally {
      await c.close();
    }
  });

  test(`${name}: state changes; publish rejected while down; interest back after recovery`, testTimeout, async () => {
    const { c, buses: [a, b], rec: [ra, rb], p } = await cluster(2);
    try {
      await b!.subscribe(`${p}/#`);
      await c.setDown(true);
      await ra!.until(() => a!.state === 'down' && ra!.states.includes('down'), timeoutMs, 'a down');
      await rb!.until(() => b!.state === 'down' && rb!.states.includes('down'), timeoutMs, 'b down');
      await assert.rejects(a!.publish(busMessage(`${p}/x`, 'lost')), (err: Error) => err.name === 'BusUnavailableError');
      await assert.rejects(a!.retained(`${p}/#`), (err: Error) => err.name === 'BusUnavailableError');
      // Interest and wills changed while down are recorded and applied on reconnect.
      // (Their promises may stay pending until the bus is back, so they are awaited after.)
      const heldWhileDown = b!.subscribe(`${p}2/#`);
      await c.setDown(false);
      await heldWhileDown;
      await ra!.until(() => a!.state === 'up' && ra!.states.at(-1) === 'up', timeoutMs, 'a up');
      await rb!.until(() => b!.state === 'up' && rb!.states.at(-1) === 'up', timeoutMs, 'b up');
      // Up means interest is in sync again: no sleep before publishing.
      await a!.publish(busMessage(`${p}/y`, 'after'));
      await a!.publish(busMessage(`${p}2/z`, 'after'));
      await rb!.until(() => rb!.topics(p).length === 2, timeoutMs, 'both filters deliver after recovery');
      assert.deepEqual(rb!.topics(p).sort(), [`${p}/y`, `${p}2/z`]);
    } finally {
      await c.close();
    }
  });
}
