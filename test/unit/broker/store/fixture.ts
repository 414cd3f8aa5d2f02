/**
 * The retained-store test fixture shared by log.test and damage.test: fresh directories and opened
 * stores, all closed and removed when the calling test file ends, plus small payload helpers.
 * Call `retainedStoreFixture` at a test file's top level so its `after` hook belongs to that file.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { createMessage, type Message } from '@topicast/broker';
import { logModule } from './load.js';

const { openLogRetainedStore } = logModule;
export type LogRetainedStore = Awaited<ReturnType<typeof openLogRetainedStore>>;

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (m: Message | undefined): string | undefined => (m ? new TextDecoder().decode(m.payload) : undefined);
export const retained = (topic: string, value: string, qos: 0 | 1 | 2 = 0): Message => createMessage(topic, bytes(value), true, undefined, qos);
/** The files of `dir` ending in `suffix`, in name order. */
export const files = (dir: string, suffix: string): string[] => readdirSync(dir).filter((n) => n.endsWith(suffix)).sort();

export function retainedStoreFixture(prefix: string): {
  freshDir(): string;
  openStore(dir: string, options?: Parameters<typeof openLogRetainedStore>[1]): Promise<LogRetainedStore>;
  /** Closes a store opened elsewhere with the others. */
  keep(store: LogRetainedStore): void;
} {
  const dirs: string[] = [];
  const open: LogRetainedStore[] = [];
  after(async () => {
    for (const s of open) await s.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return {
    freshDir() {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      return d;
    },
    keep(store) {
      open.push(store);
    },
    async openStore(dir, options) {
      const s = await openLogRetainedStore(dir, options);
      open.push(s);
      return s;
    },
  };
}
