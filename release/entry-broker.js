// Entry of the packaged `topicast`: says in one line when this package has no uWebSockets.js build for the
// running Node (instead of the addon loader's stack trace), then runs the broker (broker/src/main.ts).
import { existsSync, readFileSync } from 'node:fs';

const platform = JSON.parse(readFileSync(new URL('./platform.json', import.meta.url), 'utf8'));
const binary = new URL(`./node_modules/uWebSockets.js/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`, import.meta.url);
if (!existsSync(binary)) {
  process.stderr.write(`topicast: this package (${platform.target}) runs on ${platform.nodes.join(', ')}; this is Node ${process.version} on ${process.platform}-${process.arch}\n`);
  process.exit(1);
}
await import('../broker/dist/main.js');
