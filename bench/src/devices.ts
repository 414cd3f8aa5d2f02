/**
 * The device mix (issue 20): the workload Topicast is for. D MQTT devices over TCP, each
 * publishing one reading per second to `devices/<id>/<sensor>` (retained), evenly spread
 * over the second; A dashboards subscribed to `devices/#` and S dashboards each subscribed
 * to one device (`devices/<id>/#`, ids 0..S-1). Every reading carries its send time, so
 * each delivery to a dashboard is timed end to end.
 *
 * Per broker, the same run:
 *   Topicast  devices MQTT 3.1.1 TCP, dashboards native WS (one broker process);
 *   Mosquitto devices MQTT TCP, dashboards MQTT over WS (one mosquitto process);
 *   NATS      devices NATS TCP, dashboards NATS over WS (subjects devices.<id>.<sensor>;
 *             NATS keeps no retained values, so its row does the same work without them).
 * Reported: broker CPU share and RSS over the measured window, deliveries/s, and latency
 * p50/p99/p99.9/max for the `#` dashboards and for the single-device ones, with deliveries
 * missing 0.5 s after the end.
 */
import { Gen } from './control.js';
import { coreBusySeconds, cpuSeconds, rssBytes, sleep } from './proc.js';
import { BROKER_CPU, GEN_CPU, type Target } from './peers.js';
import { round, selfCpu, type Row, type Timing } from './scenarios.js';
import type { Endpoint } from './wire/index.js';

export interface Mix {
  devices: number;
  allDashboards: number;
  singleDashboards: number;
}

export const DEVICE_MIX: Mix = { devices: 10_000, allDashboards: 50, singleDashboards: 200 };

/** Which endpoints of a running target the devices and the dashboards use. */
const WIRES: Record<string, { devices: string; dashboards: string; label: string }> = {
  'topicast-mqtt': { devices: 'mqtt/tcp', dashboards: 'native/ws', label: 'Topicast (devices MQTT TCP, dashboards native WS)' },
  'mosquitto-tcp': { devices: 'mqtt/tcp', dashboards: 'mqtt/ws', label: 'Mosquitto (devices MQTT TCP, dashboards MQTT over WS)' },
  'nats-tcp': { devices: 'nats/tcp', dashboards: 'nats/ws', label: 'NATS (devices TCP, dashboards WS; no retained)' },
};

export function deviceMixUnavailable(t: Target): string | null {
  return WIRES[t.id] ? null : `${t.id}: the device mix runs on topicast-mqtt, mosquitto-tcp and nats-tcp`;
}

/** A latency quantile from a generator; null (not 0) when no delivery was timed in the window. */
const ms = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? round(v, 3) : null);

export async function deviceMix(t: Target, mix: Mix, run: number, timing: Timing): Promise<Row> {
  const w = WIRES[t.id]!;
  const running = await t.start({ nofile: mix.devices + mix.allDashboards + mix.singleDashboards + 2000 });
  const devs = Gen.start('devices', GEN_CPU, { nofile: mix.devices + 2000 });
  const all = Gen.start('dash-all', GEN_CPU);
  const one = Gen.start('dash-one', GEN_CPU);
  const gens = [devs, all, one];
  try {
    const dev: Endpoint = running.eps[w.devices]!;
    const dash: Endpoint = running.eps[w.dashboards]!;
    const perSec = mix.devices; // one reading per device per second
    const samplesAll = Math.ceil(perSec * mix.allDashboards * (timing.measureMs / 1000) * 1.2) + 10_000;
    await all.request({ t: 'open', ep: dash, count: mix.allDashboards, topic: 'devices/#', subscribe: 'devices/#', track: 'latency', maxSamples: samplesAll, concurrency: 25 }, 'opened', 60_000);
    await one.request({ t: 'open', ep: dash, count: mix.singleDashboards, topic: 'devices/{i}/#', subscribe: 'devices/{i}/#', track: 'latency', maxSamples: 100_000, concurrency: 50 }, 'opened', 60_000);
    const t0 = performance.now();
    await devs.request({ t: 'open', ep: dev, count: mix.devices, topic: 'devices/{i}/{s}', concurrency: 100 }, 'opened', 120_000);
    const connectMs = performance.now() - t0;
    const runMs = timing.warmMs + timing.measureMs;
    const done = devs.request({ t: 'devices-run', perLinkPerSec: 1, durationMs: runMs, payloadBytes: 40, retain: true, counted: mix.singleDashboards }, 'devices-done', runMs + 20_000);
    await sleep(timing.warmMs);
    await Promise.all([all.request({ t: 'latency-reset' }, 'latency-reset'), one.request({ t: 'latency-reset' }, 'latency-reset')]);
    const c0 = cpuSeconds(running.child.pid);
    const k0 = coreBusySeconds();
    const g0 = gens.reduce((s, g) => s + g.cpu(), 0) + selfCpu();
    const w0 = performance.now();
    let rssMax = 0;
    const sampler = setInterval(() => {
      rssMax = Math.max(rssMax, rssBytes(running.child.pid));
    }, 250);
    await sleep(timing.measureMs);
    clearInterval(sampler);
    const c1 = cpuSeconds(running.child.pid);
    const k1 = coreBusySeconds();
    const g1 = gens.reduce((s, g) => s + g.cpu(), 0) + selfCpu();
    const sec = (performance.now() - w0) / 1000;
    const rss = rssBytes(running.child.pid);
    const finished = await done;
    await sleep(500); // stragglers
    const [la, lo] = await Promise.all([all.request({ t: 'latency' }, 'latency', 30_000), one.request({ t: 'latency' }, 'latency', 30_000)]);
    // Connections that closed during the run (a broker that drops devices or dashboards shows here).
    const [ma, mo, md] = await Promise.all([all, one, devs].map((g) => g.request({ t: 'mark' }, 'mark')));
    const sent = finished.sent as number;
    const foreign = Math.max(0, (k1[BROKER_CPU]! - k0[BROKER_CPU]! - (c1 - c0)) / sec, (k1[GEN_CPU]! - k0[GEN_CPU]! - (g1 - g0)) / sec);
    const receivedAll = la.received as number;
    const receivedOne = lo.received as number;
    return {
      scenario: 'devices', target: t.id, label: w.label, run,
      devices: mix.devices, allDashboards: mix.allDashboards, singleDashboards: mix.singleDashboards,
      deviceConnectSec: round(connectMs / 1000, 2),
      published: sent, publishedPerSec: Math.round(sent / (runMs / 1000)),
      deliveriesPerSec: Math.round(((la.samples as number) + (lo.samples as number)) / sec),
      brokerCpuShare: round((c1 - c0) / sec, 3), rssMB: round(rss / 2 ** 20, 1), rssMaxMB: round(Math.max(rss, rssMax) / 2 ** 20, 1),
      p50Ms: ms(la.p50), p99Ms: ms(la.p99), p999Ms: ms(la.p999), maxMs: ms(la.max),
      lostAll: sent * mix.allDashboards - receivedAll,
      singleP50Ms: ms(lo.p50), singleP99Ms: ms(lo.p99), singleP999Ms: ms(lo.p999),
      lostSingle: (finished.counted as number) - receivedOne,
      closedDashboards: (ma!.closed as number) + (mo!.closed as number), closedDevices: md!.closed as number,
      genCpuShare: round((g1 - g0) / sec, 3), foreignCpuShare: round(foreign, 2),
    };
  } finally {
    await Promise.all(gens.map((g) => g.close()));
    await running.stop();
  }
}
