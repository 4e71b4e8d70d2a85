/**
 * Issue 18 part 4: the gateway's per-request metrics keep their label sets resolved
 * (src/gateway/node/metrics.ts `LabelledCounter`, `LabelledHistogram`) instead of going through
 * prom-client's Counter and Histogram on every request. Differential test: the same observations
 * through both give the same /metrics text and the same JSON.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { GatewayMetrics, LabelledCounter, LabelledHistogram } from '../../src/gateway/node/metrics.ts';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

function random(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe('fast path: metrics with resolved label sets (differential against prom-client)', () => {
  it('writes the same exposition text and JSON as prom-client for the same observations', async () => {
    const next = random(18);
    const routes = ['/mcp', '/bank', '/'];
    const methods = ['tools/call', 'tools/list', 'other', 'http:GET'];
    const tools = ['', 'echo', 'transfer', 'quote"d', 'back\\slash', 'new\nline'];
    const decisions = ['allow', 'deny', 'error'];
    const statuses = ['200', '401', '403', '429', '502'];
    const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)]!;

    const theirs = new Registry();
    const ours = new Registry();
    const counter = new Counter({ name: 'x_requests_total', help: 'Requests "quoted" and \\ escaped.', labelNames: ['route', 'method', 'tool', 'decision', 'status'], registers: [theirs] });
    const histogram = new Histogram({ name: 'x_duration_seconds', help: 'Durations.', labelNames: ['route', 'method'], buckets: BUCKETS, registers: [theirs] });
    const labelledCounter = new LabelledCounter('x_requests_total', 'Requests "quoted" and \\ escaped.', ['route', 'method', 'tool', 'decision', 'status'], ours);
    const labelledHistogram = new LabelledHistogram('x_duration_seconds', 'Durations.', ['route', 'method'], BUCKETS, ours);

    for (let i = 0; i < 5_000; i++) {
      const [route, method, tool, decision, status] = [pick(routes), pick(methods), pick(tools), pick(decisions), pick(statuses)];
      const n = next() < 0.1 ? 3 : 1;
      counter.inc({ route, method, tool, decision, status }, n);
      labelledCounter.inc([route, method, tool, decision, status], n);
      // Latencies from 0 to ~60 s, bucket bounds themselves included (le is inclusive).
      const seconds = next() < 0.05 ? pick(BUCKETS) : next() < 0.02 ? 60 * next() : next() ** 4;
      histogram.observe({ route, method }, seconds);
      labelledHistogram.observe([route, method], seconds);
    }
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON());
    theirs.resetMetrics();
    ours.resetMetrics();
    assert.equal(await ours.metrics(), await theirs.metrics(), 'reset alike');
  });

  it('GatewayMetrics counts a request by route, method, tool, decision and status, and its durations', async () => {
    const metrics = new GatewayMetrics();
    const event = { time: 't', request_id: 'r', route: '/mcp', http_method: 'POST', method: 'tools/call', tool: 'echo', decision: 'deny' as const, rejection: 'rate_limited', status: 429, latency_ms: 3, upstream_latency_ms: 1.5 };
    metrics.observe(event);
    metrics.observe({ ...event, latency_ms: 700 });
    const text = await metrics.registry.metrics();
    assert.match(text, /^mandate_gateway_requests_total\{route="\/mcp",method="tools\/call",tool="echo",decision="deny",status="429"\} 2$/m);
    assert.match(text, /^mandate_gateway_rejections_total\{route="\/mcp",rejection="rate_limited"\} 2$/m);
    assert.match(text, /^mandate_gateway_request_duration_seconds_bucket\{le="0.005",route="\/mcp",method="tools\/call"\} 1$/m);
    assert.match(text, /^mandate_gateway_request_duration_seconds_bucket\{le="\+Inf",route="\/mcp",method="tools\/call"\} 2$/m);
    assert.match(text, /^mandate_gateway_request_duration_seconds_sum\{route="\/mcp",method="tools\/call"\} 0.703$/m);
    assert.match(text, /^mandate_gateway_upstream_response_seconds_count\{route="\/mcp"\} 2$/m);
  });
});
