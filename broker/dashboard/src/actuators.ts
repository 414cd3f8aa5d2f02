/**
 * A device card's controls: the actuators its agent lists in `devices/<id>/info` (`actuators:
 * [{ name, type, min, max, step, unit, options }]`), each as a switch (boolean), a slider (number),
 * a select or text field (string) or a button. A control sends a request to
 * `devices/<id>/set/<name>` (the SDK's request/reply) and shows its outcome next to it:
 * `pending` until the device's program answers, then `confirmed` (the state it reports) or
 * `failed` with the reason — the program's error, a timeout, or the broker's refusal (a token
 * that may not publish there). The state shown is the retained `devices/<id>/<name>`, so every
 * open page follows a change made from any one of them (or from Home Assistant, or mosquitto_pub).
 */
import { el, setAttr, setText } from './dom.js';

export interface ActuatorSpec {
  name: string;
  type: 'boolean' | 'number' | 'string' | 'button';
  min?: number;
  max?: number;
  step?: number;
  unit?: string;
  options?: string[];
}

/** Sends a command and resolves with the device's answer (`{ ok, state, error }`). */
export type SendCommand = (topic: string, value: unknown) => Promise<unknown>;

/** What `info.actuators` announces, keeping only well-formed entries. */
export function actuatorsFromInfo(info: unknown): ActuatorSpec[] {
  const list = info && typeof info === 'object' ? (info as { actuators?: unknown }).actuators : undefined;
  if (!Array.isArray(list)) return [];
  const out: ActuatorSpec[] = [];
  for (const a of list) {
    if (!a || typeof a !== 'object') continue;
    const o = a as Record<string, unknown>;
    if (typeof o.name !== 'string' || !['boolean', 'number', 'string', 'button'].includes(o.type as string)) continue;
    const spec: ActuatorSpec = { name: o.name, type: o.type as ActuatorSpec['type'] };
    for (const k of ['min', 'max', 'step'] as const) if (typeof o[k] === 'number') spec[k] = o[k] as number;
    if (typeof o.unit === 'string') spec.unit = o.unit;
    if (Array.isArray(o.options) && o.options.every((x) => typeof x === 'string')) spec.options = o.options as string[];
    out.push(spec);
  }
  return out;
}

type Outcome = 'idle' | 'pending' | 'confirmed' | 'failed';

/** The answer of an agent's actuator, read defensively (any responder may answer). */
function readAnswer(answer: unknown): { ok: boolean; state?: unknown; error?: string } {
  if (answer && typeof answer === 'object' && 'ok' in answer) {
    const a = answer as { ok: unknown; state?: unknown; error?: unknown };
    return { ok: a.ok === true, state: a.state, error: typeof a.error === 'string' ? a.error : undefined };
  }
  return { ok: true, state: answer };
}

function stateText(spec: ActuatorSpec, state: unknown): string {
  if (state === undefined) return '';
  if (spec.type === 'boolean') return state === true ? 'on' : state === false ? 'off' : String(state);
  const text = typeof state === 'string' ? state : JSON.stringify(state);
  return spec.unit ? `${text} ${spec.unit}` : text;
}

/** The state of a boolean actuator from a retained value or an answer. */
function isOn(state: unknown): boolean | undefined {
  if (typeof state === 'boolean') return state;
  if (state === 'true' || state === 'on' || state === 1) return true;
  if (state === 'false' || state === 'off' || state === 0) return false;
  return undefined;
}

/** One control and its outcome line. */
class Control {
  readonly li: HTMLLIElement;
  private readonly outcomeEl: HTMLElement;
  private readonly stateEl: HTMLElement;
  private input: HTMLInputElement | HTMLSelectElement | undefined;
  private toggle: HTMLButtonElement | undefined;
  private state: unknown;
  private seq = 0;

  constructor(readonly spec: ActuatorSpec, private readonly topic: string, private readonly send: SendCommand) {
    const label = spec.name;
    this.stateEl = el('span', { class: 'actuator-state' });
    this.outcomeEl = el('span', { class: 'actuator-outcome', 'data-outcome': 'idle', role: 'status', 'aria-live': 'polite' });
    let control: HTMLElement;
    switch (spec.type) {
      case 'boolean': {
        const b = el('button', { type: 'button', class: 'switch', role: 'switch', 'aria-checked': 'false', 'aria-label': label }, el('span', { class: 'switch-knob' }));
        b.addEventListener('click', () => this.command(!(isOn(this.state) ?? false)));
        this.toggle = b;
        control = b;
        break;
      }
      case 'number': {
        const input = el('input', { type: 'range', 'aria-label': label, min: spec.min ?? 0, max: spec.max ?? 100, step: spec.step ?? 'any' });
        input.addEventListener('change', () => this.command(Number(input.value)));
        this.input = input;
        control = input;
        break;
      }
      case 'string': {
        if (spec.options) {
          const select = el('select', { 'aria-label': label }, ...spec.options.map((o) => el('option', { value: o }, o)));
          select.addEventListener('change', () => this.command(select.value));
          this.input = select;
          control = select;
        } else {
          const input = el('input', { type: 'text', 'aria-label': label, maxlength: 256 });
          const form = el('form', { class: 'actuator-text' }, input, el('button', { type: 'submit', class: 'button' }, 'Set'));
          form.addEventListener('submit', (e) => {
            e.preventDefault();
            this.command(input.value);
          });
          this.input = input;
          control = form;
        }
        break;
      }
      case 'button': {
        const b = el('button', { type: 'button', class: 'button' }, label);
        b.addEventListener('click', () => this.command('press'));
        control = b;
        break;
      }
    }
    this.li = el(
      'li',
      { class: 'actuator', 'data-actuator': spec.name, 'data-type': spec.type },
      el('span', { class: 'actuator-name' }, label),
      control,
      this.stateEl,
      this.outcomeEl,
    );
  }

  /** A state published by the device (retained `devices/<id>/<name>`, or an answer). */
  setState(state: unknown): void {
    this.state = state;
    setText(this.stateEl, stateText(this.spec, state));
    if (this.toggle) setAttr(this.toggle, 'aria-checked', String(isOn(state) ?? false));
    if (this.input && state !== undefined && document.activeElement !== this.input) this.input.value = String(state);
  }

  private show(outcome: Outcome, text: string): void {
    setAttr(this.outcomeEl, 'data-outcome', outcome);
    setText(this.outcomeEl, text);
  }

  private command(value: unknown): void {
    const seq = ++this.seq; // only the latest command's outcome is shown
    this.show('pending', 'sending…');
    this.send(this.topic, value).then(
      (answer) => {
        if (seq !== this.seq) return;
        const a = readAnswer(answer);
        if (a.ok) {
          if (a.state !== undefined) this.setState(a.state);
          this.show('confirmed', 'confirmed');
        } else {
          this.setState(this.state); // back to what the device reports
          this.show('failed', `failed: ${a.error ?? 'the device refused'}`);
        }
      },
      (err: unknown) => {
        if (seq !== this.seq) return;
        this.setState(this.state);
        this.show('failed', `failed: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }
}

/**
 * The controls section of one device card.
 * @example
 * const panel = new ActuatorPanel('pi-01', (topic, value) => client.request(topic, value));
 * card.append(panel.root); panel.announce(actuatorsFromInfo(info)); panel.setState('led', true); panel.render();
 */
export class ActuatorPanel {
  readonly root: HTMLElement;
  private readonly list: HTMLUListElement;
  private readonly controls = new Map<string, Control>();
  private readonly states = new Map<string, unknown>();
  private readonly dirtyStates = new Set<string>();
  private specs: ActuatorSpec[] = [];
  private names = new Set<string>();
  private key = '';
  private specsDirty = false;

  constructor(private readonly deviceId: string, private readonly send: SendCommand) {
    this.list = el('ul', { class: 'actuators', 'aria-label': `Controls of ${deviceId}` });
    this.root = el('section', { class: 'device-controls', hidden: true }, this.list);
  }

  /** Whether `path` is an actuator's state topic (shown in its control, not as a reading). */
  has(path: string): boolean {
    return this.names.has(path);
  }

  /** The actuators the device announced (model only; `render` rebuilds the controls if they changed). */
  announce(specs: ActuatorSpec[]): void {
    const key = JSON.stringify(specs);
    if (key === this.key) return;
    this.key = key;
    this.specs = specs;
    this.names = new Set(specs.map((s) => s.name));
    this.specsDirty = true;
  }

  /** The device published an actuator's state (model only). */
  setState(name: string, state: unknown): void {
    this.states.set(name, state);
    this.dirtyStates.add(name);
  }

  /** Applies what changed to the DOM. */
  render(): void {
    if (this.specsDirty) {
      this.specsDirty = false;
      this.controls.clear();
      const items: HTMLLIElement[] = [];
      for (const spec of this.specs) {
        const c = new Control(spec, `devices/${this.deviceId}/set/${spec.name}`, this.send);
        if (this.states.has(spec.name)) c.setState(this.states.get(spec.name));
        this.controls.set(spec.name, c);
        items.push(c.li);
      }
      this.list.replaceChildren(...items);
      this.root.hidden = this.specs.length === 0;
      this.dirtyStates.clear();
    }
    for (const name of this.dirtyStates) this.controls.get(name)?.setState(this.states.get(name));
    this.dirtyStates.clear();
  }
}
