import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GatewayAuditEvent } from '../types.ts';

/** MCP methods kept as metric labels; anything else a client sends is `other` (bounded cardinality). */
const KNOWN_METHODS = new Set([
  'initialize', 'ping', 'tools/list', 'tools/call', 'resources/list', 'resources/read', 'resources/templates/list',
  'resources/subscribe', 'resources/unsubscribe', 'prompts/list', 'prompts/get', 'completion/complete', 'logging/setLevel',
  'notifications/initialized', 'notifications/cancelled', 'notifications/progress', 'notifications/roots/list_changed',
  'tasks/get', 'tasks/list', 'tasks/result', 'tasks/cancel',
]);
const MAX_TOOLS_PER_ROUTE = 100;

/**
 * The per-request metrics with their label sets resolved once: a cell per label set, found by one
 * Map lookup of the label values joined, instead of prom-client's per-call label object, label-name
 * validation and hash string (~4 µs of the ~5 µs metrics cost per request in `npm run bench`).
 * They implement the metric interface prom-client's Registry reads (`get`, `getForPromString`,
 * `reset`), so /metrics is written by prom-client exactly as for its own Counter and Histogram
 * (test/gateway/fast-metrics.test.ts compares both on the same observations).
 */
interface CounterCell {
  value: number;
  labels: Record<string, string>;
}

interface HistogramCell {
  labels: Record<string, string>;
  buckets: number[];
  sum: number;
  count: number;
}

const SEPARATOR = '\u0000';

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  names.forEach((name, i) => (labels[name] = values[i]!));
  return labels;
}

export class LabelledCounter {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private cells = new Map<string, CounterCell>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Counter);
  }

  /** Adds `value` (default 1) to the label set `values` (in `labelNames` order). */
  inc(values: readonly string[], value = 1): void {
    const key = values.join(SEPARATOR);
    const cell = this.cells.get(key);
    if (cell) cell.value += value;
    else this.cells.set(key, { value, labels: labelsOf(this.labelNames, values) });
  }

  async get() {
    return { help: this.help, name: this.name, type: this.type, values: [...this.cells.values()].map(({ value, labels }) => ({ value, labels })), aggregator: this.aggregator };
  }

  reset(): void {
    this.cells = new Map();
  }
}

export class LabelledHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private cells = new Map<string, HistogramCell>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Histogram);
  }

  /** Observes `value` for the label set `values` (in `labelNames` order). */
  observe(values: readonly string[], value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const key = values.join(SEPARATOR);
    let cell = this.cells.get(key);
    if (!cell) this.cells.set(key, (cell = { labels: labelsOf(this.labelNames, values), buckets: this.upperBounds.map(() => 0), sum: 0, count: 0 }));
    const bounds = this.upperBounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        cell.buckets[i]!++;
        break;
      }
    }
    cell.sum += value;
    cell.count++;
  }

  /** As prom-client's Histogram: per label set, the cumulative buckets, +Inf, sum and count, the label set as shared labels. */
  async getForPromString() {
    const values: { labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string; exemplar: null | undefined }[] = [];
    for (const cell of this.cells.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((bound, i) => {
        cumulative += cell.buckets[i]!;
        values.push({ labels: { le: bound }, sharedLabels: cell.labels, value: cumulative, metricName: `${this.name}_bucket`, exemplar: null });
      });
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: cell.labels, value: cell.count, metricName: `${this.name}_bucket`, exemplar: null },
        { labels: {}, sharedLabels: cell.labels, value: cell.sum, metricName: `${this.name}_sum`, exemplar: undefined },
        { labels: {}, sharedLabels: cell.labels, value: cell.count, metricName: `${this.name}_count`, exemplar: undefined },
      );
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  async get() {
    const data = await this.getForPromString();
    return { ...data, values: data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) };
  }

  reset(): void {
    this.cells = new Map();
  }
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Prometheus metrics of one gateway process, served on the admin listener. */
export class GatewayMetrics {
  readonly registry = new Registry();
  // Written on every request: label sets resolved once (LabelledCounter, LabelledHistogram above).
  private readonly requests = new LabelledCounter(
    'mandate_gateway_requests_total',
    'MCP messages handled, by route, method, tool, decision and HTTP status.',
    ['route', 'method', 'tool', 'decision', 'status'],
    this.registry,
  );
  private readonly rejections = new LabelledCounter(
    'mandate_gateway_rejections_total',
    'Requests refused or failed, by route and kind (malformed, invalid_token, insufficient_scope, tool_denied, rate_limited, upstream_timeout, …).',
    ['route', 'rejection'],
    this.registry,
  );
  private readonly duration = new LabelledHistogram(
    'mandate_gateway_request_duration_seconds',
    'Time from request to the end of the response, streams included.',
    ['route', 'method'],
    LATENCY_BUCKETS,
    this.registry,
  );
  private readonly upstream = new LabelledHistogram('mandate_gateway_upstream_response_seconds', 'Time until the upstream answered with headers.', ['route'], LATENCY_BUCKETS, this.registry);
  readonly auditWritten = new Counter({ name: 'mandate_gateway_audit_events_total', help: 'Audit events written.', registers: [this.registry] });
  readonly auditDropped = new Counter({
    name: 'mandate_gateway_audit_events_dropped_total',
    help: 'Audit events that could not be written. Anything but 0 needs attention.',
    registers: [this.registry],
  });
  private readonly approvals = new Counter({
    name: 'mandate_gateway_approvals_total',
    help: 'Calls of tools that need approval, by route and outcome: required (transaction created), pending (retried before the decision), granted (forwarded once), refused (denied, expired, used, mismatch, bad state).',
    labelNames: ['route', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly pinChanges = new Counter({
    name: 'mandate_gateway_tool_pin_changes_total',
    help: 'Tools not matching their approved definition (docs/gateway.md "Tool pinning"), by route and verdict: new, changed, unavailable (per tools/list answer carrying them), and refused calls of such tools (verdict call_<verdict>).',
    labelNames: ['route', 'verdict'] as const,
    registers: [this.registry],
  });
  private readonly injectionFlags = new Counter({
    name: 'mandate_gateway_tool_injection_flags_total',
    help: 'Tool definitions in tools/list answers flagged by the injection heuristic (docs/gateway.md "Tool pinning"), by route and flag. Never blocks.',
    labelNames: ['route', 'flag'] as const,
    registers: [this.registry],
  });
  readonly reloads = new Counter({ name: 'mandate_gateway_config_reloads_total', help: 'Route file reloads, by result.', labelNames: ['result'] as const, registers: [this.registry] });
  private readonly tools = new Map<string, Set<string>>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'mandate_gateway_' });
    this.auditDropped.inc(0);
  }

  private toolLabel(route: string, tool: string | undefined): string {
    if (!tool) return '';
    let seen = this.tools.get(route);
    if (!seen) this.tools.set(route, (seen = new Set()));
    if (seen.has(tool)) return tool;
    if (seen.size >= MAX_TOOLS_PER_ROUTE) return '_other';
    seen.add(tool);
    return tool;
  }

  observe(event: GatewayAuditEvent): void {
    const method = event.method ? (KNOWN_METHODS.has(event.method) ? event.method : 'other') : event.kind === 'response' ? 'response' : `http:${event.http_method}`;
    this.requests.inc([event.route, method, this.toolLabel(event.route, event.tool), event.decision, String(event.status)]);
    if (event.rejection) this.rejections.inc([event.route, event.rejection]);
    this.duration.observe([event.route, method], event.latency_ms / 1000);
    if (event.approval) this.approvals.inc({ route: event.route, outcome: event.approval });
    const pins = event.tool_pins;
    if (pins) {
      for (const verdict of ['new', 'changed', 'unavailable'] as const) if (pins[verdict]?.length) this.pinChanges.inc({ route: event.route, verdict }, pins[verdict].length);
      for (const flags of Object.values(pins.flagged ?? {})) for (const flag of flags) this.injectionFlags.inc({ route: event.route, flag });
    }
    if (event.tool_pin) this.pinChanges.inc({ route: event.route, verdict: `call_${event.tool_pin}` });
    if (event.upstream_latency_ms !== undefined) this.upstream.observe([event.route], event.upstream_latency_ms / 1000);
  }
}
