/**
 * Test-side JWT signing with node:crypto only, independent of the broker's jose,
 * so a verification bug cannot hide behind the same library on both sides.
 */
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

export type Alg = 'HS256' | 'RS256' | 'ES256' | 'EdDSA' | 'none';

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Signs `payload` (claims) with `alg`; `key` is the HMAC secret or the private key. */
export function signJwt(alg: Alg, key: KeyObject | Buffer | string | undefined, payload: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64url(JSON.stringify({ alg, typ: 'JWT', ...header }))}.${b64url(JSON.stringify(payload))}`;
  let sig: Buffer;
  switch (alg) {
    case 'none':
      return `${input}.`;
    case 'HS256':
      sig = createHmac('sha256', key as Buffer | string).update(input).digest();
      break;
    case 'RS256':
      sig = sign('sha256', Buffer.from(input), key as KeyObject);
      break;
    case 'ES256':
      sig = sign('sha256', Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
      break;
    case 'EdDSA':
      sig = sign(null, Buffer.from(input), key as KeyObject);
      break;
  }
  return `${input}.${b64url(sig)}`;
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicPem: string;
}

export function keyPair(alg: 'RS256' | 'ES256' | 'EdDSA'): KeyPair {
  const { privateKey, publicKey } =
    alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('ed25519');
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** Seconds since the epoch, as JWT times are. */
export function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}
