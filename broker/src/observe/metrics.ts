/**
 * A tiny Prometheus registry: named counters and gauges read through callbacks
 * at scrape time, so the hot path only bumps plain object fields it already owns
 * (router stats, outbox stats) and no metric is computed unless scraped.
 */

export type MetricType = 'counter' | 'gauge';

interface Metric {
  name: string;
  help: string;
  type: MetricType;
  read: () => number | ReadonlyArray<readonly [labels: Record<string, string>, value: number]>;
}

function labelText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class Metrics {
  private readonly metrics: Metric[] = [];
  /**
   * Reads that threw (e.g. a figure read from the OS while descriptors run out): the metric is
   * left out of that scrape or $SYS tick and counted here, never thrown into the caller's tick.
   */
  readErrors = 0;
  /** The last read error, for the caller to log with context. */
  lastReadError: { name: string; err: unknown } | undefined;

  /** Registers a metric; `read` is called at scrape time. Names follow Prometheus conventions (`_total` for counters). */
  register(name: string, type: MetricType, help: string, read: Metric['read']): void {
    if (this.metrics.some((m) => m.name === name)) throw new Error(`metric ${name} registered twice`);
    this.metrics.push({ name, help, type, read });
  }

  /** Current value of a single-valued metric (for $SYS and tests). */
  value(name: string): number | undefined {
    const m = this.metrics.find((x) => x.name === name);
    const v = m && this.read(m);
    return typeof v === 'number' ? v : undefined;
  }

  /** Prometheus text exposition format 0.0.4. */
  render(): string {
    let out = '';
    for (const m of this.metrics) {
      out += `# HELP ${m.name} ${m.help}\n# TYPE ${m.name} ${m.type}\n`;
      const v = this.read(m);
      if (v === undefined) continue;
      if (typeof v === 'number') out += `${m.name} ${v}\n`;
      else for (const [labels, value] of v) out += `${m.name}${labelText(labels)} ${value}\n`;
    }
    return out;
  }

  private read(m: Metric): ReturnType<Metric['read']> | undefined {
    try {
      return m.read();
    } catch (err) {
      this.readErrors++;
      this.lastReadError = { name: m.name, err };
      return undefined;
    }
  }
}
