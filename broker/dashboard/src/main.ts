/**
 * The dashboard's composition root: builds the views, routes each delivery to
 * the models (explorer, devices, series, $SYS), and renders everything dirty
 * once per animation frame. A one-second tick refreshes rates and "last seen".
 * Message handling never touches the DOM.
 */
import { ChartsView } from './charts.js';
import { csvExportUrl, defaultUrl, Link, type LinkState } from './connection.js';
import { decodePayload } from './decode.js';
import { DetailView } from './detail.js';
import { DevicesView, toReading } from './devices.js';
import { byId, setAttr, setText } from './dom.js';
import { ExplorerView, MAX_TOPICS } from './explorer.js';
import { formatRate } from './format.js';
import { FrameScheduler } from './frame.js';
import { PublishForm } from './publish.js';
import { SeriesStore } from './series.js';
import { SysView } from './sys.js';
import { initTheme } from './theme.js';

const URL_KEY = 'topicast.url';
const TOKEN_KEY = 'topicast.token';

const scheduler = new FrameScheduler();
const store = new SeriesStore();
const requestRender = (): void => scheduler.schedule(render);

const announcer = byId('announcer');
const announce = (text: string): void => {
  announcer.textContent = text;
};

const devices = new DevicesView(byId('devices-grid'), byId('devices-empty'), {
  onToggleChart: (topic, label, unit) => charts.toggle(topic, label, unit),
  isCharted: (topic) => charts.isOpen(topic),
  requestRender,
  sendCommand: (topic, value) => (link ? link.request(topic, value) : Promise.reject(new Error('not connected'))),
});
const charts = new ChartsView(byId('charts-grid'), byId('charts-empty'), store, {
  onChange: (topic, open) => devices.setCharted(topic, open),
  requestRender,
  announce,
  loadHistory: (topic) => void loadChartHistory(topic),
  exportLink: (topic) => ({ href: csvExportUrl(currentUrl, topic, store.windowSec, Date.now()), onClick: (e) => downloadWithToken(e) }),
});
const detail = new DetailView((topic) => publishForm.useTopic(topic));
let detailDirty = false;
const explorer = new ExplorerView(byId<HTMLUListElement>('topic-tree'), {
  onSelect: () => {
    detailDirty = true;
    requestRender();
  },
  requestRender,
});
const sys = new SysView(byId('sys-figures'), byId('sys-minor'), requestRender);
let link: Link | undefined;
const publishForm = new PublishForm(
  () => link,
  (topic, retain) => {
    if (retain) explorer.markRetained(topic);
  },
);

const devicesCount = byId('devices-count');
const explorerStats = byId('explorer-stats');
const treeEmpty = byId('tree-empty');

function render(): void {
  devices.render();
  charts.render();
  explorer.render();
  sys.render();
  if (detailDirty) {
    detailDirty = false;
    const path = explorer.selectedPath();
    const d = path === undefined ? undefined : explorer.detail(path);
    detail.show(d, Date.now());
    if (d !== undefined) void loadDetailHistory(d.path, d.count);
    else historyPath = undefined;
  }
  const { total, online } = devices.summary();
  setText(devicesCount, total ? `${total} device${total === 1 ? '' : 's'} · ${online} online` : '');
  treeEmpty.hidden = explorer.topicCount > 0;
}

// ---- history (PROTOCOL.md §4.8) ------------------------------------------------

/** A chart starts with the reading's stored points: the newest of its window, from the broker's history. */
async function loadChartHistory(topic: string): Promise<void> {
  const current = link;
  if (!current) return;
  try {
    await current.ready;
    const rows = await current.history(topic, { sinceMs: Date.now() - store.windowSec * 1000, limit: store.maxPoints, newestFirst: true });
    const points: { x: number; y: number }[] = [];
    for (let i = rows.length - 1; i >= 0; i--) {
      const r = rows[i]!;
      const reading = toReading(decodePayload(r.payload, r.contentType));
      if (typeof reading.value === 'number') points.push({ x: (reading.tsMs ?? r.ts) / 1000, y: reading.value });
    }
    if (current !== link || !charts.isOpen(topic)) return;
    store.prefill(topic, points, devices.unitOf(topic));
    charts.onData(topic);
  } catch {
    // No history kept for it (or the link dropped): the chart starts with what the page saw itself.
  }
}

let historyPath: string | undefined;
let historyCount = -1;

/** The detail panel's last values: asked again when the selection changes or the topic got messages. */
async function loadDetailHistory(path: string, count: number): Promise<void> {
  if (path === historyPath && count === historyCount) return;
  const changed = path !== historyPath;
  historyPath = path;
  historyCount = count;
  detail.exportEl.href = csvExportUrl(currentUrl, path, store.windowSec, Date.now());
  const current = link;
  if (!current) return;
  try {
    const rows = await current.history(path, { limit: 10, newestFirst: true });
    if (historyPath !== path) return;
    detail.showHistory(rows.length === 0 ? 'No stored values for this topic.' : rows.map((r) => ({ ts: r.ts, decoded: decodePayload(r.payload, r.contentType) })));
  } catch (err) {
    if (historyPath === path && changed) detail.showHistory(err instanceof Error && /keeps no history/.test(err.message) ? 'This broker keeps no history (--history-filters).' : 'No stored values for this topic.');
  }
}

/** Export links carry no credentials: with a token, the download is fetched with it instead. */
function downloadWithToken(e: MouseEvent): void {
  const token = currentToken;
  const a = e.currentTarget as HTMLAnchorElement;
  if (!token) {
    a.href = a.href.replace(/since=\d+/, `since=${Date.now() - store.windowSec * 1000}`);
    return;
  }
  e.preventDefault();
  void fetch(a.href, { headers: { Authorization: `Bearer ${token}` } }).then(async (res) => {
    if (!res.ok) throw new Error(`export failed: HTTP ${res.status}`);
    const url = URL.createObjectURL(await res.blob());
    const save = document.createElement('a');
    save.href = url;
    save.download = `${new URL(a.href).pathname.split('/').pop() ?? 'history'}.csv`;
    save.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }).catch((err: unknown) => showError(err instanceof Error ? err.message : String(err)));
}

function onMessage(topic: string, payload: Uint8Array, contentType: string | undefined, retained: boolean): void {
  const nowMs = Date.now();
  const decoded = explorer.onMessage(topic, payload, contentType, retained, nowMs);
  if (topic.startsWith('devices/')) {
    const reading = devices.onMessage(topic, decoded, retained, nowMs);
    if (reading && typeof reading.value === 'number') {
      store.push(topic, (reading.tsMs ?? nowMs) / 1000, reading.value, devices.unitOf(topic), retained && reading.tsMs === undefined);
      charts.onData(topic);
    }
  } else if (topic.startsWith('$SYS/')) {
    sys.onMessage(topic, decoded, nowMs);
  }
  if (explorer.isSelected(topic)) detailDirty = true;
}

// ---- connection -------------------------------------------------------------

const conn = byId('conn');
const connText = byId('conn-text');
const settings = byId<HTMLDetailsElement>('settings');
const urlInput = byId<HTMLInputElement>('settings-url');
const tokenInput = byId<HTMLInputElement>('settings-token');
let currentUrl = '';
let currentToken = '';
let generation = 0;

let linkState: LinkState = 'connecting';
let lastError: string | undefined;

function showState(state: LinkState): void {
  linkState = state;
  if (state === 'open') lastError = undefined;
  paintState();
}

function showError(message: string): void {
  lastError = message;
  paintState();
}

/**
 * The connection pill. While the SDK retries, a failed dial is the reason shown next to
 * the state, not a state of its own; an error while open or after giving up turns it red.
 */
function paintState(): void {
  const pill = lastError && (linkState === 'open' || linkState === 'closed') ? 'error' : linkState;
  setAttr(conn, 'data-state', pill);
  const where = currentUrl.replace(/^wss?:\/\//, '');
  const base =
    linkState === 'open' ? `Connected to ${where}` :
    linkState === 'connecting' ? `Connecting to ${where}…` :
    linkState === 'reconnecting' ? `Reconnecting to ${where}…` :
    'Disconnected';
  setText(connText, lastError ? `${base} (${lastError})` : base);
}

function readSetting(storage: () => Storage, key: string): string | undefined {
  try {
    return storage().getItem(key) ?? undefined;
  } catch {
    return undefined; // storage disabled: defaults apply
  }
}

function writeSetting(storage: () => Storage, key: string, value: string | undefined): void {
  try {
    if (value) storage().setItem(key, value);
    else storage().removeItem(key);
  } catch {
    // storage disabled: the setting lasts for this page only
  }
}

async function connectTo(url: string, token: string): Promise<void> {
  const gen = ++generation;
  const old = link;
  link = undefined;
  if (url !== currentUrl) {
    // Another broker: forget everything the old one told us.
    explorer.clear();
    devices.clear();
    charts.closeAll();
    store.clear();
    sys.clear();
  }
  currentUrl = url;
  currentToken = token;
  lastError = undefined;
  byId('agent-hint').textContent = `topicast-agent --url ${url}`;
  showState('connecting');
  if (old) await old.close().catch((err: unknown) => showError(err instanceof Error ? err.message : String(err)));
  if (gen !== generation) return;
  try {
    const next = await Link.open(url, token, {
      onMessage,
      onState: (state) => {
        if (gen !== generation) return;
        showState(state);
        // The SDK gave up (e.g. the broker refused the token): show the settings to fix it.
        if (state === 'closed') settings.open = true;
      },
      onError: (message) => {
        if (gen === generation) showError(message);
      },
    });
    if (gen !== generation) {
      await next.close();
      return;
    }
    link = next;
    await next.ready;
  } catch (err) {
    if (gen === generation) showError(err instanceof Error ? err.message : String(err));
  }
}

byId<HTMLFormElement>('settings-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const url = urlInput.value.trim();
  const token = tokenInput.value;
  writeSetting(() => localStorage, URL_KEY, url === defaultUrl() ? undefined : url);
  writeSetting(() => sessionStorage, TOKEN_KEY, token || undefined);
  settings.open = false;
  void connectTo(url, token);
});

// ---- wiring -------------------------------------------------------------------

let filterTimer: ReturnType<typeof setTimeout> | undefined;
byId<HTMLInputElement>('topic-filter').addEventListener('input', (e) => {
  const value = (e.target as HTMLInputElement).value;
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => explorer.setFilter(value), 120); // one tree walk per pause in typing
});

byId<HTMLInputElement>('device-filter').addEventListener('input', (e) => devices.setFilter((e.target as HTMLInputElement).value));

initTheme(byId<HTMLButtonElement>('theme-toggle'), () => charts.retheme());

let lastTickMs = Date.now();
setInterval(() => {
  const nowMs = Date.now();
  const dtSec = Math.max(0.001, (nowMs - lastTickMs) / 1000);
  lastTickMs = nowMs;
  explorer.tick(dtSec);
  devices.tick(nowMs);
  const rate = formatRate(explorer.totalRate);
  const hidden = explorer.overflowCount ? ` (${explorer.overflowCount}${explorer.overflowCount >= MAX_TOPICS ? '+' : ''} more not shown)` : '';
  setText(explorerStats, `${explorer.topicCount} topic${explorer.topicCount === 1 ? '' : 's'}${hidden}${rate ? ` · ${rate}` : ''}`);
  if (explorer.selectedPath() !== undefined) {
    detailDirty = true;
    requestRender();
  }
}, 1000);

const params = new URLSearchParams(location.search);
const startUrl = params.get('url') ?? readSetting(() => localStorage, URL_KEY) ?? defaultUrl();
const startToken = readSetting(() => sessionStorage, TOKEN_KEY) ?? '';
urlInput.value = startUrl;
tokenInput.value = startToken;
requestRender();
void connectTo(startUrl, startToken);
