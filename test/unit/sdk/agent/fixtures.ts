// Fixture trees for the agent's readers: test/fixtures/agent/{pi,laptop,vm}, and `<tree>.next` overlays
// holding the counters of a second read for the rate readers.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = fileURLToPath(new URL('../../../../fixtures/agent/', import.meta.url));

export function fixture(name: 'pi' | 'laptop' | 'vm'): string {
  return join(FIXTURES, name);
}

/** A writable copy of a tree; `advance()` overlays `<name>.next`. Removed by `dispose()`. */
export function copyFixture(name: 'pi' | 'laptop' | 'vm'): { root: string; advance(): void; dispose(): void } {
  const root = mkdtempSync(join(tmpdir(), `agent-${name}-`));
  cpSync(fixture(name), root, { recursive: true });
  return {
    root,
    advance: () => cpSync(join(FIXTURES, `${name}.next`), root, { recursive: true }),
    dispose: () => rmSync(root, { recursive: true, force: true }),
  };
}
