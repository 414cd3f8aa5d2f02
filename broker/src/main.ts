#!/usr/bin/env node
/**
 * Process entry of `topicast`: `topicast [flags]` runs the broker;
 * `topicast pub ...` and `topicast sub ...` are small clients (cli/pubsub.ts).
 */
import { ConfigError, loadConfig, settingsReference } from './config.js';
import { startBroker, VERSION } from './broker.js';
import { exitCodeOf } from './core/errors.js';
import { createLogger, flushLogs } from './observe/log.js';

const argv = process.argv.slice(2);

async function main(): Promise<void> {
  if (argv[0] === 'pub' || argv[0] === 'sub') {
    const { runPubSub } = await import('./cli/pubsub.js');
    const code = await runPubSub(argv[0], argv.slice(1));
    process.exitCode = code;
    // Output is written; a socket still closing must not hold the command open.
    setTimeout(() => process.exit(code), 2000).unref();
    return;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`topicast ${VERSION}: pub/sub broker over WebSockets and MQTT\n\nUsage: topicast [--setting value ...]          run the broker (settings below)\n       topicast pub -t TOPIC -m VALUE [-r] ...   publish (topicast pub --help)\n       topicast sub -t FILTER [-v] ...           subscribe and print (topicast sub --help)\n\n| flag | env | default | meaning |\n|---|---|---|---|\n${settingsReference()}\n`);
    return;
  }
  if (argv.includes('--version')) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  let config;
  try {
    config = loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`topicast: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  const exit = (code: number): void => {
    void flushLogs(log).then(() => process.exit(code));
  };
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception; exiting so the supervisor restarts a clean process');
    exit(1);
  });
  let broker;
  try {
    broker = await startBroker(config, log);
  } catch (err) {
    // The operator must act (a bad setting, a port in use, an unusable --data, a bus whose adapter this build
    // lacks, damaged data: broker/STORAGE.md): one line and exit 2 (core/errors.ts says which errors),
    // logged without a stack. Anything else is a bug, logged with its stack.
    const message = String((err as Error)?.message ?? err).replace(/\s*\n\s*/g, ' ');
    const code = exitCodeOf(err);
    if (code === 2) log.fatal({ reason: message }, 'start-up failed');
    else log.fatal({ err }, 'start-up failed');
    process.stderr.write(`topicast: ${message}\n`);
    exit(code);
    return;
  }
  log.info(
    { host: config.host, port: broker.port, mqttPort: broker.mqttPort, version: VERSION, url: `${config.tlsCertFile ? 'https' : 'http'}://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${broker.port}/` },
    'listening',
  );
  let signals = 0;
  const stop = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      exit(1);
    }, config.drainMs + config.shutdownTimeoutMs + 2000);
    force.unref();
    broker.shutdown().then(
      () => {
        log.info('stopped');
        exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
