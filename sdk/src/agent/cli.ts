#!/usr/bin/env node
/**
 * `topicast-agent`: publishes this machine's readings under `devices/<id>/` until SIGTERM or
 * SIGINT, then publishes `status` offline and disconnects cleanly. Exit status: 0 after a clean
 * stop, 2 for a bad configuration (one line on stderr), 1 for anything unexpected (systemd
 * restarts it). The transport module is loaded on demand, so an MQTT agent never loads the SDK's
 * WebSocket stack and a native agent never loads mqtt.js.
 */
import { ConfigError, parseAgentArgs, USAGE, type AgentConfig } from './config.js';
import { agentVersion } from './info.js';
import { createLogger } from './log.js';
import { readOnce } from './once.js';
import { createReaders } from './readers/index.js';
import { runAgent } from './run.js';
import type { AgentTransport, Logger } from './types.js';

const SHUTDOWN_TIMEOUT_MS = 5000; // systemd's default stop timeout is 90 s; a device being rebooted should not wait that long

async function openTransport(config: AgentConfig, log: Logger): Promise<AgentTransport> {
  if (config.transport === 'mqtt') {
    const { mqttTransport } = await import('./transport/mqtt.js');
    return mqttTransport({ url: config.urls[0]!, id: config.id, log });
  }
  const { nativeTransport } = await import('./transport/native.js');
  return nativeTransport({ url: config.urls, id: config.id, log, ...(config.token !== undefined ? { token: config.token } : {}) });
}

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    const parsed = parseAgentArgs(process.argv.slice(2), { env: process.env });
    if (parsed.action === 'help') {
      process.stdout.write(USAGE + '\n');
      return;
    }
    if (parsed.action === 'version') {
      process.stdout.write(agentVersion() + '\n');
      return;
    }
    config = parsed.config;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`topicast-agent: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);

  if (config.once) {
    const round = await readOnce(config.id, createReaders(config.readers, { root: config.root }), undefined, (m) => log.warn(m));
    if (config.print) process.stdout.write(JSON.stringify(round, null, 2) + '\n');
    return;
  }

  const transport = await openTransport(config, log);
  const running = runAgent(config, transport, log);
  log.info(`topicast-agent ${agentVersion()} publishing devices/${config.id}/ to ${config.urls.map(withoutPassword).join(', ')} (${config.transport}), ${config.readers.length} readers, ${running.execs.length} exec sensors, ${config.actuators.length} actuators${config.homeassistant !== undefined ? `, Home Assistant discovery under ${config.homeassistant}/` : ''}`);

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    log.info(`${signal}: publishing status offline and disconnecting`);
    setTimeout(() => {
      log.error('clean shutdown timed out');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
    running.stop().then(
      () => process.exit(0),
      (err: Error) => {
        log.error(`shutdown failed: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((err: unknown) => {
  process.stderr.write(`topicast-agent: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});

/** A broker URL fit for the log: an MQTT password given in it (`mqtt://user:pass@host`) is never written out. */
function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
