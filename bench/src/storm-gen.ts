/**
 * Reconnect-storm client process: N real SDK clients (`connect` from 'topicast'),
 * each subscribed to its own topic storm/<i>. After the parent restarts the broker
 * and publishes one retained message per topic, each client receives it exactly
 * once, live or from the retained store on resubscription; the time until all
 * have received it is the time until all are resubscribed.
 */
import { connect, type Client } from 'topicast';

const clients: Client[] = [];
let received = 0;
let target = 0;
let done: (() => void) | null = null;

async function open(url: string, n: number): Promise<void> {
  let next = 0;
  const seen = new Uint8Array(n);
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const c = await connect(url, { reconnect: { minDelayMs: 500, maxDelayMs: 5000 }, heartbeatMs: 60_000 });
      clients[i] = c;
      await c.subscribe(`storm/${i}`, function onStormDelivery() {
        if (seen[i]) return;
        seen[i] = 1;
        if (++received === target) done?.();
      });
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
}

process.on('message', (c: { t: string; url?: string; n?: number; timeoutMs?: number }) => {
  const send = (m: object): void => void process.send!(m);
  if (c.t === 'open') {
    open(c.url!, c.n!).then(() => send({ t: 'opened', n: clients.length }), (e: Error) => send({ t: 'error', message: e.message }));
  } else if (c.t === 'await-all') {
    target = clients.length;
    const all = received >= target ? Promise.resolve() : new Promise<void>((r) => (done = r));
    const timer = setTimeout(() => send({ t: 'all', received, at: Number(process.hrtime.bigint()), complete: false }), c.timeoutMs ?? 60_000);
    void all.then(() => {
      clearTimeout(timer);
      send({ t: 'all', received, at: Number(process.hrtime.bigint()), complete: true });
    });
  } else if (c.t === 'close') {
    void Promise.allSettled(clients.map((x) => x.close())).then(() => {
      send({ t: 'closed' });
      setTimeout(() => process.exit(0), 100);
    });
  }
});
process.on('disconnect', () => process.exit(0));
