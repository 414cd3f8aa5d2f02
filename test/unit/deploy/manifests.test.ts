// deploy/compose and deploy/k8s: 3 Topicast nodes on a 3-server NATS cluster with JetStream.
// No Docker engine or Kubernetes cluster runs here, so the files are parsed (the `yaml` package)
// and checked for what breaks a deployment silently: every TOPICAST_* variable is a setting the
// broker knows and its value passes the broker's own validation (loadConfig); ports, probes,
// selectors and volume mounts point at things that exist; TOPICAST_BUS names every NATS server
// on its client port; grace periods outlast the drain; the NATS configs pass `nats-server -t` and
// the load balancer's config `haproxy -c` (skipped with a reason when the tool is missing, required under CI).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import type * as ConfigModule from '../../../broker/src/config.js';
import type * as SettingsModule from '../../../broker/src/settings.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const dist = new URL('../../../../broker/dist/', import.meta.url);
const { BROKER_SETTINGS, loadConfig } = (await import(new URL('config.js', dist).href)) as typeof ConfigModule;
const { envName } = (await import(new URL('settings.js', dist).href)) as typeof SettingsModule;
const ENV_NAMES = new Set<string>(BROKER_SETTINGS.map((s) => envName(s.key)));

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML

const tools: Record<string, string | undefined> = {};
for (const [bin, pkg] of [['nats-server', 'nats-server'], ['haproxy', 'haproxy']] as const) {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  tools[bin] = r.error ? `${bin} is not installed (Debian package ${pkg})` : undefined;
  if (tools[bin] && process.env.CI) throw new Error(`${tools[bin]}; required in CI`);
  if (tools[bin]) console.log(`# skipping ${bin} checks: ${tools[bin]}`);
}

const scratch = mkdtempSync(join(tmpdir(), 'topicast-manifests-'));
test.after(() => rmSync(scratch, { recursive: true, force: true }));

/** `nats-server -t` on a config text, with the environment its `$VAR`s read. */
function checkNatsConfig(text: string, env: Record<string, string>, what: string): void {
  if (tools['nats-server']) return;
  const file = join(scratch, `nats-${Object.values(env).join('-')}.conf`);
  writeFileSync(file, text);
  const r = spawnSync('nats-server', ['-c', file, '-t'], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env }, timeout: 10_000 });
  assert.equal(r.status, 0, `${what}: nats-server -t: ${r.stdout}${r.stderr}`);
}

/** What a Topicast node's configuration must satisfy, whatever runs it. Returns the resolved config. */
function checkTopicastEnv(env: Record<string, string>, where: string): ConfigModule.BrokerConfig {
  for (const name of Object.keys(env).filter((n) => n.startsWith('TOPICAST_'))) {
    assert.ok(ENV_NAMES.has(name), `${where}: ${name} is not a broker setting (see topicast --help)`);
  }
  // The broker's own validation: a bad value would stop the node at start-up with exit code 2.
  return loadConfig([], env);
}

/** `nats://a:4222,nats://b:4222` → ["a:4222", "b:4222"], each checked to be a NATS URL. */
function busServers(url: string, where: string): string[] {
  return url.split(',').map((part) => {
    const u = new URL(part.trim());
    assert.equal(u.protocol, 'nats:', `${where}: TOPICAST_BUS joins the NATS cluster`);
    return `${u.hostname}:${u.port || '4222'}`;
  });
}

/** The listen port and routes of a nats.conf (the subset these files use). */
function natsConf(text: string): { port: number; routes: string[]; storeDir: string; clusterName: string } {
  const port = Number(/^\s*listen:\s*[\d.]*:(\d+)\s*$/m.exec(text)?.[1]);
  const routesBlock = /routes:\s*\[([^\]]*)\]/.exec(text)?.[1] ?? '';
  const routes = [...routesBlock.matchAll(/nats:\/\/([\w.-]+:\d+)/g)].map((m) => m[1]!);
  const storeDir = /jetstream\s*\{[^}]*store_dir:\s*(\S+)/.exec(text)?.[1] ?? '';
  const clusterName = /cluster\s*\{[^}]*name:\s*(\S+)/.exec(text)?.[1] ?? '';
  assert.ok(port > 0 && routes.length > 0 && storeDir && clusterName, 'nats.conf has listen, jetstream.store_dir, cluster.name and cluster.routes');
  assert.match(text, /^\s*server_name:\s*\$NATS_NAME\s*$/m, 'JetStream clustering needs a unique server name per server');
  assert.match(text, /jetstream\s*\{[^}]*domain:\s*topicast\b/, 'the JetStream domain that leaf nodes name (docs/SCALING.md)');
  assert.match(text, /leafnodes\s*\{[^}]*listen:\s*[\d.]*:7422/, 'leaf nodes of worker machines attach on 7422');
  return { port, routes, storeDir, clusterName };
}

/** Docker duration ("20s", "1m30s") in ms. */
function durationMs(text: string): number {
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  assert.ok(ms > 0, `not a duration: ${text}`);
  return ms;
}

/** main.ts exits by force after drainMs + shutdownTimeoutMs + 2 s: a supervisor must wait longer than that before SIGKILL. */
const stopBoundMs = (c: ConfigModule.BrokerConfig): number => c.drainMs + c.shutdownTimeoutMs + 2000;

const dockerUser = /^USER\s+(\d+)/m.exec(readFileSync(join(ROOT, 'deploy/docker/Dockerfile'), 'utf8'))?.[1];

// ---- compose -------------------------------------------------------------------------------

const COMPOSE_DIR = join(ROOT, 'deploy/compose');
const compose = parse(readFileSync(join(COMPOSE_DIR, 'compose.yaml'), 'utf8'), { merge: true }) as Obj;
const services = compose.services as Record<string, Obj>;
const natsServices = Object.keys(services).filter((n) => String(services[n]!.image).startsWith('nats:'));
const topicastServices = Object.keys(services).filter((n) => services[n]!.environment?.TOPICAST_BUS !== undefined);

test('compose: 3 NATS servers with JetStream, each with its own volume and a valid config', () => {
  assert.equal(natsServices.length, 3);
  const text = readFileSync(join(COMPOSE_DIR, 'nats.conf'), 'utf8');
  const conf = natsConf(text);
  assert.deepEqual(conf.routes.sort(), natsServices.map((n) => `${n}:6222`).sort(), 'every server routes to all three');
  const names = new Set<string>();
  for (const name of natsServices) {
    const s = services[name]!;
    assert.match(String(s.image), /^nats:2(\.|$)/);
    const cmd = (s.command as string[]).join(' ');
    const confMount = (s.volumes as string[]).find((v) => v.startsWith('./nats.conf:'));
    assert.ok(confMount, `${name} mounts nats.conf`);
    assert.ok(cmd.includes(`--config ${confMount.split(':')[1]}`), `${name} runs with the mounted config`);
    const data = (s.volumes as string[]).find((v) => v.split(':')[1] === conf.storeDir);
    assert.ok(data && data.split(':')[0]! in compose.volumes, `${name}: a named volume holds JetStream's store_dir ${conf.storeDir}`);
    names.add(s.environment.NATS_NAME);
    checkNatsConfig(text, { NATS_NAME: s.environment.NATS_NAME }, `compose ${name}`);
  }
  assert.equal(names.size, 3, 'server names are unique');
});

test('compose: 3 Topicast nodes whose TOPICAST_* settings the broker accepts, on the NATS cluster', () => {
  assert.equal(topicastServices.length, 3);
  const natsPort = natsConf(readFileSync(join(COMPOSE_DIR, 'nats.conf'), 'utf8')).port;
  const ids = new Set<string>();
  for (const name of topicastServices) {
    const s = services[name]!;
    assert.equal(s.build.dockerfile, 'deploy/docker/Dockerfile');
    assert.equal(join(COMPOSE_DIR, s.build.context, '/'), ROOT, `${name} builds from the repository root`);
    const env = Object.fromEntries(Object.entries(s.environment as Obj).map(([k, v]) => [k, String(v)]));
    const config = checkTopicastEnv(env, `compose ${name}`);
    assert.deepEqual(busServers(config.bus!, name).sort(), natsServices.map((n) => `${n}:${natsPort}`).sort(), `${name}: TOPICAST_BUS names every NATS server`);
    ids.add(config.nodeId!);
    assert.ok(config.drainMs > 0, `${name}: several nodes serve, so a stopping node drains its clients to the others`);
    assert.ok(durationMs(s.stop_grace_period) > stopBoundMs(config), `${name}: stop_grace_period ${s.stop_grace_period} outlasts drain + shutdown (${stopBoundMs(config)} ms)`);
    assert.ok((s.volumes as string[]).some((v) => v.endsWith(':/data')), `${name}: /data (TOPICAST_DATA in the image) is a volume`);
    for (const dep of natsServices) assert.ok((s.depends_on as string[]).includes(dep), `${name} starts after ${dep}`);
  }
  assert.equal(ids.size, 3, 'TOPICAST_NODE_ID is unique per node');
});

test('compose: the load balancer publishes 8080 and 1883 and forwards to every ready node', () => {
  const lb = Object.values(services).find((s) => String(s.image).startsWith('haproxy:'));
  assert.ok(lb, 'a haproxy service');
  assert.deepEqual([...(lb.ports as string[])].sort(), ['1883:1883', '8080:8080']);
  // Every connection reaches the nodes from the balancer's address: the per-IP limits must skip it.
  const lbAddress = lb.networks?.default?.ipv4_address as string | undefined;
  assert.ok(lbAddress, 'the balancer has a fixed address');
  for (const name of topicastServices) {
    const env = Object.fromEntries(Object.entries(services[name]!.environment as Obj).map(([k, v]) => [k, String(v)]));
    assert.ok(checkTopicastEnv(env, name).limitsExemptIps.includes(lbAddress), `${name}: TOPICAST_LIMITS_EXEMPT_IPS names the balancer (${lbAddress})`);
  }
  const cfgMount = (lb.volumes as string[]).find((v) => v.startsWith('./haproxy.cfg:'));
  assert.ok(cfgMount, 'haproxy.cfg is mounted');
  const cfgFile = join(COMPOSE_DIR, 'haproxy.cfg');
  const cfg = readFileSync(cfgFile, 'utf8');
  // Each backend: which node ports it targets and how it checks them.
  const backends = new Map<string, { servers: string[]; text: string }>();
  for (const m of cfg.matchAll(/^backend (\S+)\n((?:[ \t]+.*\n?)*)/gm)) {
    backends.set(m[1]!, { text: m[2]!, servers: [...m[2]!.matchAll(/^\s+server \S+ (\S+)/gm)].map((x) => x[1]!) });
  }
  const frontends = [...cfg.matchAll(/^frontend \S+\n\s+bind :(\d+)\n\s+default_backend (\S+)/gm)].map((m) => ({ port: m[1]!, backend: m[2]! }));
  assert.deepEqual(frontends.map((f) => f.port).sort(), ['1883', '8080']);
  const config = checkTopicastEnv({}, 'defaults');
  for (const f of frontends) {
    const b = backends.get(f.backend);
    assert.ok(b, `backend ${f.backend} exists`);
    const nodePort = f.port === '8080' ? config.port : config.mqttPort;
    assert.deepEqual(b.servers.sort(), topicastServices.map((n) => `${n}:${nodePort}`).sort(), `port ${f.port} reaches every node on its own port`);
    assert.match(b.text, /http-check send meth GET uri \/healthz ver HTTP\/1\.1 hdr Host \S+/, `${f.backend}: readiness from /healthz over HTTP/1.1 (uWS answers 1.0 with 505)`);
    assert.match(b.text, /http-check expect status 200/, `${f.backend}: only 200 is ready`);
    if (f.port === '1883') assert.match(b.text, new RegExp(`check port ${config.port}\\b`), 'the MQTT backend checks the HTTP port');
  }
  if (tools.haproxy) return;
  const r = spawnSync('haproxy', ['-c', '-f', cfgFile], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `haproxy -c: ${r.stdout}${r.stderr}`);
  // Outside compose the node names do not resolve; anything else it warns about is a mistake.
  const warnings = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('[WARNING]') && !/could not resolve address 'topicast-\d'/.test(l));
  assert.deepEqual(warnings, []);
});

// ---- Kubernetes ----------------------------------------------------------------------------

const K8S_DIR = join(ROOT, 'deploy/k8s');
const k8sFiles = readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
const objects: Obj[] = k8sFiles.flatMap((f) => parseAllDocuments(readFileSync(join(K8S_DIR, f), 'utf8')).map((d) => {
  assert.deepEqual(d.errors, [], `${f}: YAML errors`);
  return d.toJS() as Obj;
})).filter(Boolean);
const find = (kind: string, name: string): Obj => {
  const o = objects.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(o, `${kind}/${name} exists`);
  return o;
};
const labelsMatch = (selector: Obj, labels: Obj): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

function checkWorkload(w: Obj): void {
  const pod = w.spec.template;
  assert.ok(labelsMatch(w.spec.selector.matchLabels, pod.metadata.labels), `${w.metadata.name}: selector matches the pod template`);
  const ports = new Map<string, number>();
  for (const c of pod.spec.containers as Obj[]) for (const p of c.ports ?? []) ports.set(p.name, p.containerPort);
  for (const c of pod.spec.containers as Obj[]) {
    assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory, `${c.name}: resource requests and a memory limit`);
    for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
      const port = c[probe]?.httpGet?.port;
      assert.ok(port !== undefined, `${c.name}: ${probe} over HTTP`);
      assert.ok(typeof port === 'number' ? [...ports.values()].includes(port) : ports.has(port), `${c.name}: ${probe} port ${port} is a container port`);
    }
    const mounts = (c.volumeMounts ?? []) as Obj[];
    const volumes = new Set([...(pod.spec.volumes ?? []).map((v: Obj) => v.name), ...(w.spec.volumeClaimTemplates ?? []).map((v: Obj) => v.metadata.name)]);
    for (const m of mounts) assert.ok(volumes.has(m.name), `${c.name}: volume ${m.name} is declared`);
  }
  const sec = pod.spec.securityContext;
  assert.equal(sec?.runAsNonRoot, true, `${w.metadata.name} runs as non-root`);
  // Services that select this workload forward to ports it has.
  for (const svc of objects.filter((o) => o.kind === 'Service' && labelsMatch(o.spec.selector, pod.metadata.labels))) {
    for (const p of svc.spec.ports as Obj[]) assert.ok(typeof p.targetPort === 'number' ? [...ports.values()].includes(p.targetPort) : ports.has(p.targetPort), `Service ${svc.metadata.name}: targetPort ${p.targetPort} exists`);
  }
  const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget' && labelsMatch(o.spec.selector.matchLabels, pod.metadata.labels));
  assert.ok(pdb, `${w.metadata.name} has a PodDisruptionBudget`);
  const allowedDown = pdb.spec.maxUnavailable ?? w.spec.replicas - pdb.spec.minAvailable;
  assert.equal(allowedDown, 1, `${w.metadata.name}: the budget lets one pod go at a time (a NATS majority keeps JetStream's quorum; two Topicast nodes take the third's clients)`);
}

test('k8s: kustomization lists every manifest', () => {
  const k = parse(readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8')) as Obj;
  assert.deepEqual([...k.resources].sort(), [...k8sFiles].sort());
});

test('k8s: NATS StatefulSet — 3 servers, JetStream on PVCs, headless service, probes, valid config', () => {
  const sts = find('StatefulSet', 'nats');
  assert.equal(sts.spec.replicas, 3);
  checkWorkload(sts);
  const headless = find('Service', sts.spec.serviceName);
  assert.equal(headless.spec.clusterIP, 'None', 'the StatefulSet\'s service is headless (per-pod DNS names)');
  assert.equal(headless.spec.publishNotReadyAddresses, true, 'servers find each other before they are ready');
  const c = sts.spec.template.spec.containers[0] as Obj;
  assert.match(String(c.image), /^nats:2(\.|$)/);
  const configPath = (c.args as string[])[(c.args as string[]).indexOf('--config') + 1]!;
  const configMount = (c.volumeMounts as Obj[]).find((m) => configPath.startsWith(`${m.mountPath}/`));
  assert.ok(configMount, 'the --config file is mounted');
  const cmName = (sts.spec.template.spec.volumes as Obj[]).find((v) => v.name === configMount.name)!.configMap.name;
  const text = find('ConfigMap', cmName).data[configPath.slice(configMount.mountPath.length + 1)] as string;
  const conf = natsConf(text);
  const pods = Array.from({ length: sts.spec.replicas }, (_, i) => `${sts.metadata.name}-${i}`);
  assert.deepEqual(conf.routes.sort(), pods.map((p) => `${p}.${headless.metadata.name}:6222`).sort(), 'routes name every pod of the StatefulSet');
  assert.deepEqual(c.env.find((e: Obj) => e.name === 'NATS_NAME').valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'server name = pod name');
  const data = (c.volumeMounts as Obj[]).find((m) => m.mountPath === conf.storeDir);
  assert.ok(data && sts.spec.volumeClaimTemplates.some((t: Obj) => t.metadata.name === data.name), 'JetStream\'s store_dir is a persistent volume claim');
  const ports = new Map((c.ports as Obj[]).map((p) => [p.name, p.containerPort]));
  assert.equal(ports.get('client'), conf.port);
  assert.match(c.livenessProbe.httpGet.path, /^\/healthz/);
  assert.match(c.readinessProbe.httpGet.path, /^\/healthz/);
  for (const p of pods) checkNatsConfig(text, { NATS_NAME: p }, `k8s ${p}`);
});

test('k8s: Topicast Deployment — 3 nodes, /healthz readiness, TOPICAST_* accepted by the broker, drain within the grace period', () => {
  const d = find('Deployment', 'topicast');
  assert.equal(d.spec.replicas, 3);
  checkWorkload(d);
  const pod = d.spec.template.spec;
  const c = pod.containers[0] as Obj;
  const env: Record<string, string> = {};
  for (const e of c.env as Obj[]) {
    if (e.valueFrom) {
      assert.deepEqual(e.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, `${e.name}: only the pod name comes from the downward API`);
      env[e.name] = 'topicast-7d9c5b6f4-x2k8q'; // what Kubernetes puts there
    } else env[e.name] = String(e.value);
  }
  assert.ok(c.env.some((e: Obj) => e.name === 'TOPICAST_NODE_ID' && e.valueFrom), 'TOPICAST_NODE_ID is the pod name');
  const config = checkTopicastEnv(env, 'k8s topicast');
  const sts = find('StatefulSet', 'nats');
  const natsPort = (sts.spec.template.spec.containers[0].ports as Obj[]).find((p) => p.name === 'client')?.containerPort;
  const pods = Array.from({ length: sts.spec.replicas }, (_, i) => `${sts.metadata.name}-${i}.${sts.spec.serviceName}:${natsPort}`);
  assert.deepEqual(busServers(config.bus!, 'k8s').sort(), pods.sort(), 'TOPICAST_BUS names every NATS pod');
  assert.ok(config.drainMs > 0, 'a stopping node drains its clients to the others');
  assert.ok(pod.terminationGracePeriodSeconds * 1000 > stopBoundMs(config), `terminationGracePeriodSeconds outlasts drain + shutdown (${stopBoundMs(config)} ms)`);
  const ports = new Map((c.ports as Obj[]).map((p) => [p.name, p.containerPort]));
  assert.equal(ports.get('http'), config.port);
  assert.equal(ports.get('mqtt'), config.mqttPort);
  assert.equal(c.readinessProbe.httpGet.path, '/healthz');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz?live', 'liveness does not follow readiness: a NATS outage must not restart every node');
  assert.equal(String(pod.securityContext.runAsUser), dockerUser, 'runAsUser is the image\'s USER');
  const data = (c.volumeMounts as Obj[]).find((m) => m.mountPath === '/data');
  assert.ok(data, '/data (TOPICAST_DATA in the image) is a volume: the root filesystem is read-only');
  const svc = objects.find((o) => o.kind === 'Service' && labelsMatch(o.spec.selector, d.spec.template.metadata.labels))!;
  assert.deepEqual((svc.spec.ports as Obj[]).map((p) => p.port).sort(), [1883, 8080]);
});
