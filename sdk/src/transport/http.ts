/**
 * The native protocol over plain HTTP, for when a WebSocket cannot be opened (broker
 * PROTOCOL.md §9.5): the broker's frames arrive on one streamed `GET /api/session` response
 * (Server-Sent Events, one base64 frame per event), the client's frames go out as
 * `POST /api/session/<id>` requests, one at a time and in order (several queued frames share
 * one request), and a clean close is `DELETE /api/session/<id>?code=C`. It is a `Transport`
 * like the WebSocket ones, so the client above it is the same: same frames, same API.
 *
 * Uses only `fetch` with a streamed body (browsers, Node 18+). The token travels as
 * `Authorization: Bearer` where the request is same-origin (or outside a browser), else as
 * `?token=` (a cross-origin header would need a CORS preflight the broker does not answer); POSTs
 * carry no content type for the same reason.
 */
import type { Transport, TransportHandlers, TransportSocket } from './types.js';

const TOKEN_ENTRY = 'topicast.token.';

/** `ws[s]://host/prefix/ws` → `http[s]://host/prefix/api/session`. */
export function sessionUrl(wsUrl: string): URL {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  u.pathname = `${u.pathname.replace(/\/ws\/?$/, '').replace(/\/$/, '')}/api/session`;
  u.search = '';
  u.hash = '';
  return u;
}

function tokenOf(protocols: string[]): string | undefined {
  const entry = protocols.find((p) => p.startsWith(TOKEN_ENTRY));
  if (entry === undefined) return undefined;
  const b64 = entry.slice(TOKEN_ENTRY.length).replace(/-/g, '+').replace(/_/g, '/');
  return new TextDecoder().decode(bytesOfBase64(b64.padEnd(Math.ceil(b64.length / 4) * 4, '=')));
}

function bytesOfBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function sameOrigin(url: URL): boolean {
  const here = (globalThis as { location?: { origin?: string } }).location?.origin;
  return here === undefined || here === url.origin;
}

/**
 * Opens a native-protocol session over HTTP streaming (what the client falls back to).
 * @example
 * const client = await connect('ws://localhost:8080/ws', { via: 'sse' }); // uses this transport
 */
export const httpTransport: Transport = function openHttpSession(url: string, protocols: string[], on: TransportHandlers): TransportSocket {
  return new HttpSession(url, protocols, on);
};

class HttpSession implements TransportSocket {
  bufferedAmount = 0;
  private readonly base: URL;
  private readonly headers: Record<string, string> = {};
  private readonly stream = new AbortController();
  private id: string | undefined;
  private queue: Uint8Array[] = [];
  private posting = false;
  private closing: { code: number; reason: string } | undefined;
  private closeCode: number | undefined;
  private closeReason = '';
  private ended = false;

  constructor(url: string, protocols: string[], private readonly on: TransportHandlers) {
    this.base = sessionUrl(url); // throws on a malformed URL, as the WebSocket constructor does
    const token = tokenOf(protocols);
    const get = new URL(this.base);
    if (token !== undefined) {
      if (sameOrigin(this.base)) this.headers.Authorization = `Bearer ${token}`;
      else get.searchParams.set('token', token);
    }
    void this.read(get);
  }

  send(data: Uint8Array): void {
    if (this.ended || this.closing) return;
    this.queue.push(data);
    this.bufferedAmount += data.length;
    void Promise.resolve().then(() => this.pump());
  }

  close(code: number, reason: string): void {
    if (this.ended || this.closing) return;
    this.closing = { code, reason };
    void Promise.resolve().then(() => this.pump());
  }

  terminate(): void {
    if (this.ended) return;
    setTimeout(() => this.finish(1006, 'terminated'), 0);
    this.stream.abort();
  }

  /** The event stream: `session` names the session (the transport is open), each other event is one frame. */
  private async read(get: URL): Promise<void> {
    try {
      const res = await fetch(get, { headers: { Accept: 'text/event-stream', ...this.headers }, signal: this.stream.signal, cache: 'no-store' });
      if (res.status !== 200 || res.body === null) {
        const body = await res.text().catch(() => '');
        const message = /"message":"([^"]*)"/.exec(body)?.[1] ?? `HTTP ${res.status}`;
        this.on.error(new Error(`${get.origin}${get.pathname}: ${message}`));
        // 401/403 are the broker's refusal of the token (close 4001/4003 on a WebSocket); anything else a failed open.
        return this.finish(res.status === 401 ? 4001 : res.status === 403 ? 4003 : 1006, message);
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let text = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = text.indexOf('\n\n')) >= 0) {
          this.event(text.slice(0, end));
          text = text.slice(end + 2);
        }
      }
      this.finish(this.closeCode ?? 1006, this.closeReason);
    } catch (err) {
      if (!this.ended) this.on.error(err as Error);
      this.finish(this.closeCode ?? 1006, this.closeReason);
    }
  }

  private event(block: string): void {
    let name = '';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) name = line.slice(7);
      else if (line.startsWith('data: ')) data = line.slice(6);
    }
    if (this.ended) return;
    if (name === 'session') {
      this.id = (JSON.parse(data) as { id: string }).id;
      this.on.open();
      this.pump();
    } else if (name === 'close') {
      const c = JSON.parse(data) as { code: number; reason: string };
      this.closeCode = c.code;
      this.closeReason = c.reason;
    } else if (name === '' && data !== '') {
      this.on.message(bytesOfBase64(data));
    }
  }

  /** Sends what is queued in one POST, one request at a time (order); then the close, if asked. */
  private pump(): void {
    if (this.posting || this.ended || this.id === undefined) return;
    if (this.queue.length === 0) {
      if (this.closing) void this.sendClose(this.closing);
      return;
    }
    const frames = this.queue;
    this.queue = [];
    let size = 0;
    for (const f of frames) size += 4 + f.length;
    const body = new Uint8Array(size);
    let at = 0;
    for (const f of frames) {
      new DataView(body.buffer).setUint32(at, f.length);
      body.set(f, at + 4);
      at += 4 + f.length;
    }
    this.posting = true;
    const sent = size - 4 * frames.length;
    fetch(`${this.base.href}/${this.id}`, { method: 'POST', body, headers: this.headers, cache: 'no-store' }).then(
      (res) => {
        this.posting = false;
        this.bufferedAmount -= sent;
        if (res.status !== 204) throw new Error(`POST ${this.base.pathname}: HTTP ${res.status}`);
        this.pump();
      },
      (err: unknown) => {
        this.posting = false;
        throw err;
      },
    ).catch((err: unknown) => {
      // The session is gone (broker restarted, or another node): the link is lost.
      this.on.error(err as Error);
      this.stream.abort();
    });
  }

  private async sendClose(c: { code: number; reason: string }): Promise<void> {
    this.posting = true;
    try {
      await fetch(`${this.base.href}/${this.id}?code=${c.code}`, { method: 'DELETE', headers: this.headers, cache: 'no-store' });
    } catch {
      // The stream's end reports the close either way.
    }
    this.closeCode ??= c.code;
    this.closeReason ||= c.reason;
    this.stream.abort();
  }

  private finish(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.stream.abort();
    this.on.close(code, reason);
  }
}
