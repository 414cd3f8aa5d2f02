/**
 * The persistent store modules, loaded from the broker's build. The broker's package entry
 * (`@topicast/broker`) does not export them yet, so they are imported by file URL.
 */
import type * as LogModule from '../../../../broker/src/store/log.js';
import type * as RecordModule from '../../../../broker/src/store/record.js';
import type * as Crc32Module from '../../../../broker/src/store/crc32.js';

const dist = new URL('../../../../../broker/dist/store/', import.meta.url);

export const logModule = (await import(new URL('log.js', dist).href)) as typeof LogModule;
export const recordModule = (await import(new URL('record.js', dist).href)) as typeof RecordModule;
export const crc32Module = (await import(new URL('crc32.js', dist).href)) as typeof Crc32Module;
/** Absolute file URL of the compiled module, for child processes. */
export const logModuleUrl = new URL('log.js', dist).href;
export const crc32ModuleUrl = new URL('crc32.js', dist).href;
export const messageModuleUrl = new URL('../core/message.js', dist).href;
