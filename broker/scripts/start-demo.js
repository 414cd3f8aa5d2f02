#!/usr/bin/env node
// `npm start`: the broker with its dashboard on http://localhost:8080 (or $TOPICAST_PORT) and the device
// agent inside it (`--agent`), publishing this machine's readings, so a newcomer sees live data at once.
// One Node process: this script becomes the broker. Extra arguments go to the broker. Ctrl-C stops it.
import { createServer } from 'node:net';

const port = process.env.TOPICAST_PORT ?? '8080';

function portFree(p) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(p, () => server.close(() => resolve(true)));
  });
}

// A machine that already runs an MQTT broker (e.g. Debian's mosquitto service) holds 1883: the demo then
// starts without MQTT over TCP instead of failing (MQTT over WebSocket at /mqtt still works).
const mqttPort = process.env.TOPICAST_MQTT_PORT ?? ((await portFree(1883)) ? '1883' : '0');
if (mqttPort === '0' && process.env.TOPICAST_MQTT_PORT === undefined) {
  console.error('Topicast: port 1883 is in use (another MQTT broker?); MQTT over TCP is off. Set TOPICAST_MQTT_PORT to choose a port.');
}
process.argv = [process.argv[0], process.argv[1], '--port', port, '--mqtt-port', mqttPort, '--agent', ...process.argv.slice(2)];
console.error(`Topicast: dashboard on http://localhost:${port}/ (Ctrl-C to stop)`);
await import('../dist/main.js');
