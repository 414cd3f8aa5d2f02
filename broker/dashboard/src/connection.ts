/**
 * The dashboard's one SDK client. It subscribes to `#` and to `$SYS/broker/#`
 * (a filter starting with a wildcard never matches `$` topics) with the `raw`
 * codec: the explorer shows each payload's bytes and size as well as its value,
 * which decode.ts reads by the content type it came with (the SDK's own rule).
 * The SDK reconnects with backoff and restores both
 * subscriptions; the broker then re-sends the retained snapshot.
 */
import { connect, type Client, type HistoryOptions } from 'topicast';
import type { PublishTarget } from './publish.js';

/** 15 s: above the agent's default program timeout (10 s), so its own timeout answer arrives first. */
const COMMAND_TIMEOUT_MS = 15_000;

export type LinkState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface LinkHandlers {
  onMessage(topic: string, payload: Uint8Array, contentType: string | undefined, retained: boolean): void;
  onState(state: LinkState): void;
  onError(message: string): void;
}

/** The WebSocket URL served next to this page: ws(s)://<host>/ws. */
export function defaultUrl(loc: Location = location): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

/** One stored message of a topic (PROTOCOL.md §4.8): its bytes, content type and publish time. */
export interface HistoryRow {
  payload: Uint8Array;
  contentType: string | undefined;
  /** Publish time (broker receive time, ms since the epoch). */
  ts: number;
}

/**
 * The HTTP URL of a topic's CSV export next to the WebSocket `url` (`ws://host/ws` →
 * `http://host/api/history/<topic>?format=csv`), for the last `windowSec` seconds.
 */
export function csvExportUrl(url: string, topic: string, windowSec: number, nowMs: number): string {
  const u = new URL(url);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.pathname = `/api/history/${encodeURIComponent(topic)}`;
  u.search = `?format=csv&since=${nowMs - windowSec * 1000}`;
  return u.href;
}

export class Link implements PublishTarget {
  private client: Client | undefined;
  private closed = false;
  /** Settles once both subscriptions are acknowledged (rejects if the broker refuses one). */
  ready: Promise<void> = Promise.resolve();

  private constructor(private readonly handlers: LinkHandlers) {}

  /**
   * Starts connecting (retrying in the background) and subscribing; resolves at once.
   * `ready` tells when both subscriptions are acknowledged.
   */
  static async open(url: string, token: string, handlers: LinkHandlers): Promise<Link> {
    const link = new Link(handlers);
    await link.start(url, token);
    return link;
  }

  get state(): LinkState {
    return this.client?.state ?? 'connecting';
  }

  async publish(topic: string, payload: Uint8Array, contentType: string, retain: boolean): Promise<'sent' | 'queued'> {
    const client = this.client;
    if (!client || this.closed) throw new Error('not connected');
    if (client.state !== 'open') {
      // The SDK queues it (bounded) and sends it on reconnect; an ack would wait for that.
      await client.publish(topic, payload, { retain, contentType });
      return 'queued';
    }
    await client.publish(topic, payload, { retain, ack: true, contentType });
    return 'sent';
  }

  /**
   * Sends a command to a device's actuator and resolves with its answer (request/reply, PROTOCOL.md
   * §5.2); rejects with the broker's refusal (not authorized) or a timeout.
   */
  async request(topic: string, value: unknown): Promise<unknown> {
    const client = this.client;
    if (!client || this.closed) throw new Error('not connected');
    return client.request(topic, value, { codec: 'auto', timeoutMs: COMMAND_TIMEOUT_MS });
  }

  /** A topic's stored messages (newest first, at most `limit`); rejects when the broker keeps none or the link is down. */
  async history(topic: string, options: HistoryOptions): Promise<HistoryRow[]> {
    const client = this.client;
    if (!client || this.closed) throw new Error('not connected');
    return client.history(topic, { ...options, codec: 'raw' });
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    if (client) await client.close();
  }

  private async start(url: string, token: string): Promise<void> {
    const h = this.handlers;
    const client = await connect(url, { codec: 'raw', token: token || undefined, wait: false });
    this.client = client;
    client.on('state', (state) => {
      if (!this.closed) h.onState(state);
    });
    client.on('error', (err) => {
      if (!this.closed) h.onError(err instanceof Error ? err.message : String(err));
    });
    h.onState(client.state);
    const deliver = (_value: unknown, meta: { topic: string; retained: boolean; payload: Uint8Array; contentType: string | undefined }): void => {
      if (!this.closed) h.onMessage(meta.topic, meta.payload, meta.contentType, meta.retained);
    };
    this.ready = Promise.all([client.subscribe('#', deliver), client.subscribe('$SYS/broker/#', deliver)]).then(() => undefined);
  }
}
