/**
 * kill -9 in the middle of a burst of retained writes loses nothing that was acknowledged.
 * A child process writes bursts to the log store and prints each write once its promise
 * resolved (the moment the broker would send ACK) and sends itself SIGKILL right after the
 * K-th acknowledgement (K random), with later batches still being written: no delay between
 * an acknowledgement and the kill can hide a write acknowledged too early. The test reopens
 * the directory and checks every acknowledged write. Three crashes
 * in a row on the same directory, with compactions running, so recovery is also written on.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { logModule, logModuleUrl, messageModuleUrl } from '../unit/broker/store/load.js';

const TOPICS = 1000; // a small live set: the snapshot stays small, so compactions come often
const work = mkdtempSync(join(tmpdir(), 'topicast-crash-'));
after(() => rmSync(work, { recursive: true, force: true }));

// Bounded on its own too (count and time), in case the parent dies before killing it.
// Acknowledgements go to a file with writeSync: a pipe may still hold queued bytes when the kill lands.
const CHILD = `
import { openSync, writeSync } from 'node:fs';
import { openLogRetainedStore } from ${JSON.stringify(logModuleUrl)};
import { createMessage } from ${JSON.stringify(messageModuleUrl)};
const [dir, ackFile, startText, killAfterText] = process.argv.slice(2);
const killAfter = Number(killAfterText);
const acksOut = openSync(ackFile, 'w');
const store = await openLogRetainedStore(dir, { compactMinBytes: 8 * 1024 });
let n = Number(startText);
const end = n + 2_000_000;
const deadline = Date.now() + 20_000;
let acks = 0;
let compactions = 0;
while (n < end && Date.now() < deadline) {
  for (let j = 0; j < 50; j++, n++) {
    const topic = 'burst/' + (n % ${TOPICS});
    const value = String(n);
    store.set(createMessage(topic, Buffer.from(value), true)).then(
      () => {
        writeSync(acksOut, topic + ' ' + value + '\\n');
        if (++acks === killAfter) process.kill(process.pid, 'SIGKILL');
      },
      (err) => writeSync(acksOut, 'error ' + err.message + '\\n'),
    );
  }
  if (store.stats.compactions !== compactions) {
    compactions = store.stats.compactions;
    writeSync(acksOut, 'compactions ' + compactions + '\\n');
  }
  await new Promise((r) => setImmediate(r));
}
await store.close();
`;

test('store: kill -9 during a burst of acknowledged retained writes loses none of them', { timeout: 90_000 }, async () => {
  const script = join(work, 'writer.mjs');
  writeFileSync(script, CHILD);
  const dir = join(work, 'data');
  const acked = new Map<string, number>(); // topic → highest acknowledged value
  let compactions = 0;

  for (let run = 0; run < 3; run++) {
    const start = (run + 1) * 10_000_000; // values grow across runs, so "at least the acknowledged one" is a number check
    const killAfter = 6000 + Math.floor(Math.random() * 9000);
    const ackFile = join(work, `acks-${run}.txt`);
    const child = spawn(process.execPath, [script, dir, ackFile, String(start), String(killAfter)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000); // only if the writer never gets there
    const [, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    clearTimeout(timer);
    assert.equal(signal, 'SIGKILL', `writer ended before the kill: ${stderr}`);

    let acks = 0;
    const errors: string[] = [];
    for (const line of readFileSync(ackFile, 'utf8').split('\n')) {
      const [word, value] = line.split(' ');
      if (!word) continue;
      if (word === 'error') errors.push(line);
      else if (word === 'compactions') compactions++;
      else {
        acked.set(word, Math.max(acked.get(word) ?? 0, Number(value)));
        acks++;
      }
    }
    assert.deepEqual(errors, []);
    assert.equal(acks, killAfter, `run ${run}: the writer killed itself after its ${killAfter}th acknowledgement, not after ${acks}`);

    const store = await logModule.openLogRetainedStore(dir);
    try {
      let missing = 0;
      for (const [topic, value] of acked) {
        const stored = store.get(topic);
        const storedValue = stored ? Number(new TextDecoder().decode(stored.payload)) : -1;
        if (storedValue < value) missing++;
      }
      assert.equal(missing, 0, `run ${run}: acknowledged writes missing after kill -9 (of ${acked.size} topics)`);
      assert.ok(store.size <= TOPICS);
    } finally {
      await store.close();
    }
  }
  assert.ok(compactions > 0, 'compactions ran while the writer was being killed');
});
