import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { needsRedis } from '../helpers/services.ts';
import { mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, listedTools, type TestGateway } from '../helpers/gateway.ts';

const until = async (check: () => boolean | Promise<boolean>, what: string) => {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
};

describe('gateway: audit log, metrics, hot reload', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  let headers: Record<string, string>;
  let session: string;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      {
        path: '/mcp',
        upstream: upstream.url,
        resource: `${url}/mcp`,
        authorization_servers: [issuer.issuer],
        tools: { ...listedTools(), transfer: { scopes: ['banking:transfer'] } },
      },
    ]);
    resource = `${gateway.url}/mcp`;
    const token = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'sample-agent', scope: 'banking:read', act: { sub: 'sample-agent', client_id: 'sample-agent' } });
    // A session opened through this gateway (one the gateway has not bound is refused with 404).
    const opened = await mcpPost(resource, { jsonrpc: '2.0', id: 0, method: 'initialize', params: {} }, { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-11-25' });
    session = opened.headers.get('mcp-session-id')!;
    headers = { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': session };
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  const eventFor = async (id: number) => (await gateway.auditEvents()).find((event) => event.jsonrpc_id === id)!;
  const common = (event: Record<string, unknown>) => {
    assert.match(event.time as string, /^\d{4}-\d{2}-\d{2}T/);
    assert.match(event.request_id as string, /^[0-9a-f-]{36}$/);
    assert.equal(event.route, '/mcp');
    assert.equal(event.http_method, 'POST');
    assert.equal(event.protocol_version, '2025-11-25');
    assert.equal(event.session, session);
    assert.equal(event.kind, 'request');
    assert.equal(event.method, 'tools/call');
    assert.equal(event.sub, 'alice');
    assert.equal(event.client_id, 'sample-agent');
    assert.deepEqual(event.act, [{ sub: 'sample-agent', client_id: 'sample-agent' }]);
    assert.equal(event.scope, 'banking:read');
    assert.equal(typeof event.latency_ms, 'number');
    assert.equal(event.arguments, undefined, 'arguments are never written');
  };

  it('an allowed call: who, which tool, for whom, the argument hash, the result', async () => {
    const args = { to: 'bob', note: 'lunch' };
    await mcpPost(resource, toolCall('echo', args, 101), headers);
    const event = await eventFor(101);
    common(event);
    assert.equal(event.tool, 'echo');
    assert.equal(event.args_sha256, createHash('sha256').update(JSON.stringify(args)).digest('hex'));
    assert.equal(event.decision, 'allow');
    assert.equal(event.rejection, undefined);
    assert.equal(event.status, 200);
    assert.equal(event.upstream_status, 200);
    assert.equal(event.outcome, 'result');
    assert.equal(event.is_error, undefined);
    assert.equal(typeof event.upstream_latency_ms, 'number');
  });

  it('a refused call: the decision and the reason, no upstream', async () => {
    await mcpPost(resource, toolCall('transfer', { amount: 1 }, 102), headers);
    const event = await eventFor(102);
    common(event);
    assert.equal(event.tool, 'transfer');
    assert.equal(event.decision, 'deny');
    assert.equal(event.rejection, 'insufficient_scope');
    assert.equal(event.reason, 'missing scope banking:transfer');
    assert.equal(event.status, 403);
    assert.equal(event.upstream_status, undefined);
    assert.equal(event.outcome, undefined);
  });

  it('a failed call: the tool result says isError, and a JSON-RPC error keeps its code', async () => {
    await mcpPost(resource, toolCall('fails', {}, 103), headers);
    const failed = await eventFor(103);
    common(failed);
    assert.equal(failed.decision, 'allow');
    assert.equal(failed.outcome, 'result');
    assert.equal(failed.is_error, true);
    await mcpPost(resource, toolCall('rpc_error', {}, 104), headers);
    const rpcError = await eventFor(104);
    assert.equal(rpcError.outcome, 'error');
    assert.equal(rpcError.jsonrpc_error, -32602);
  });

  it('refusals before authentication are audited too', async () => {
    await mcpPost(resource, toolCall('echo', {}, 105));
    const event = await eventFor(105);
    assert.equal(event.decision, 'deny');
    assert.equal(event.rejection, 'no_token');
    assert.equal(event.status, 401);
    assert.equal(event.sub, undefined);
    await mcpPost(resource, '{broken', headers);
    const events = await gateway.auditEvents();
    assert.equal(events.at(-1)!.rejection, 'malformed');
  });

  it('exports Prometheus metrics on the admin listener', async () => {
    await gateway.audit.flush();
    const text = await (await fetch(`${gateway.adminUrl}/metrics`)).text();
    assert.match(text, /mandate_gateway_requests_total\{route="\/mcp",method="tools\/call",tool="echo",decision="allow",status="200"\} [1-9]/);
    assert.match(text, /mandate_gateway_rejections_total\{route="\/mcp",rejection="insufficient_scope"\} 1/);
    assert.match(text, /mandate_gateway_rejections_total\{route="\/mcp",rejection="malformed"\} 1/);
    assert.match(text, /mandate_gateway_request_duration_seconds_bucket\{le="0.005",route="\/mcp",method="tools\/call"\}/);
    assert.match(text, /mandate_gateway_audit_events_dropped_total 0/);
    assert.match(text, /mandate_gateway_audit_events_total [1-9]/);
    assert.equal((await fetch(`${gateway.adminUrl}/healthz`)).status, 200);
    assert.equal((await fetch(`${gateway.url}/metrics`)).status, 404, 'metrics are not on the public listener');
  });

  it('hot reload: a valid new routes file takes effect; an invalid one is refused and the old routes stay', async () => {
    const config = parse(readFileSync(gateway.configFile, 'utf8')) as { routes: Record<string, unknown>[] };
    // Valid change: transfer now needs nothing (listed without a rule), so the earlier refusal becomes allowed.
    config.routes[0]!.tools = listedTools();
    writeFileSync(gateway.configFile, stringify(config));
    await until(async () => (await mcpPost(resource, toolCall('transfer', { amount: 1 }, 106), headers)).status === 200, 'the reload');
    assert.ok(gateway.logs.some((line) => line.msg === 'gateway routes reloaded'));

    writeFileSync(gateway.configFile, stringify({ ...config, routes: [{ ...config.routes[0], tools: { transfer: { allow: 'this is not CEL ((' } } }] }));
    await until(() => gateway.logs.some((line) => String(line.msg).includes('NOT reloaded')), 'the refusal log line');
    const refusal = gateway.logs.find((line) => String(line.msg).includes('NOT reloaded'))!;
    assert.match(String(refusal.reason), /tools\.transfer\.allow/);
    assert.equal((await mcpPost(resource, toolCall('transfer', { amount: 1 }, 107), headers)).status, 200, 'the previous routes still serve');
    const metrics = await (await fetch(`${gateway.adminUrl}/metrics`)).text();
    assert.match(metrics, /mandate_gateway_config_reloads_total\{result="refused"\} [1-9]/);
  });
});

describe('gateway: audit sink and global limits', () => {
  it('rotates the JSONL file at max_bytes and keeps `keep` old files', async () => {
    const { AuditWriter } = await import('../../src/gateway/node/audit-writer.ts');
    const { mkdtempSync, readdirSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const pino = (await import('pino')).default;
    const dir = mkdtempSync(join(tmpdir(), 'mandate-audit-'));
    const file = join(dir, 'audit.jsonl');
    const writer = new AuditWriter({ file, maxBytes: 400, keep: 2, stdout: false, bufferEvents: 1, log: pino({ level: 'silent' }) });
    await writer.open();
    for (let i = 0; i < 12; i++) {
      await writer.ready();
      writer.record({ time: new Date().toISOString(), request_id: `r${i}`, route: '/mcp', http_method: 'POST', decision: 'allow', status: 200, latency_ms: 1 });
      await writer.flush();
    }
    await writer.close();
    assert.deepEqual(readdirSync(dir).sort(), ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']);
    const newest = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(JSON.parse(newest.at(-1)!).request_id, 'r11', 'the newest event is in the live file');
    assert.ok(readFileSync(file, 'utf8').length <= 400);
  });

  it('writes the same JSON lines to stdout when asked', async () => {
    const { AuditWriter } = await import('../../src/gateway/node/audit-writer.ts');
    const pino = (await import('pino')).default;
    let out = '';
    const writer = new AuditWriter({ file: null, maxBytes: 1, keep: 1, stdout: true, bufferEvents: 10, log: pino({ level: 'silent' }), writeStdout: (text) => (out += text) });
    writer.record({ time: 't', request_id: 'r1', route: '/mcp', http_method: 'POST', decision: 'deny', rejection: 'no_token', status: 401, latency_ms: 0.5, tool: 'x', arguments: { secret: 'never logged' } });
    await writer.flush();
    const line = JSON.parse(out) as Record<string, unknown>;
    assert.equal(line.request_id, 'r1');
    assert.equal(line.rejection, 'no_token');
    assert.equal(line.arguments, undefined);
    assert.doesNotMatch(out, /never logged/);
    assert.equal(line.args_sha256, createHash('sha256').update(JSON.stringify({ secret: 'never logged' })).digest('hex'));
  });

  /** An audit sink writing to a string (stdout mode), its lines parsed, and a plain allowed event. */
  const stdoutSink = async (bufferEvents: number) => {
    const { AuditWriter } = await import('../../src/gateway/node/audit-writer.ts');
    const pino = (await import('pino')).default;
    let out = '';
    const writer = new AuditWriter({ file: null, maxBytes: 1, keep: 1, stdout: true, bufferEvents, log: pino({ level: 'silent' }), writeStdout: (text) => (out += text) });
    const lines = () => out.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    return { writer, lines };
  };
  const allowed = (id: string) => ({ time: 't', request_id: id, route: '/mcp', http_method: 'POST', decision: 'allow' as const, status: 200, latency_ms: 1 });

  it('makes the lines when the gateway next waits on an upstream, and writes every event, in order, by the close', async () => {
    const { writer, lines } = await stdoutSink(10);
    const first = allowed('r1');
    writer.record(first);
    writer.record(allowed('r2'));
    writer.upstreamWaiting();
    await new Promise((resolve) => setImmediate(resolve));
    // The line was made in the turn after the hint: a change to the event now is not in it.
    first.status = 599;
    writer.record(allowed('r3'));
    // Never hinted: made at the write.
    writer.record(allowed('r4'));
    await writer.close();
    assert.deepEqual(lines().map((line) => line.request_id), ['r1', 'r2', 'r3', 'r4']);
    assert.equal(lines()[0]!.status, 200);
  });

  it('keeps at most 64 events unmade: the 64th makes the lines at once', async () => {
    const { writer, lines } = await stdoutSink(1_000);
    const events = Array.from({ length: 64 }, (_, i) => allowed(`r${i}`));
    for (const event of events) writer.record(event);
    events[0]!.status = 599;
    events[63]!.status = 599;
    await writer.close();
    assert.equal(lines().length, 64);
    assert.equal(lines()[0]!.status, 200);
    assert.equal(lines()[63]!.status, 200);
  });

  it('writes on close the events recorded while its last write was going out', async () => {
    const { writer, lines } = await stdoutSink(10);
    writer.record(allowed('r1'));
    const closing = writer.close();
    // The first write is out; a request finishing now still gets its event written.
    writer.record(allowed('r2'));
    await closing;
    assert.deepEqual(lines().map((line) => line.request_id), ['r1', 'r2']);
  });

  it('applies backpressure instead of dropping: ready() waits while the buffer is full', async () => {
    const { AuditWriter } = await import('../../src/gateway/node/audit-writer.ts');
    const pino = (await import('pino')).default;
    let dropped = 0;
    const writer = new AuditWriter({ file: null, maxBytes: 1, keep: 1, stdout: false, bufferEvents: 2, log: pino({ level: 'silent' }), onDropped: (n) => (dropped += n) });
    const event = { time: '', request_id: 'x', route: '/', http_method: 'POST', decision: 'allow' as const, status: 200, latency_ms: 0 };
    assert.equal(writer.ready(), undefined);
    writer.record(event);
    writer.record(event);
    const wait = writer.ready();
    assert.ok(wait instanceof Promise, 'a full buffer makes callers wait');
    await wait;
    assert.equal(writer.ready(), undefined, 'room again after the writer caught up');
    assert.equal(dropped, 0);
  });

  it('rate limits are shared by every gateway on the same Redis', needsRedis(), async () => {
    const issuer = await startFakeIssuer();
    const upstream = await startScriptedUpstream();
    const prefix = `mandate-test:${crypto.randomUUID()}`;
    const route = () => [{ path: '/mcp', upstream: upstream.url, resource: 'https://shared.example/mcp', authorization_servers: [issuer.issuer], tools: listedTools(), rate_limits: [{ name: 'global', key: ['subject' as const], limit: 2 }] }];
    const a = await startTestGateway(route, { rate_limit_prefix: prefix });
    const b = await startTestGateway(route, { rate_limit_prefix: prefix });
    try {
      const headers = { authorization: `Bearer ${await issuer.sign({ sub: 'zoe', aud: 'https://shared.example/mcp' })}` };
      assert.equal((await mcpPost(`${a.url}/mcp`, toolCall('echo'), headers)).status, 200);
      assert.equal((await mcpPost(`${b.url}/mcp`, toolCall('echo'), headers)).status, 200);
      assert.equal((await mcpPost(`${a.url}/mcp`, toolCall('echo'), headers)).status, 429, 'the third call is over the shared budget');
    } finally {
      await Promise.all([a.close(), b.close()]);
      await upstream.close();
      await issuer.close();
    }
  });

  it('counts a tool or method name the key cannot encode as it is (a lone surrogate), never a 500 that the audit reads as allowed', async () => {
    // The in-memory store (no Redis): its count is synchronous, where a throw once escaped as a 500.
    const env = { ...process.env };
    delete env.REDIS_URL;
    const issuer = await startFakeIssuer();
    const upstream = await startScriptedUpstream();
    const gateway = await startTestGateway(
      (url) => [{ path: '/mcp', upstream: upstream.url, resource: `${url}/mcp`, authorization_servers: [issuer.issuer], tools: listedTools(), unlisted_tools: 'allow' as const, rate_limits: [{ name: 'per-tool', key: ['subject' as const, 'tool' as const], limit: 1 }] }],
      {},
      env,
    );
    try {
      const headers = { authorization: `Bearer ${await issuer.sign({ sub: 'zoe', aud: `${gateway.url}/mcp` })}` };
      // JSON.stringify sends the lone surrogate as the escape \ud800: valid JSON, valid UTF-8.
      const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: '\ud800', arguments: {} } };
      const first = await mcpPost(`${gateway.url}/mcp`, call, headers);
      assert.equal(first.status, 200, 'counted and forwarded');
      const second = await mcpPost(`${gateway.url}/mcp`, { ...call, id: 2 }, headers);
      assert.equal(second.status, 429, 'the same name is the same bucket');
      assert.equal((second.json!.error as { code: number }).code, -32029);
      const events = await gateway.auditEvents();
      const refused = events.find((e) => e.jsonrpc_id === 2);
      assert.equal(refused?.decision, 'deny');
      assert.equal(refused?.rejection, 'rate_limited');
      assert.equal(refused?.reason, 'limit per-tool: 1 per 60 s');
      assert.equal(events.find((e) => e.jsonrpc_id === 1)?.decision, 'allow');
      assert.equal(upstream.requests.length, 1, 'only the first call reached the upstream');
    } finally {
      await gateway.close();
      await upstream.close();
      await issuer.close();
    }
  });

  it('records an internal error as an error in the audit event, with no stack trace on the wire', async () => {
    const { Context } = await import('hono');
    const { gatewayHandlers } = await import('../../src/gateway/chain.ts');
    const { onError } = gatewayHandlers([], { observer: { ready: () => undefined, record: () => undefined }, forwarder: { forward: async () => new Response(null), clientAddress: () => undefined, close: async () => undefined } as never });
    const c = new Context(new Request('http://127.0.0.1/mcp', { method: 'POST' }));
    const event = { time: '', request_id: 'r', route: '/mcp', http_method: 'POST', decision: 'allow', status: 0, latency_ms: 0 } as Record<string, unknown>;
    c.set('audit' as never, event as never);
    const original = console.error;
    console.error = () => undefined;
    let res: Response;
    try {
      res = (await onError(new Error('boom at line 3'), c as never)) as Response;
    } finally {
      console.error = original;
    }
    assert.equal(res.status, 500);
    const text = await res.text();
    assert.doesNotMatch(text, /boom|at line/);
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'internal_error');
    assert.equal(event.reason, 'boom at line 3');
  });

  it('fails closed with 503 when the rate limiter store is unreachable', async () => {
    const issuer = await startFakeIssuer();
    const upstream = await startScriptedUpstream();
    const gateway = await startTestGateway(
      () => [{ path: '/mcp', upstream: upstream.url, resource: 'https://closed.example/mcp', authorization_servers: [issuer.issuer], tools: listedTools(), rate_limits: [{ name: 'global', key: ['subject' as const], limit: 10 }] }],
      {},
      { ...process.env, REDIS_URL: 'redis://127.0.0.1:1' },
    );
    try {
      const res = await mcpPost(`${gateway.url}/mcp`, toolCall('echo'), { authorization: `Bearer ${await issuer.sign({ sub: 'zoe', aud: 'https://closed.example/mcp' })}` });
      assert.equal(res.status, 503);
      assert.equal((res.json!.error as { code: number }).code, -32603);
    } finally {
      await gateway.close();
      await upstream.close();
      await issuer.close();
    }
  });
});
