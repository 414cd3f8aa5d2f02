/**
 * `topicast sub --http` (issue 18): behind a proxy that refuses the WebSocket upgrade, `--http`
 * follows the topics over HTTP streaming, values decoded by the same rules; a plain `topicast sub`
 * gets there too, by the SDK's automatic fallback.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { BROKER_MAIN, startBroker, waitFor } from '../helpers/broker.js';
import { refusingProxy } from '../helpers/refusing-proxy.js';

function sub(args: string[]): { out: string[]; err: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [BROKER_MAIN, 'sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => out.push(...d.split('\n').filter((l) => l !== '')));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { out, err: () => err, exited };
}

test('topicast sub --http follows topics where the WebSocket upgrade is refused; plain sub falls back there by itself', async () => {
  const broker = await startBroker();
  const proxy = await refusingProxy(broker.port);
  try {
    const url = `ws://127.0.0.1:${proxy.port}/ws`;
    await fetch(`${broker.httpUrl}/api/publish/http/retained?retain=1`, { method: 'POST', body: 'kept', headers: { 'Content-Type': 'text/plain' } });
    const viaHttp = sub(['-t', 'http/#', '-v', '-C', '3', '--http', '--url', url, '-W', '20']);
    await waitFor(() => viaHttp.out.length >= 1, 'the retained value over HTTP streaming', 10_000);
    await fetch(`${broker.httpUrl}/api/publish/http/json`, { method: 'POST', body: '{"v":1}', headers: { 'Content-Type': 'application/json' } });
    await fetch(`${broker.httpUrl}/api/publish/http/number`, { method: 'POST', body: '48.2' });
    assert.equal(await viaHttp.exited, 0, viaHttp.err());
    assert.deepEqual(viaHttp.out, ['http/retained kept', 'http/json {"v":1}', 'http/number 48.2']);
    const auto = sub(['-t', 'http/#', '-C', '1', '--url', url, '-W', '20']);
    assert.equal(await auto.exited, 0, auto.err());
    assert.deepEqual(auto.out, ['kept'], 'the SDK fell back by itself');
  } finally {
    proxy.server.closeAllConnections();
    proxy.server.close();
    await broker.stop();
  }
});
