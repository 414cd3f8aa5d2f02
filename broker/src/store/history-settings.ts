/** Message history settings (PROTOCOL.md §4.6, core/history.ts); merged into the broker's configuration (config.ts). */
import type { SettingSpec } from '../settings.js';

export const HISTORY_SETTINGS = [
  { key: 'historyFilters', type: 'list', default: [], doc: 'filter patterns whose topics keep history for resume (e.g. devices/#); empty = no history, so brokers that do not need it pay nothing' },
  { key: 'historyMaxMessages', type: 'int', default: 1000, min: 1, max: 10_000_000, doc: 'newest messages kept per history topic: 1000 covers a few minutes of a 1–10 Hz reading, the gap of a page reload or a network blip' },
  { key: 'historyMaxAgeSec', type: 'int', default: 3600, min: 1, max: 30 * 86_400, doc: 'messages older than this leave the history; a client away longer reloads its state anyway' },
  { key: 'historyMaxBytes', type: 'int', default: 64 * 1024 * 1024, min: 64 * 1024, max: 64 * 1024 * 1024 * 1024, doc: 'memory for history (payload + topic + ~104 bytes per message); beyond it the oldest messages go, across topics' },
  { key: 'historyMaxTopics', type: 'int', default: 100_000, min: 1, max: 100_000_000, doc: 'history topics kept; a new one beyond it evicts the topic published to least recently (bounds per-topic overhead)' },
  { key: 'historyMaxRows', type: 'int', default: 10_000, min: 1, max: 10_000_000, doc: 'most rows one native history query or subscribe prefill returns (its default limit too); a chart of a day at one point per 10 s needs 8,640' },
  { key: 'historyMaxExportRows', type: 'int', default: 100_000, min: 1, max: 100_000_000, doc: 'most rows one GET /api/history export streams: a day of a 1 Hz reading (86,400) fits; the answer is streamed, never held whole' },
  { key: 'historyMaxQueryBytes', type: 'int', default: 16 * 1024 * 1024, min: 1024, max: 64 * 1024 * 1024 * 1024, doc: 'payload + topic bytes one history answer may carry; beyond it the answer stops, marked complete: false (bounds the work of one request with large payloads)' },
  { key: 'historyQueriesPerSec', type: 'int', default: 10, min: 0, max: 1_000_000, doc: 'history queries (and prefills) per second per connection, and per client address over HTTP (0 = unlimited); a page opening ten charts at once fits' },
] as const satisfies readonly SettingSpec[];
