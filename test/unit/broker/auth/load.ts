/**
 * The broker's auth modules, loaded from its build by file URL (the package entry
 * `@topicast/broker` exports only the embedding API).
 */
import type * as AuthModule from '../../../../broker/src/auth/index.js';
import type * as OriginModule from '../../../../broker/src/auth/origin.js';
import type * as PermissionsModule from '../../../../broker/src/auth/permissions.js';
import type * as MqttAuthModule from '../../../../broker/src/auth/mqtt.js';

const dist = new URL('../../../../../broker/dist/auth/', import.meta.url);

export const auth = (await import(new URL('index.js', dist).href)) as typeof AuthModule;
export const origin = (await import(new URL('origin.js', dist).href)) as typeof OriginModule;
export const permissions = (await import(new URL('permissions.js', dist).href)) as typeof PermissionsModule;
export const mqttAuth = (await import(new URL('mqtt.js', dist).href)) as typeof MqttAuthModule;
