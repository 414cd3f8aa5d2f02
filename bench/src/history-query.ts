/**
 * History queries (issue 22, PROTOCOL.md §4.8), measured on one broker process:
 * - 100,000 messages of 64 bytes on 100 history topics;
 * - broker CPU per returned message: native HISTORY in pages of 10,000 (100,000 rows), against a
 *   resume replay of the same 100,000 messages in the same process (the README's replay figure);
 * - an HTTP export of all 100,000 rows (CSV and NDJSON): broker CPU per row, and the broker's RSS
 *   (sampled every 10 ms) before and at its peak, read at full speed and by a slow reader
 *   (64 KiB every 20 ms), to show the export is streamed, not held.
 *
 * Usage: npm run build && node bench/dist/history-query.js   (about 30 s; prints one JSON object)
 */
import { get } from 'node:http';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { decodeServerFrame, encodeFrame, Op, SUBPROTOCOL, type ServerFrame } from 'topicast/protocol';
import { cpuSeconds, freePort, rssBytes, spawnChild, waitFor } from './proc.js';

const BROKER = fileURLToPath(new URL('../../broker/dist/main.js', import.meta.url));
const COUNT = 100_000;
const TOPICS = 100;
const PAGE = 10_000;

const round = (n: number, d = 2): number => Math.round(n * 10 ** d) / 10 ** d;

class Link {
  private waiting: ((f: ServerFrame) => boolean)[] = [];
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const f = decodeServerFrame(data);
      this.waiting = this.waiting.filter((w) => !w(f));
    });
  }

  static open(url: string): Promise<Link> {
    const ws = new WebSocket(url, SUBPROTOCOL, { perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Link(ws)));
      ws.once('error', reject);
    });
  }

  send(frame: Parameters<typeof encodeFrame>[0]): void {
    this.ws.send(encodeFrame(frame));
  }

  /** Calls `on` for every frame until it returns true. */
  until(on: (f: ServerFrame) => boolean): Promise<void> {
    return new Promise((resolve) => this.waiting.push((f) => (on(f) ? (resolve(), true) : false)));
  }

  close(): void {
    this.ws.close();
  }
}

async function main(): Promise<void> {
  const port = await freePort();
  const child = spawnChild(process.execPath, [
    BROKER, '--host', '127.0.0.1', '--port', String(port), '--mqtt-port', '0', '--sys-interval-sec', '0', '--log-level', 'warn',
    '--history-filters', 'q/#', '--history-max-messages', String(COUNT), '--history-max-bytes', String(1 << 30),
    '--history-max-query-bytes', String(1 << 30), '--history-queries-per-sec', '0', '--max-publishes-per-sec', '0',
  ], { cpu: 0 });
  const url = `ws://127.0.0.1:${port}/ws`;
  await waitFor('the broker', async () => {
    try {
      (await Link.open(url)).close();
      return true;
    } catch {
      return false;
    }
  }, 10_000);
  try {
    const pid = child.pid;
    const link = await Link.open(url);
    const payload = Buffer.alloc(64, 0x61);
    for (let i = 0; i < COUNT; i++) link.send({ op: Op.publish, id: i === COUNT - 1 ? 1 : 0, topic: `q/t${i % TOPICS}`, payload, flags: 0 });
    await link.until((f) => f.op === Op.ack && f.id === 1);
    const rssFilled = rssBytes(pid);

    // Native HISTORY, pages of 10,000 by offsets.
    let rows = 0;
    let from = 1;
    const q0 = cpuSeconds(pid);
    const t0 = performance.now();
    for (let id = 10; rows < COUNT; id++) {
      link.send({ op: Op.history, id, filter: 'q/#', options: { fromOffset: from, limit: PAGE } });
      await link.until((f) => {
        if (f.op === Op.historyMessage && f.id === id) {
          rows++;
          from = f.offset + 1;
        }
        return f.op === Op.historyEnd && f.id === id;
      });
    }
    const queryMs = performance.now() - t0;
    const q1 = cpuSeconds(pid);

    // The replay figure in the same process: resume q/# from offset 0.
    let epoch = '';
    link.send({ op: Op.subscribe, id: 2, filters: ['nothing/here'], options: {} });
    await link.until((f) => {
      if (f.op === Op.ack && f.id === 2) epoch = f.result!.epoch!;
      return f.op === Op.snapshotEnd && f.id === 2;
    });
    let replayed = 0;
    const r0 = cpuSeconds(pid);
    link.send({ op: Op.subscribe, id: 3, filters: ['q/#'], options: { resume: { epoch, offset: 0 } } });
    await link.until((f) => {
      if (f.op === Op.delivery) replayed++;
      return f.op === Op.snapshotEnd && f.id === 3;
    });
    const r1 = cpuSeconds(pid);
    link.close();

    const exportRun = async (format: string, slow: boolean) => {
      const before = rssBytes(pid);
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 10);
      const c0 = cpuSeconds(pid);
      const e0 = performance.now();
      let bytes = 0;
      let lines = 0;
      await new Promise<void>((resolve, reject) => {
        get(`http://127.0.0.1:${port}/api/history/q%2F%23?format=${format}&limit=${COUNT}`, (res) => {
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            for (const b of chunk) if (b === 0x0a) lines++;
            if (slow) {
              res.pause();
              setTimeout(() => res.resume(), 20);
            }
          });
          res.on('end', resolve);
          res.on('error', reject);
        }).on('error', reject);
      });
      const ms = performance.now() - e0;
      const c1 = cpuSeconds(pid);
      clearInterval(sampler);
      return {
        format, reader: slow ? 'slow (pauses 20 ms per chunk read)' : 'full speed', lines, bodyMB: round(bytes / 2 ** 20, 1), ms: Math.round(ms),
        cpuUsPerRow: round(((c1 - c0) / COUNT) * 1e6), rssBeforeMB: round(before / 2 ** 20, 1), rssPeakMB: round(peak / 2 ** 20, 1),
        rssPeakOverBeforeMB: round((peak - before) / 2 ** 20, 1),
      };
    };
    const exports = [await exportRun('csv', false), await exportRun('ndjson', false), await exportRun('csv', true)];
    console.log(JSON.stringify({
      messages: COUNT, topics: TOPICS, payloadBytes: 64, rssFilledMB: round(rssFilled / 2 ** 20, 1),
      nativeQuery: { rows, pages: Math.ceil(COUNT / PAGE), ms: Math.round(queryMs), rowsPerSec: Math.round(rows / (queryMs / 1000)), cpuUsPerRow: round(((q1 - q0) / rows) * 1e6) },
      replay: { replayed, cpuUsPerMessage: round(((r1 - r0) / replayed) * 1e6) },
      httpExport: exports,
    }, null, 2));
  } finally {
    await child.stop();
  }
}

await main();
