/**
 * The publish form: topic, value, encoding, retain. The value is read as JSON
 * when it parses (42, true, {"a":1}, "quoted") and as text otherwise, then
 * encoded as the user chose: MessagePack (what SDK clients publish), JSON text,
 * or the raw UTF-8 text as typed, and tagged with that content type so every
 * subscriber reads the same value (PROTOCOL.md §8).
 */
import { pack } from 'msgpackr';
import { ContentType, topicProblem } from 'topicast/protocol';
import { byId, setAttr } from './dom.js';

export type Encoding = 'msgpack' | 'json' | 'text';

/** The content type each encoding is sent with. */
export const CONTENT_TYPES: { readonly [E in Encoding]: string } = { msgpack: ContentType.msgpack, json: ContentType.json, text: ContentType.text };

const utf8 = new TextEncoder();

/** The form's value as the value it stands for: JSON when it parses, else the text itself. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * The payload bytes for a typed value.
 * @example
 * encodeValue('48.2', 'json') // bytes of "48.2"
 */
export function encodeValue(text: string, encoding: Encoding): Uint8Array {
  if (encoding === 'text') return utf8.encode(text);
  const value = parseValue(text);
  if (encoding === 'json') return utf8.encode(JSON.stringify(value));
  return pack(value);
}

export interface PublishTarget {
  /** Publishes the bytes; resolves once the broker routed them (or queued them while offline). */
  publish(topic: string, payload: Uint8Array, contentType: string, retain: boolean): Promise<'sent' | 'queued'>;
}

export class PublishForm {
  private readonly form = byId<HTMLFormElement>('publish-form');
  private readonly topic = byId<HTMLInputElement>('publish-topic');
  private readonly value = byId<HTMLTextAreaElement>('publish-value');
  private readonly encoding = byId<HTMLSelectElement>('publish-encoding');
  private readonly retain = byId<HTMLInputElement>('publish-retain');
  private readonly status = byId('publish-status');
  private readonly submit = byId<HTMLButtonElement>('publish-submit');

  constructor(
    private readonly target: () => PublishTarget | undefined,
    private readonly onPublished: (topic: string, retain: boolean) => void,
  ) {
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.send();
    });
    this.topic.addEventListener('input', () => {
      setAttr(this.topic, 'aria-invalid', null);
    });
  }

  /** Puts a topic into the form (from the explorer's detail panel) and focuses the value. */
  useTopic(topic: string): void {
    this.topic.value = topic;
    setAttr(this.topic, 'aria-invalid', null);
    this.value.focus();
  }

  private say(text: string, kind: 'ok' | 'error' | 'busy'): void {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
  }

  private async send(): Promise<void> {
    const topic = this.topic.value;
    const problem = topicProblem(topic);
    if (problem) {
      setAttr(this.topic, 'aria-invalid', 'true');
      this.say(`Topic ${problem}.`, 'error');
      this.topic.focus();
      return;
    }
    const target = this.target();
    if (!target) {
      this.say('Not connected: set the broker URL and connect first.', 'error');
      return;
    }
    const retain = this.retain.checked;
    const encoding = this.encoding.value as Encoding;
    const payload = encodeValue(this.value.value, encoding);
    this.submit.disabled = true;
    this.say('Publishing…', 'busy');
    try {
      const outcome = await target.publish(topic, payload, CONTENT_TYPES[encoding], retain);
      this.say(outcome === 'sent' ? `Published ${payload.length} bytes to ${topic}${retain ? ' (retained)' : ''}.` : `Queued for ${topic}: it goes out once connected.`, 'ok');
      this.onPublished(topic, retain);
    } catch (err) {
      this.say(`Publish failed: ${err instanceof Error ? err.message : String(err)}`, 'error');
    } finally {
      this.submit.disabled = false;
    }
  }
}
