/**
 * Load generator for the persistence scenarios (persist.ts), one process pinned to the generator
 * core, driven over IPC. mqtt.js clients over MQTT 3.1.1 TCP:
 * - a publisher keeping `window` QoS 1 PUBLISHes outstanding, timing each from send to PUBACK
 *   (the acknowledgement is what persistence delays: it waits for the fsync);
 * - for the session workload, a persistent subscriber (clean session 0, QoS 1) acknowledging
 *   every delivery, so each publish is stored in its session and removed again.
 * Commands: open → opened, run → running, record → recording (starts a measured window),
 * mark → mark {acked, delivered, p50Ms, p99Ms} (ends it), stop → stopped, close → closed.
 */
import mqtt from 'mqtt';

type Command =
  | { t: 'open'; port: number; workload: 'retained' | 'session' }
  | { t: 'run'; window: number; payloadBytes: number; topics: number }
  | { t: 'record' }
  | { t: 'mark' }
  | { t: 'stop' }
  | { t: 'close' };

const reply = (m: Record<string, unknown>): void => void process.send?.(m);

let pub: mqtt.MqttClient | undefined;
let sub: mqtt.MqttClient | undefined;
let workload: 'retained' | 'session' = 'retained';
let running = false;
let outstanding = 0;
let acked = 0;
let delivered = 0;
let seq = 0;
let recording = false;
let samples: number[] = [];
let ackedAtRecord = 0;
let deliveredAtRecord = 0;
let stopped: (() => void) | undefined;

function connect(port: number, options: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, keepalive: 0, ...options });
}

async function open(c: Extract<Command, { t: 'open' }>): Promise<void> {
  workload = c.workload;
  if (workload === 'session') {
    sub = await connect(c.port, { clientId: 'bench-persistent-sub', clean: false });
    sub.on('message', function countDelivery() {
      delivered++;
    });
    await sub.subscribeAsync('bench/p/#', { qos: 1 });
  }
  pub = await connect(c.port, { clientId: `bench-pub-${process.pid}`, clean: true });
  reply({ t: 'opened' });
}

function run(c: Extract<Command, { t: 'run' }>): void {
  const payload = Buffer.alloc(c.payloadBytes, 0x70);
  const retain = workload === 'retained';
  running = true;
  const sendOne = (): void => {
    const i = seq++;
    const topic = retain ? `bench/r/${i % c.topics}` : 'bench/p/x';
    const t0 = performance.now();
    outstanding++;
    pub!.publish(topic, payload, { qos: 1, retain }, function onPuback(err) {
      outstanding--;
      if (err) {
        reply({ t: 'error', message: `publish: ${err.message}` });
        return;
      }
      acked++;
      if (recording) samples.push(performance.now() - t0);
      if (running) sendOne();
      else if (outstanding === 0) stopped?.();
    });
  };
  for (let k = 0; k < c.window; k++) sendOne();
  reply({ t: 'running' });
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

process.on('message', (c: Command) => {
  switch (c.t) {
    case 'open':
      open(c).catch((err: Error) => reply({ t: 'error', message: err.message }));
      return;
    case 'run':
      return run(c);
    case 'record':
      samples = [];
      ackedAtRecord = acked;
      deliveredAtRecord = delivered;
      recording = true;
      return reply({ t: 'recording' });
    case 'mark': {
      recording = false;
      const sorted = samples.sort((a, b) => a - b);
      return reply({ t: 'mark', acked: acked - ackedAtRecord, delivered: delivered - deliveredAtRecord, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99) });
    }
    case 'stop': {
      running = false;
      const done = (): void => reply({ t: 'stopped', acked });
      if (outstanding === 0) return done();
      stopped = done;
      return;
    }
    case 'close':
      Promise.all([pub?.endAsync(true), sub?.endAsync(true)]).finally(() => {
        reply({ t: 'closed' });
        setTimeout(() => process.exit(0), 50);
      });
      return;
  }
});
