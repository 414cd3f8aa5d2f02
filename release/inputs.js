// The content hash of everything the release packages are built from (the build output, the packaging
// files, the units, the uWebSockets.js version): the test runner builds the packages once per distinct
// hash into .cache/release-test/ and the release tests check they inspect a build of the current code.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const INPUTS = ['broker/dist', 'sdk/dist', 'release', 'deploy/systemd', 'broker/package.json', 'package.json', 'node_modules/uWebSockets.js/package.json'];

function files(path) {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).sort().flatMap((name) => (name.endsWith('.tsbuildinfo') ? [] : files(join(path, name))));
}

/** sha256 (hex) of the release inputs under the repository `root`. */
export function releaseInputsHash(root) {
  const hash = createHash('sha256');
  for (const input of INPUTS) {
    for (const file of files(join(root, input))) {
      hash.update(relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
    }
  }
  return hash.digest('hex');
}
