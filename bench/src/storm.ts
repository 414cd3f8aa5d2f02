/**
 * Reconnect storm: `n` SDK clients connected and subscribed; the broker is killed
 * (SIGKILL, so every connection drops at once) and restarted on the same port;
 * the parent publishes one retained message per client topic at once; measured:
 * time from the kill until every client has received its message (resubscribed),
 * and the broker's peak CPU share (100 ms samples) and peak RSS meanwhile.
 */
import { fileURLToPath } from 'node:url';
import { Gen } from './control.js';
import { cpuSeconds, freePort, rssBytes, spawnChild } from './proc.js';
import { GEN_CPU, type Target } from './peers.js';
import { round, type Row } from './scenarios.js';
import { openLink } from './wire/index.js';

const STORM_GEN = fileURLToPath(new URL('./storm-gen.js', import.meta.url));

export async function storm(t: Target, n: number, run: number): Promise<Row> {
  const port = await freePort();
  let broker = await t.start({ port });
  const gen = new Gen(spawnChild(process.execPath, [STORM_GEN], { cpu: GEN_CPU, ipc: true }), 'storm');
  try {
    const url = `ws://127.0.0.1:${port}/ws`;
    const opened = await gen.request({ t: 'open', url, n } as never, 'opened', 120_000);
    const t0 = Number(process.hrtime.bigint());
    broker.child.proc.kill('SIGKILL');
    await broker.child.exited;
    broker = await t.start({ port });
    const pid = broker.child.pid;
    let peakShare = 0;
    let peakRss = 0;
    let lastCpu = cpuSeconds(pid);
    let lastT = performance.now();
    const sampler = setInterval(() => {
      const c = cpuSeconds(pid);
      const now = performance.now();
      peakShare = Math.max(peakShare, (c - lastCpu) / ((now - lastT) / 1000));
      peakRss = Math.max(peakRss, rssBytes(pid));
      lastCpu = c;
      lastT = now;
    }, 100);
    try {
      const pub = await openLink(broker.ep);
      for (let i = 0; i < n; i++) pub.publish(`storm/${i}`, Buffer.from([0x01]), true);
      const all = await gen.request({ t: 'await-all', timeoutMs: 60_000 } as never, 'all', 70_000);
      pub.close();
      return {
        scenario: 'storm', target: t.id, label: t.label, run, clients: opened.n as number,
        resubscribed: all.received as number, complete: all.complete as boolean,
        resubscribedMs: round(((all.at as number) - t0) / 1e6, 1),
        peakCpuShare: round(peakShare, 2), peakRssMB: round(peakRss / 2 ** 20, 1),
      };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    await gen.close();
    await broker.stop();
  }
}
