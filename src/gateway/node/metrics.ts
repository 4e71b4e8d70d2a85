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

/** Prometheus metrics of one gateway process, served on the admin listener. */
export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'mandate_gateway_requests_total',
    help: 'MCP messages handled, by route, method, tool, decision and HTTP status.',
    labelNames: ['route', 'method', 'tool', 'decision', 'status'] as const,
    registers: [this.registry],
  });
  private readonly rejections = new Counter({
    name: 'mandate_gateway_rejections_total',
    help: 'Requests refused or failed, by route and kind (malformed, invalid_token, insufficient_scope, tool_denied, rate_limited, upstream_timeout, …).',
    labelNames: ['route', 'rejection'] as const,
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: 'mandate_gateway_request_duration_seconds',
    help: 'Time from request to the end of the response, streams included.',
    labelNames: ['route', 'method'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly upstream = new Histogram({
    name: 'mandate_gateway_upstream_response_seconds',
    help: 'Time until the upstream answered with headers.',
    labelNames: ['route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
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
    this.requests.inc({ route: event.route, method, tool: this.toolLabel(event.route, event.tool), decision: event.decision, status: String(event.status) });
    if (event.rejection) this.rejections.inc({ route: event.route, rejection: event.rejection });
    this.duration.observe({ route: event.route, method }, event.latency_ms / 1000);
    if (event.approval) this.approvals.inc({ route: event.route, outcome: event.approval });
    const pins = event.tool_pins;
    if (pins) {
      for (const verdict of ['new', 'changed', 'unavailable'] as const) if (pins[verdict]?.length) this.pinChanges.inc({ route: event.route, verdict }, pins[verdict].length);
      for (const flags of Object.values(pins.flagged ?? {})) for (const flag of flags) this.injectionFlags.inc({ route: event.route, flag });
    }
    if (event.tool_pin) this.pinChanges.inc({ route: event.route, verdict: `call_${event.tool_pin}` });
    if (event.upstream_latency_ms !== undefined) this.upstream.observe({ route: event.route }, event.upstream_latency_ms / 1000);
  }
}
