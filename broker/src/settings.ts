/**
 * Setting specs: one table drives flags, `TOPICAST_*` env variables, the config
 * file, validation, `--help` and the README's configuration reference.
 * Modules contribute their own tables (e.g. protocol/mqtt/settings.ts).
 */

export type SettingType = 'int' | 'string' | 'bool' | 'enum' | 'list';

export interface SettingSpec {
  /** camelCase key in the config object and the config file. */
  key: string;
  type: SettingType;
  default: number | string | boolean | string[] | undefined;
  /** One line for --help and the README: what it is and why the default. */
  doc: string;
  min?: number;
  max?: number;
  values?: readonly string[];
}

export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function envName(key: string): string {
  return `TOPICAST_${flagName(key).replace(/-/g, '_').toUpperCase()}`;
}
