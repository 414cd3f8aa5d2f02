#!/usr/bin/env node
// `npm start`: the broker with its dashboard on http://localhost:8080 (or $TOPICAST_PORT),
// plus topicast-agent publishing this machine's readings, so a newcomer sees live data at once.
// Extra arguments go to the broker. Ctrl-C stops both.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const broker = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const agent = fileURLToPath(new URL('../../sdk/dist/agent/cli.js', import.meta.url));
const port = process.env.TOPICAST_PORT ?? '8080';

const children = [];
function run(name, args) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  child.on('exit', (code, signal) => {
    if (stopping) return;
    console.error(`${name} exited (${signal ?? code}); stopping`);
    stop(code ?? 1);
  });
  children.push(child);
  return child;
}

function portFree(p) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(p, () => server.close(() => resolve(true)));
  });
}

let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  // Ctrl-C already reached the whole process group; signal the children only if they did not get it.
  setTimeout(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }, 500).unref();
  setTimeout(() => process.exit(code), 3000).unref();
  Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.on('exit', r)) : null))).then(() => process.exit(code));
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

// A machine that already runs an MQTT broker (e.g. Debian's mosquitto service) holds 1883: the demo then
// starts without MQTT over TCP instead of failing (MQTT over WebSocket at /mqtt still works).
const mqttPort = process.env.TOPICAST_MQTT_PORT ?? ((await portFree(1883)) ? '1883' : '0');
if (mqttPort === '0' && process.env.TOPICAST_MQTT_PORT === undefined) {
  console.error('Topicast: port 1883 is in use (another MQTT broker?); MQTT over TCP is off. Set TOPICAST_MQTT_PORT to choose a port.');
}
run('broker', [broker, '--port', port, '--mqtt-port', mqttPort, ...process.argv.slice(2)]);
// The agent retries until the broker listens, so both can start together.
run('agent', [agent, '--url', `ws://127.0.0.1:${port}/ws`]);
console.error(`Topicast: dashboard on http://localhost:${port}/ (Ctrl-C to stop)`);
