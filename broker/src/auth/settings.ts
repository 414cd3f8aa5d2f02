/** Security settings (docs/SECURITY.md); merged into the broker's configuration (config.ts). */
import type { SettingSpec } from '../settings.js';

export const AUTH_SETTINGS = [
  { key: 'authTokenFile', type: 'string', default: undefined, doc: 'JSON file of static tokens with their permissions (docs/SECURITY.md); for small installations' },
  { key: 'authJwtKeyFile', type: 'string', default: undefined, doc: 'JWT verification key: a PEM public key or certificate, a JWK or JWKS (JSON), or else an HMAC secret (the file\'s bytes)' },
  { key: 'authJwksFile', type: 'string', default: undefined, doc: 'JWKS file (JSON {"keys": [...]}); the key is picked by the token\'s kid and alg' },
  { key: 'authJwtAlgorithms', type: 'list', default: ['HS256', 'RS256', 'ES256', 'EdDSA'], doc: 'JWT algorithms accepted; never "none"; a key is only ever used with its own kind of algorithm' },
  { key: 'authJwtAudience', type: 'string', default: undefined, doc: 'required JWT aud (a token for another service is refused); unset skips the check' },
  { key: 'authJwtIssuer', type: 'string', default: undefined, doc: 'required JWT iss; unset skips the check' },
  { key: 'authClockSkewSec', type: 'int', default: 30, min: 0, max: 3600, doc: 'tolerance on exp/nbf/iat: device clocks drift; 30 s covers NTP-less boards without extending tokens much' },
  { key: 'authPermissionsClaim', type: 'string', default: 'topicast', doc: 'JWT claim holding {publish, subscribe, denyPublish, denySubscribe} filter lists' },
  { key: 'authAnonymous', type: 'enum', default: 'auto', values: ['auto', 'true', 'false'], doc: 'clients without a token: auto = allowed (with every permission) only when no token file or JWT key is configured' },
  { key: 'authAnonymousPublish', type: 'list', default: [], doc: 'filters anonymous clients may publish to when authentication is configured and authAnonymous is true' },
  { key: 'authAnonymousSubscribe', type: 'list', default: ['#', '$SYS/#'], doc: 'filters anonymous clients may subscribe to when authentication is configured and authAnonymous is true (read-only by default)' },
  { key: 'maxConnectionsPerIp', type: 'int', default: 5000, min: 0, max: 10_000_000, doc: 'open connections from one IP (0 = unlimited); a NATed site of devices or a test rig fits, one runaway script cannot take every slot of maxConnections' },
  { key: 'connectRatePerIp', type: 'int', default: 100, min: 0, max: 1_000_000, doc: 'sustained new connections per second from one IP (0 = unlimited); tight reconnect loops are slowed, ordinary clients never notice' },
  { key: 'connectBurstPerIp', type: 'int', default: 1000, min: 1, max: 10_000_000, doc: 'connections one IP may open at once above the rate: a NATed fleet reconnecting after a broker restart' },
  { key: 'authFailuresBeforeBackoff', type: 'int', default: 5, min: 0, max: 1_000_000, doc: 'failed token checks from one IP before it must wait (0 = never); a few typos are free, guessing is not' },
  { key: 'authBackoffMaxSec', type: 'int', default: 60, min: 1, max: 86_400, doc: 'longest wait after failed authentication; the wait doubles from 1 s per further failure' },
  { key: 'limitsExemptIps', type: 'list', default: ['127.0.0.1', '::1'], doc: 'addresses the per-IP limits skip: a reverse proxy on this host makes every client look local, and local tools are trusted (empty = limit everyone)' },
  { key: 'tlsCertFile', type: 'string', default: undefined, doc: 'PEM certificate (chain): the broker port serves https:// and wss://, and mqttTlsPort mqtts://; re-read on SIGHUP' },
  { key: 'tlsKeyFile', type: 'string', default: undefined, doc: 'PEM private key of tlsCertFile; re-read on SIGHUP' },
  { key: 'mqttTlsPort', type: 'int', default: 8883, min: 0, max: 65535, doc: 'MQTT over TLS port when tlsCertFile is set (0 turns it off); 8883 is the registered mqtts port' },
  { key: 'allowedOrigins', type: 'list', default: [], doc: 'browser Origins allowed to open WebSockets besides the broker\'s own; "*" = any. Unchecked only while anonymous access is unrestricted' },
] as const satisfies readonly SettingSpec[];
