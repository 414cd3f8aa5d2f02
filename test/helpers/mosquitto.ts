/**
 * A real Mosquitto (Debian's `mosquitto`) for the tests of the MQTT upstream bus: started with a
 * generated config on a free 127.0.0.1 port, in its own temp directory, killed at the end.
 * `haveMosquitto` is false when it is not installed; under CI that is an error (the tests must run).
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitFor } from './broker.js';

export const haveMosquitto = await promisify(execFile)('sh', ['-c', 'command -v mosquitto']).then(() => true, () => false);
if (!haveMosquitto && process.env.CI) throw new Error('mosquitto is required under CI (apt-get install mosquitto)');

export interface Mosquitto {
  port: number;
  stop(): void;
}

/** Starts Mosquitto; `acl` is the text of an acl_file (anonymous clients get only what it allows). */
export async function startMosquitto(options: { acl?: string } = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-mosquitto-'));
  chmodSync(dir, 0o755); // run as root, mosquitto reads the ACL after dropping to its own user
  const port = await freePort();
  let conf = `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 100000\n`;
  if (options.acl !== undefined) {
    writeFileSync(join(dir, 'acl'), options.acl);
    conf += `acl_file ${join(dir, 'acl')}\n`;
  }
  writeFileSync(join(dir, 'mosquitto.conf'), conf);
  const proc = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const stop = (): void => {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', () => proc.kill('SIGKILL'));
  await waitFor(() => new Promise<boolean>((resolve) => {
    const s = createConnection(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  }), `mosquitto listening on ${port}`, 5000).catch((e: Error) => {
    stop();
    throw new Error(`${e.message}: ${err}`);
  });
  return { port, stop };
}
