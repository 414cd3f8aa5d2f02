/**
 * A Server-Sent Events reader for tests of `GET /api/subscribe` (PROTOCOL.md §10), on node:http:
 * parses the stream as the EventSource spec does (fields `event`, `data`, `id`; comments ignored)
 * and keeps every event. `pause()` stops reading the socket (a stalled reader).
 */
import { request, Agent, type IncomingMessage } from 'node:http';

export interface SseEvent {
  /** `message` when the stream named none (live and replayed messages). */
  event: string;
  data: string;
  /** The `id:` of this event, if it had one. */
  id: string | undefined;
}

/** One agent for every stream of a test process: no pooling limit (1,000 streams at once). */
const agent = new Agent({ keepAlive: false, maxSockets: Infinity });

export class SseStream {
  readonly events: SseEvent[] = [];
  /** Heartbeat and probe comments seen. */
  comments = 0;
  ended = false;
  private buffer = '';
  private waiters: (() => void)[] = [];

  private constructor(readonly res: IncomingMessage) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => this.feed(chunk));
    const end = (): void => {
      this.ended = true;
      this.wake();
    };
    res.on('end', end);
    res.on('close', end);
    res.on('error', end);
  }

  /** Opens a stream; resolves with it on 200, rejects with the status and body otherwise. */
  static open(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
    return new Promise((resolve, reject) => {
      const req = request(url, { agent, headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
        if (res.statusCode !== 200) {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
          return;
        }
        resolve(new SseStream(res));
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** Parsed `data` of every event named `event` (`message` for messages). */
  data(event = 'message'): Record<string, unknown>[] {
    return this.events.filter((e) => e.event === event).map((e) => JSON.parse(e.data) as Record<string, unknown>);
  }

  /** Resolves once `predicate` holds (checked after every event), rejects after `timeoutMs`. */
  async until(predicate: (s: SseStream) => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this)) {
      if (this.ended) throw new Error(`stream ended before ${what}: ${JSON.stringify(this.events.slice(-5))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the event named `event` and returns the events up to it. */
  async untilEvent(event: string, timeoutMs?: number): Promise<void> {
    await this.until((s) => s.events.some((e) => e.event === event), `event ${event}`, timeoutMs);
  }

  /** Stops reading: the broker's writes back up in the socket buffers. */
  pause(): void {
    this.res.pause();
  }

  close(): void {
    this.res.destroy();
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    let event = '';
    let data: string[] = [];
    let id: string | undefined;
    let consumed = 0;
    // Events end with a blank line; keep an incomplete one for the next chunk.
    while ((nl = this.buffer.indexOf('\n\n', consumed)) >= 0) {
      const block = this.buffer.slice(consumed, nl);
      consumed = nl + 2;
      event = '';
      data = [];
      id = undefined;
      let fields = 0;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          this.comments++;
          continue;
        }
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (name === 'event') event = value;
        else if (name === 'data') data.push(value);
        else if (name === 'id') id = value;
        else continue;
        fields++;
      }
      if (fields > 0 && data.length > 0) this.events.push({ event: event || 'message', data: data.join('\n'), id });
    }
    this.buffer = this.buffer.slice(consumed);
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
