/** Display formatting shared by the views: numbers, units, byte sizes, durations. Pure. */

const BYTE_UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

/** A number with a precision that suits its magnitude: 48.2, 0.031, 1234. */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return String(n);
  const a = Math.abs(n);
  const digits = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3;
  const s = n.toFixed(digits);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** Byte counts humanised (1.5 MB); `perSecond` appends /s. */
export function formatBytes(n: number, perSecond = false): string {
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 ? String(Math.round(v)) : v.toFixed(Math.abs(v) >= 100 ? 0 : 1);
  return `${digits} ${BYTE_UNITS[i]}${perSecond ? '/s' : ''}`;
}

/** A value with its unit, humanising byte units: (1536, 'B') → "1.5 KB", (48.2, '°C') → "48.2 °C". */
export function formatWithUnit(value: number, unit: string | undefined): string {
  if (unit === 'B' || unit === 'bytes') return formatBytes(value);
  if (unit === 'B/s' || unit === 'bytes/s') return formatBytes(value, true);
  if ((unit === 's' || unit === 'sec') && Math.abs(value) >= 120) return formatDuration(value); // uptimes read better as 14d 2h
  const n = formatNumber(value);
  if (!unit) return n;
  return unit === '%' ? `${n}%` : `${n} ${unit}`;
}

/** Seconds as "3d 4h", "2h 5m", "4m 10s", "12s". */
export function formatDuration(totalSec: number): string {
  const s = Math.max(0, Math.floor(totalSec));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${r}s`;
  return `${r}s`;
}

/** How long ago `thenMs` was, relative to `nowMs`: "just now", "12 s ago", "3 min ago". */
export function formatAgo(thenMs: number, nowMs: number): string {
  const s = Math.round((nowMs - thenMs) / 1000);
  if (s < 2) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A message rate: "" when idle, "0.5/s", "12/s". */
export function formatRate(perSec: number): string {
  if (perSec < 0.05) return '';
  return `${perSec >= 10 ? Math.round(perSec) : perSec.toFixed(1)}/s`;
}

/** A count with thin grouping: 1234567 → "1,234,567". */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Truncates display text to `max` characters with an ellipsis. */
export function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
