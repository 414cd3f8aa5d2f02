/**
 * TLS certificate and key files: read and checked with node:tls at start-up and on
 * every reload (SIGHUP), so a bad pair is reported with the file named and, on a
 * reload, the running certificate stays in use.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ConfigError } from '../config.js';

// node:tls is loaded when a certificate is configured: it keeps about 0.2 MiB resident (docs/EMBEDDED.md "Footprint").
const nodeTls = (): typeof import('node:tls') => createRequire(import.meta.url)('node:tls') as typeof import('node:tls');

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

interface TlsConfig {
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  port: number;
  mqttPort: number;
  mqttTlsPort: number;
}

/** The configured files, or undefined when TLS is off. @throws Error naming the setting. */
export function tlsFiles(config: TlsConfig): TlsFiles | undefined {
  if (config.tlsCertFile === undefined && config.tlsKeyFile === undefined) return undefined;
  if (config.tlsCertFile === undefined) throw new ConfigError('invalid setting tlsCertFile: required with tlsKeyFile');
  if (config.tlsKeyFile === undefined) throw new ConfigError('invalid setting tlsKeyFile: required with tlsCertFile');
  if (config.mqttTlsPort !== 0 && (config.mqttTlsPort === config.port || config.mqttTlsPort === config.mqttPort)) {
    throw new ConfigError(`invalid setting mqttTlsPort: ${config.mqttTlsPort} is already the port or mqttPort`);
  }
  return { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile };
}

/** Reads and checks the pair. @throws Error naming the setting and the file. */
export function loadTls(files: TlsFiles): TlsMaterial {
  const read = (setting: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`invalid setting ${setting}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  const cert = read('tlsCertFile', files.certFile);
  const key = read('tlsKeyFile', files.keyFile);
  try {
    nodeTls().createSecureContext({ cert, key }); // parses both and checks that the key belongs to the certificate
  } catch (err) {
    throw new ConfigError(`invalid setting tlsCertFile/tlsKeyFile: ${files.certFile} and ${files.keyFile} are not a usable pair: ${(err as Error).message}`);
  }
  return { cert, key };
}

interface ReloadLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * On SIGHUP, re-reads and checks the files, then hands them to every listener. A bad
 * pair is logged and the running certificate stays. Returns the function that stops listening for SIGHUP.
 */
export function reloadOnSighup(files: TlsFiles, apply: readonly ((material: TlsMaterial) => void)[], log: ReloadLog): () => void {
  const onHup = (): void => {
    try {
      const material = loadTls(files);
      for (const f of apply) f(material);
      log.info({ certFile: files.certFile }, 'TLS certificate reloaded');
    } catch (err) {
      log.error({ error: (err as Error).message }, 'TLS reload failed; the running certificate stays in use');
    }
  };
  process.on('SIGHUP', onHup);
  return () => {
    process.off('SIGHUP', onHup);
  };
}
