/**
 * The parent's handle on one load-generator process (gen.ts): spawn pinned to the
 * generator core, send a command, await its typed reply (bounded by a timeout).
 * Subscriber floors are relayed to the publisher by `linkCredit`.
 */
import { fileURLToPath } from 'node:url';
import { spawnChild, cpuSeconds, type Child } from './proc.js';
import type { GenCommand } from './gen.js';
import type { ScaleCommand } from './scale-client.js';

const GEN = fileURLToPath(new URL('./gen.js', import.meta.url));

export interface Reply {
  t: string;
  [k: string]: unknown;
}

export class Gen {
  private readonly waiting: { t: string; resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  onFloor: (v: number) => void = () => undefined;

  constructor(readonly child: Child, readonly role: string) {
    child.proc.on('message', (m: Reply) => {
      if (m.t === 'floor') return this.onFloor(m.v as number);
      if (m.t === 'error') {
        const w = this.waiting.shift();
        if (w) w.reject(new Error(`${role} generator: ${String(m.message)}`));
        else console.error(`${role} generator error: ${String(m.message)}`);
        return;
      }
      const idx = this.waiting.findIndex((w) => w.t === m.t);
      if (idx >= 0) this.waiting.splice(idx, 1)[0]!.resolve(m);
    });
    child.proc.on('error', (err) => console.error(`${role} generator: ${err.message}`));
    void child.exited.then((code) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${role} generator exited (${code}): ${child.logs.slice(-5).join(' | ')}`));
    });
  }

  /** `script`: another generator program speaking the same IPC (scale-client.js); `nofile`: its descriptor limit. */
  static start(role: string, cpu: number | undefined, o: { script?: string; nofile?: number } = {}): Gen {
    return new Gen(spawnChild(process.execPath, ['--max-old-space-size=4096', o.script ?? GEN, role], { cpu, ipc: true, ...(o.nofile !== undefined && { nofile: o.nofile }) }), role);
  }

  send(c: GenCommand | ScaleCommand): void {
    // A generator that is closing may have shut its IPC channel between the check and the write:
    // the error goes to the callback (a pending request then times out or sees the exit).
    if (this.child.proc.connected) this.child.proc.send(c, (err) => {
      if (err && process.env.BENCH_DEBUG) console.error(`${this.role} generator: send failed: ${err.message}`);
    });
  }

  request<R extends Reply = Reply>(c: GenCommand | ScaleCommand, expect: string, timeoutMs = 60_000): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.findIndex((w) => w.t === expect);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`${this.role} generator: no '${expect}' reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.push({
        t: expect,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r as R);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.send(c);
    });
  }

  cpu(): number {
    try {
      return cpuSeconds(this.child.pid);
    } catch {
      return 0;
    }
  }

  async close(): Promise<void> {
    this.onFloor = () => undefined;
    try {
      await this.request({ t: 'close' }, 'closed', 3000);
    } catch {
      // it may already be gone; stop() below makes sure
    }
    await this.child.stop(1000);
  }
}

/** Relays the subscriber side's floor to the publisher side (the credit window). */
export function linkCredit(subs: Gen, pubs: Gen): void {
  subs.onFloor = (v) => pubs.send({ t: 'credit', floor: v });
}
