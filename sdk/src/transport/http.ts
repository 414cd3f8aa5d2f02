/**
 * The native protocol over plain HTTP, for when a WebSocket cannot be opened (broker
 * PROTOCOL.md §10.5): the broker's frames arrive on one streamed `GET /api/session` response
 * (Server-Sent Events, one base64 frame per event), the client's frames go out as
 * `POST /api/session/<id>` requests, one at a time and in order (several queued frames share
 * one request), and a clean close is `DELETE /api/session/<id>?code=C`. It is a `Transport`
 * like the WebSocket ones, so the client above it is the same: same frames, same API.
 *
 * Uses only `fetch` with a streamed body (browsers, Node 18+). The token travels as
 * `Authorization: Bearer` where the request is same-origin (or outside a browser), else as
 * `?token=` (a cross-origin header would need a CORS preflight the broker does not answer); POSTs
 * carry no content type for the same reason. Small on purpose: it is in the core browser build.
 */
import type { Transport, TransportHandlers, TransportSocket } from './types.js';

const TOKEN_ENTRY = 'topicast.token.';

function bytesOfBase64(b64: string): Uint8Array {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * Opens a native-protocol session over HTTP streaming (what the client falls back to).
 * @example
 * const client = await connect('ws://localhost:8080/ws', { via: 'sse' }); // uses this transport
 */
export const httpTransport: Transport = (url, protocols, on) => new HttpSession(url, protocols, on);

class HttpSession implements TransportSocket {
  bufferedAmount = 0;
  private readonly base: string;
  private readonly headers: Record<string, string> = {};
  private readonly stream = new AbortController();
  private id: string | undefined;
  private queue: Uint8Array[] = [];
  private posting = false;
  private closing: number | undefined;
  private closeCode = 1006;
  private closeReason = '';
  private ended = false;

  constructor(url: string, protocols: string[], private readonly on: TransportHandlers) {
    // ws[s]://host/prefix/ws → http[s]://host/prefix/api/session; throws on a malformed URL, as WebSocket does.
    const u = new URL(url.replace(/^ws/, 'http'));
    u.pathname = `${u.pathname.replace(/\/?(ws\/?)?$/, '')}/api/session`;
    u.search = u.hash = '';
    this.base = u.href;
    const entry = protocols.find((p) => p.startsWith(TOKEN_ENTRY));
    if (entry !== undefined) {
      const token = new TextDecoder().decode(bytesOfBase64(entry.slice(TOKEN_ENTRY.length).replace(/-/g, '+').replace(/_/g, '/')));
      const here = (globalThis as { location?: { origin: string } }).location?.origin;
      if (here === undefined || here === u.origin) this.headers.Authorization = `Bearer ${token}`;
      else u.searchParams.set('token', token);
    }
    void this.read(u.href);
  }

  send(data: Uint8Array): void {
    if (this.ended || this.closing !== undefined) return;
    this.queue.push(data);
    this.bufferedAmount += data.length;
    void Promise.resolve().then(() => this.pump());
  }

  close(code: number, reason: string): void {
    if (this.ended || this.closing !== undefined) return;
    this.closing = code;
    this.closeReason = reason;
    void Promise.resolve().then(() => this.pump());
  }

  terminate(): void {
    this.closeReason = 'terminated';
    this.stream.abort(); // `read` ends and reports the close
  }

  /** The event stream: `session` names the session (the transport is open), each unnamed event is one frame. */
  private async read(get: string): Promise<void> {
    try {
      const res = await fetch(get, { headers: this.headers, signal: this.stream.signal, cache: 'no-store' });
      if (res.status !== 200) {
        // 401/403 refuse the token (4001/4003 on a WebSocket); anything else is a failed open.
        this.closeCode = res.status === 401 ? 4001 : res.status === 403 ? 4003 : 1006;
        throw new Error(`${get.split('?')[0]}: HTTP ${res.status}`);
      }
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += value;
        let end: number;
        while ((end = text.indexOf('\n\n')) >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
          const name = /^event: (.*)$/m.exec(block)?.[1];
          if (name === undefined && data !== '') this.on.message(bytesOfBase64(data));
          else if (name === 'session') {
            this.id = (JSON.parse(data) as { id: string }).id;
            this.on.open();
            this.pump();
          } else if (name === 'close') ({ code: this.closeCode, reason: this.closeReason } = JSON.parse(data) as { code: number; reason: string });
        }
      }
    } catch (err) {
      if (!this.stream.signal.aborted) this.on.error(err as Error);
    }
    this.ended = true;
    this.on.close(this.closing ?? this.closeCode, this.closeReason);
  }

  /** Sends what is queued in one POST, one request at a time (order); then the close, if asked. */
  private pump(): void {
    if (this.posting || this.ended || this.id === undefined) return;
    const frames = this.queue;
    const at = `${this.base}/${this.id}`;
    if (frames.length === 0) {
      // The clean close (1000: no will); the broker then ends the stream.
      if (this.closing !== undefined) fetch(`${at}?code=${this.closing}`, { method: 'DELETE' }).finally(() => this.stream.abort()).catch(() => {});
      return;
    }
    this.queue = [];
    const size = frames.reduce((n, f) => n + 4 + f.length, 0);
    const body = new Uint8Array(size);
    const view = new DataView(body.buffer);
    let i = 0;
    for (const f of frames) {
      view.setUint32(i, f.length);
      body.set(f, i + 4);
      i += 4 + f.length;
    }
    this.posting = true;
    fetch(at, { method: 'POST', body, cache: 'no-store' })
      .then((res) => {
        if (res.status !== 204) throw new Error(`POST ${at.split('/api/')[0]}: HTTP ${res.status}`);
        this.posting = false;
        this.bufferedAmount -= size - 4 * frames.length;
        this.pump();
      })
      .catch((err: unknown) => {
        // The session is gone (a restarted broker, another node): the link is lost.
        this.on.error(err as Error);
        this.stream.abort();
      });
  }
}
